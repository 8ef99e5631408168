"""--precision auto on the CPU: bf16 only where the CPU computes it natively and the closeness check passes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from urst_cli.job import Job, conditioning, load_model, use_bfloat16
from urst_cli.models.capvst import CapVST, capvst_condition
from urst_cli.precision import (MAX_MEAN_LEVELS, MAX_P99_LEVELS, Closeness, bfloat16_closeness, cached_closeness,
                                native_bfloat16)
from urst_cli.reader import read_whole
from urst_cli.writer import OutputSpec

CPU = torch.device("cpu")


def _network(painting, model, **options):
    job = Job(input=painting, output=OutputSpec(Path("unused.tif")), model=model, **options)
    net = load_model(job, CPU)
    return job, net, conditioning(job, net, CPU)


@pytest.mark.parametrize("model,options,close", [
    ("magenta", {"styles": "painting"}, True),      # measured: 0.49-0.73 levels mean over whole 1 MP jobs
    ("multistyle26", {"presets": [3]}, False),      # measured: up to 3.5 levels mean, p99 35
    ("null", {}, True),                             # no network: nothing to move
])
def test_auto_takes_bfloat16_only_where_the_check_window_stays_close(painting, model, options, close):
    if options.get("styles") == "painting":
        options = {"styles": [painting]}
    job, net, cond = _network(painting, model, **options)
    closeness = bfloat16_closeness(net, cond)
    assert closeness.acceptable == close
    assert (closeness.mean <= MAX_MEAN_LEVELS and closeness.p99 <= MAX_P99_LEVELS) == close
    assert use_bfloat16(job, net, CPU, cond) == (close and native_bfloat16())
    for precision in ("float32", "bfloat16"):  # an explicit choice is always taken as it is
        job.precision = precision
        assert use_bfloat16(job, net, CPU, cond) == (precision == "bfloat16")


def test_the_check_is_measured_once_and_kept_in_the_user_cache(tmp_path, painting, photo, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    job, net, cond = _network(painting, "magenta", styles=[painting])
    measured = cached_closeness(net, cond)
    cache = tmp_path / "urst" / "precision.json"
    entries = json.loads(cache.read_text())
    assert list(entries.values()) == [{"mean": measured.mean, "p99": measured.p99, "max": measured.max}]
    key = next(iter(entries))
    cache.write_text(json.dumps({key: {"mean": 9.0, "p99": 40.0, "max": 99.0}}))  # what this machine "measured"
    assert cached_closeness(net, cond) == Closeness(9.0, 40.0, 99.0)
    assert use_bfloat16(job, net, CPU, cond) is False
    _, _, other_style = _network(painting, "magenta", styles=[photo])
    cached_closeness(net, other_style)  # another style is another entry
    assert len(json.loads(cache.read_text())) == 2


def test_a_float32_only_network_keeps_float32_on_the_cpu_without_measuring(tmp_path, painting, monkeypatch):
    """capvst: bf16 rounding of y1 = x1 + F(x2) is not undone by its inverse, whatever the check window says."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    net = CapVST("artistic").eval().requires_grad_(False)
    with torch.inference_mode():
        cond = capvst_condition(net, [read_whole(painting)[:64, :64]], 1.0)[0]
    job = Job(input=painting, output=OutputSpec(Path("unused.tif")), model="capvst")
    assert net.float32_only and use_bfloat16(job, net, CPU, cond) is False
    assert not (tmp_path / "urst" / "precision.json").exists()  # no check run: nothing it says would change that
    job.precision = "bfloat16"  # asked for, it is taken
    assert use_bfloat16(job, net, CPU, cond) is True
