"""Two versions of urst on the same inputs in one run, taking turns: before/after figures that a drift in the
machine's speed affects alike.

    python benchmarks/ab.py --base /path/to/old/checkout [--sizes 64] [--modes tiled,host] [--rounds 3]
                            [--device cpu|cuda] [--once copy] [--stroke-scale 1] [--json runs.json]

Each round runs every mode of every size with the old tree, then with this one (the order swapped every round),
each in a fresh process with the tree first on PYTHONPATH, and prints every run, then the medians and new/old
ratios. On a shared machine, ``--tries N --clean F`` repeats a run until other processes used at most a
share F of the CPUs meanwhile (each run's share is printed as "others"). Modes: ``tiled`` is ``urst bench``'s row (``python -m urst_cli.bench SPEC``: the job, its stage split, the
model alone before and after it), ``host`` the same job with the null model (``--baseline-host``; skipped for a
tree without it), ``cli`` the wall time of ``urst stylize`` itself (process start and model loading included, no
instrumentation), ``copy`` libvips copying the input (``--baseline-copy``). ``--once`` modes run once, with
this tree. Inputs are made once per size, as ``urst bench`` makes them (tiled JPEG BigTIFFs of the shipped photo).
Every mode runs at ``--stroke-scale`` (default 1, single-scale: what a tree from before multi-scale stylization
does, so the two compare the same work); other stroke scales skip trees without multi-scale stylization.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from urst_cli.bench import DATA, make_input  # noqa: E402

STAGES = ("stats", "read", "model", "blend", "write")


def busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (all processes, /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def children_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wait_for_quiet(limit: float) -> None:
    """Wait (at most ``limit`` seconds) for a second in which the machine is at least 90% idle."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        busy = busy_seconds()
        time.sleep(1)
        if busy_seconds() - busy < 0.1 * os.cpu_count():
            return


def measured(tree: Path, mode: str, path: Path, scratch: Path, device: str, strokes: str, clean: float,
             tries: int) -> dict:
    """``run_mode``, with the share of the machine other processes used meanwhile ("foreign"); on a shared
    machine a run is repeated (up to ``tries`` times, each after a quiet second) until that share is at most
    ``clean``, and the least disturbed run is kept."""
    kept = None
    for _ in range(tries):
        wait_for_quiet(120)
        busy, own, started = busy_seconds(), children_seconds(), time.perf_counter()
        result = run_mode(tree, mode, path, scratch, device, strokes)
        wall = time.perf_counter() - started
        result["foreign"] = max(0.0, (busy_seconds() - busy) - (children_seconds() - own)) / (wall * os.cpu_count())
        if kept is None or result["foreign"] < kept["foreign"]:
            kept = result
        if result["foreign"] <= clean:
            break
    return kept


def run_mode(tree: Path, mode: str, path: Path, scratch: Path, device: str, strokes: str) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH")]))}
    style = str(DATA / "starry_night.jpg")
    if mode == "cli":
        stroke_option = ["--stroke-scale", strokes] if multiscale(tree) else []
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "urst_cli", "stylize", str(path), "-s", style, "-o",
                               str(scratch / "out.tif"), "--device", device, "--overwrite", "--quiet",
                               *stroke_option], capture_output=True, text=True, env=env, cwd=tree)
        if proc.returncode != 0:
            return {"error": proc.stderr.strip().splitlines()[-1:]}
        return {"seconds": time.perf_counter() - started}
    spec = {"input": str(path), "output": str(scratch / "out.tif"), "mode": mode, "model": "magenta",
            "styles": [style], "presets": [], "stats": "auto", "patch_size": None, "batch_size": None,
            "device": device, "weights_dir": None, "stroke_scale": strokes}  # an older bench ignores it
    proc = subprocess.run([sys.executable, "-m", "urst_cli.bench", json.dumps(spec)], capture_output=True, text=True,
                          env=env, cwd=tree)
    if proc.returncode != 0:
        return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def multiscale(tree: Path) -> bool:
    """Whether the tree has multi-scale stylization (``--stroke-scale``; without it every job is single-scale)."""
    return (tree / "urst_cli" / "multiscale.py").is_file()


