"""Heap tuning: blocks of a few MB come from the heap and stay there between forward passes."""

from __future__ import annotations

import ctypes
import subprocess
import sys
from pathlib import Path

import pytest


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def _mallinfo2():
    try:
        fn = ctypes.CDLL(None).mallinfo2  # glibc >= 2.33
    except (OSError, AttributeError):
        pytest.skip("needs glibc's mallinfo2")
    fn.restype = _MallInfo2
    return fn


# a fresh process: the test process's heap may already be tuned by the jobs other tests ran
PROBE = """
import sys
import numpy as np
sys.path.insert(0, {tests!r})
from test_heap import _mallinfo2
from urst_cli.heap import reuse_freed_blocks
if {tuned}:
    reuse_freed_blocks()
info = _mallinfo2()
before = info()
block = np.ones(24 * 2**20, np.uint8)  # an activation-sized block
during = info()
del block
after = info()
print(during.hblkhd - before.hblkhd, after.arena - before.arena)
"""


@pytest.mark.parametrize("tuned", [False, True])
def test_large_blocks_are_kept_in_the_heap_only_when_tuned(tuned):
    _mallinfo2()
    probe = PROBE.format(tests=str(Path(__file__).parent), tuned=tuned)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    mapped, kept = int(out[0]), int(out[1])
    if tuned:  # served from the heap, and the heap keeps the freed pages for the next allocation
        assert mapped == 0 and kept > 20 * 2**20
    else:  # glibc's default: a fresh mapping, unmapped again on free
        assert mapped >= 24 * 2**20 and kept < 4 * 2**20


TRIM_PROBE = """
import numpy as np
from urst_cli.heap import TrimOnGrowth, resident_bytes, reuse_freed_blocks
reuse_freed_blocks()
trim = TrimOnGrowth(slack=8 * 2**20)
trim()  # the baseline
base = resident_bytes()
small = np.ones(4 * 2**20, np.uint8); del small  # kept in the heap: within the slack, not trimmed
trim()
kept_small = resident_bytes()
big = np.ones(24 * 2**20, np.uint8); del big  # kept in the heap: past the slack, trimmed
grown = resident_bytes()
trim()
print(kept_small - base, grown - base, grown - resident_bytes())
"""


def test_the_heap_is_trimmed_only_once_it_has_grown_past_the_slack():
    _mallinfo2()  # glibc
    out = subprocess.run([sys.executable, "-c", TRIM_PROBE], capture_output=True, text=True, check=True).stdout
    kept_small, grown, released = (int(v) for v in out.split())
    assert kept_small > 3 * 2**20  # within the slack: the freed 4 MiB block stays, warm for reuse
    assert grown > 20 * 2**20 and released > 20 * 2**20  # past it: the trim gives the heap back
