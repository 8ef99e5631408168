"""Two versions of urst on the same input in one run, taking turns: before/after figures that one machine's drift
in speed affects alike.

    python benchmarks/ab.py --base /path/to/old/checkout [--sizes 64] [--modes tiled,host] [--rounds 3]
                            [--device cpu|cuda] [--input-format tif]

Each round runs every mode of every size once with the old tree, then once with this one (the order swapped
every round), each in a fresh process (``python -m urst_cli.bench SPEC`` with the tree first on PYTHONPATH), and
prints every run and the medians: seconds, MP/s, peak RSS, the stage split, and new/old ratios. ``tiled`` is
the model's job (``urst bench``'s row), ``host`` the same job with the null model (``--baseline-host``; only
trees that have it). A scratch input is made once per size with this tree's ``urst_cli.bench.make_input``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from urst_cli.bench import DATA, make_input  # noqa: E402

STAGES = ("stats", "read", "model", "blend", "write")


def run_child(tree: Path, spec: dict) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.run([sys.executable, "-m", "urst_cli.bench", json.dumps(spec)], capture_output=True, text=True,
                          env=env, cwd=tree)
    if proc.returncode != 0:
        return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def line(label: str, mp: float, r: dict) -> str:
    if "error" in r:
        return f"{label:<12} failed: {r['error']}"
    stages = " ".join(f"{s} {r['stages'].get(s, 0):5.2f}" for s in STAGES)
    ratio = f" ÷model {r['seconds'] / r['model_alone_seconds']:.3f}" if "model_alone_seconds" in r else ""
    gpu = f" GPU {r['peak_gpu_mib']:.0f} MiB" if "peak_gpu_mib" in r else ""
    return (f"{label:<12} {r['seconds']:7.2f} s {mp / r['seconds']:7.2f} MP/s RSS {r['peak_rss_mib']:5.0f} MiB"
            f"{gpu}{ratio}  {stages}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required=True, help="checkout of the old version")
    parser.add_argument("--sizes", default="64")
    parser.add_argument("--modes", default="tiled,host")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--input-format", default="tif")
    parser.add_argument("--json", type=Path, help="also write every run here")
    args = parser.parse_args()
    trees = {"old": args.base.resolve(), "new": ROOT}
    runs: dict = {}
    with tempfile.TemporaryDirectory(prefix="urst-ab-") as scratch:
        for size in (float(s) for s in args.sizes.split(",")):
            path = Path(scratch) / f"input_{size:g}mp.{args.input_format}"
            width, height = make_input(DATA / "sunset_hills.jpg", size, path)
            mp = width * height / 1e6
            print(f"{width}x{height} ({mp:.1f} MP), device {args.device}", flush=True)
            for k in range(args.rounds):
                for side in (("old", "new") if k % 2 == 0 else ("new", "old")):
                    for mode in args.modes.split(","):
                        spec = {"input": str(path), "output": str(Path(scratch) / "out.tif"), "mode": mode,
                                "model": "magenta", "styles": [str(DATA / "starry_night.jpg")], "presets": [],
                                "stats": "auto", "patch_size": None, "batch_size": None, "device": args.device,
                                "weights_dir": None}
                        result = run_child(trees[side], spec)
                        runs.setdefault((size, mode, side), []).append(result)
                        print(line(f"{mode} {side}", mp, result), flush=True)
            for mode in args.modes.split(","):
                medians = {}
                for side in ("old", "new"):
                    ok = [r for r in runs.get((size, mode, side), []) if "error" not in r]
                    if ok:
                        medians[side] = statistics.median(r["seconds"] for r in ok)
                        print(line(f"{mode} {side} median", mp, min(ok, key=lambda r: abs(r["seconds"] -
                                                                                        medians[side]))))
                if len(medians) == 2:
                    print(f"{mode}: new/old time {medians['new'] / medians['old']:.3f}, "
                          f"MP/s {medians['old'] / medians['new']:.3f}x")
            path.unlink()
    if args.json:
        args.json.write_text(json.dumps([{"megapixels": size, "mode": mode, "side": side, "runs": rs}
                                         for (size, mode, side), rs in runs.items()], indent=1))


if __name__ == "__main__":
    main()
