"""Handing freed memory back to the operating system.

glibc keeps freed blocks of a few MB (libvips' row buffers, numpy copies, torch
activations) in its heaps, and interleaved with small live blocks they cannot be
returned: a process streaming a wide image then grows with the image's width, not its
content. ``malloc_trim`` releases every free page of every heap; once per band row it
costs a few milliseconds and keeps peak memory flat in the image size.
"""

from __future__ import annotations

import ctypes

__all__ = ["trim_heap"]


def _malloc_trim():
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc only; musl and macOS have no such call
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _malloc_trim()


def trim_heap() -> None:
    """Give free heap pages back to the system (no-op where the C library cannot)."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
