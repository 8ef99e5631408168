"""benchmarks/ab.py: both trees do the same work, single-scale unless asked (old trees predate multi-scale)."""

from __future__ import annotations

import sys

from conftest import ROOT, resized

sys.path.insert(0, str(ROOT / "benchmarks"))
from ab import run_mode, supports  # noqa: E402


def test_runs_at_the_stroke_scale_asked_and_skips_trees_without_it(tmp_path, photo):
    src = resized(photo, tmp_path / "in.tif", 700, 400)
    single, multi = (run_mode(ROOT, "host", src, tmp_path, "cpu", strokes) for strokes in ("1", "2"))
    assert single["levels"] == [] and len(multi["levels"]) == 2
    old = tmp_path / "old"
    (old / "urst_cli").mkdir(parents=True)
    (old / "urst_cli" / "bench.py").write_text("def _host_only(job): ...\n")
    assert supports(old, "host", "1") and supports(old, "tiled", "1")
    assert not supports(old, "host", "2") and not supports(old, "tiled", "auto")
    assert supports(ROOT, "host", "auto")
