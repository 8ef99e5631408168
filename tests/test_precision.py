"""--precision auto on the CPU: bf16 only where the CPU computes it natively and the closeness check passes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from urst_cli.job import Job, conditioning, load_model, use_bfloat16
from urst_cli.precision import MAX_MEAN_LEVELS, MAX_P99_LEVELS, bfloat16_closeness, native_bfloat16
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