def supports(tree: Path, mode: str, strokes: str) -> bool:
    """Whether the tree can run ``mode`` at ``strokes`` (an older bench runs an unknown mode as a tiled job)."""
    if strokes != "1" and not multiscale(tree):
        return False
    return mode != "host" or "_host_only" in (tree / "urst_cli" / "bench.py").read_text()


def line(label: str, mp: float, r: dict) -> str:
    if "error" in r:
        return f"{label:<16} failed: {r['error']}"
    text = f"{label:<16} {r['seconds']:7.2f} s {mp / r['seconds']:7.2f} MP/s"
    if "foreign" in r:
        text += f"  others {100 * r['foreign']:3.0f}%"
    if "peak_rss_mib" in r:
        text += f"  RSS {r['peak_rss_mib']:5.0f} MiB"
    if "peak_gpu_mib" in r:
        text += f"  GPU {r['peak_gpu_mib']:5.0f} MiB"
    if "model_alone_seconds" in r:
        text += f"  ÷model {r['seconds'] / r['model_alone_seconds']:.3f}"
    if "stages" in r:
        text += "  " + " ".join(f"{s} {r['stages'].get(s, 0):.2f}" for s in STAGES)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required=True, help="checkout of the old version")
    parser.add_argument("--sizes", default="64")
    parser.add_argument("--modes", default="tiled,host")
    parser.add_argument("--once", default="", help="modes run once, with this tree (e.g. copy)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--stroke-scale", default="1", help="every job's stroke scale (default 1: single-scale)")
    parser.add_argument("--json", type=Path, help="every run, rewritten after each one")
    parser.add_argument("--clean", type=float, default=0.05, help="most share of the CPUs other processes may use "
                        "during a run before it is repeated (a shared machine)")
    parser.add_argument("--tries", type=int, default=1, help="runs at most per measurement, to find a clean one")
    args = parser.parse_args()
    trees = {"old": args.base.resolve(), "new": ROOT}
    modes = [m for m in args.modes.split(",") if m]
    runs: list[dict] = []

    def record(size: float, mode: str, side: str, result: dict, mp: float) -> None:
        runs.append({"megapixels": mp, "size": size, "mode": mode, "side": side, **result})
        print(line(f"{mode} {side}", mp, result), flush=True)
        if args.json:
            args.json.write_text(json.dumps(runs, indent=1))

    with tempfile.TemporaryDirectory(prefix="urst-ab-") as tmp:
        scratch = Path(tmp)
        for size in (float(s) for s in args.sizes.split(",")):
            path = scratch / f"input_{size:g}mp.tif"
            width, height = make_input(DATA / "sunset_hills.jpg", size, path)
            mp = width * height / 1e6
            print(f"{width}x{height} ({mp:.1f} MP), device {args.device}, stroke scale {args.stroke_scale}", flush=True)
            for k in range(args.rounds):
                for side in (("old", "new") if k % 2 == 0 else ("new", "old")):
                    for mode in modes:
                        if supports(trees[side], mode, args.stroke_scale):
                            record(size, mode, side, measured(trees[side], mode, path, scratch, args.device,
                                                              args.stroke_scale, args.clean, args.tries), mp)
            for mode in (m for m in args.once.split(",") if m):
                record(size, mode, "new", measured(ROOT, mode, path, scratch, args.device, args.stroke_scale,
                                                   args.clean, args.tries), mp)
            for mode in modes:  # medians, and the fastest runs (the least disturbed on a shared machine)
                medians, best = {}, {}
                for side in ("old", "new"):
                    ok = [r for r in runs if (r["size"], r["mode"], r["side"]) == (size, mode, side) and
                          "error" not in r]
                    if ok:
                        medians[side] = statistics.median(r["seconds"] for r in ok)
                        middle = min(ok, key=lambda r: abs(r["seconds"] - medians[side]))
                        best[side] = min(r["seconds"] for r in ok)
                        print(line(f"{mode} {side} median", mp, middle), flush=True)
                        print(line(f"{mode} {side} best", mp, min(ok, key=lambda r: r["seconds"])), flush=True)
                if len(medians) == 2:
                    print(f"{mode} at {mp:.0f} MP: new/old time, median {medians['new'] / medians['old']:.3f}, "
                          f"best {best['new'] / best['old']:.3f}", flush=True)
            path.unlink()


if __name__ == "__main__":
    main()
