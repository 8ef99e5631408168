"""Batches in one process: what one model load saves, and whether memory stays flat over many files.

    python benchmarks/batch.py mixed [--separate N]   30 mixed inputs (3 corrupt, a nested folder) in one
                                                      command vs one command per file; then a --skip-existing rerun
    python benchmarks/batch.py leak [--files 200]     resident memory after each of many small files

Inputs are made from the photos in ../shared/data/content (or the packaged one), resized small, in a
scratch folder removed afterwards. Run under the shared CPU lock: it measures time.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyvips

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
PAINTING = next((p for p in [SHARED / "style" / "vangogh_starry_night_1889.jpg"] if p.is_file()),
                ROOT / "urst_cli" / "data" / "starry_night.jpg")
FORMATS = ["jpg", "png", "tif", "webp"]


def photos() -> list[Path]:
    found = sorted((SHARED / "content").glob("*.[jp][pn]g")) if (SHARED / "content").is_dir() else []
    return found or [ROOT / "urst_cli" / "data" / "sunset_hills.jpg"]


def make_inputs(folder: Path, count: int, long_sides: list[int], corrupt: int = 0) -> list[Path]:
    """``count`` images (photos in turn, sizes and formats in turn, every fifth one in nested/deeper/),
    the last ``corrupt`` of them damaged: truncated, not an image, empty."""
    sources = [pyvips.Image.new_from_file(str(p)) for p in photos()]
    made = []
    for i in range(count):
        sub = folder / "nested" / "deeper" if i % 5 == 2 else folder
        sub.mkdir(parents=True, exist_ok=True)
        fmt = FORMATS[i % len(FORMATS)]
        path = sub / f"img{i:03d}.{fmt}"
        img = sources[i % len(sources)]
        small = img.resize(long_sides[i % len(long_sides)] / max(img.width, img.height))
        if fmt == "tif":
            small.tiffsave(str(path), tile=True, tile_width=128, tile_height=128, compression="jpeg", bigtiff=True)
        else:
            small.write_to_file(str(path))
        made.append(path)
    damage = [lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 3]),
              lambda p: p.write_bytes(b"this is not a picture\n" * 10),
              lambda p: p.write_bytes(b"")]
    for n, path in enumerate(made[len(made) - corrupt:]):
        damage[n % len(damage)](path)
    return made


def urst(*args, json_lines: bool = False) -> tuple[float, float, int, list[dict]]:
    """Run ``urst stylize ARGS``: wall seconds, CPU seconds (user + system), exit status, events."""
    started, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([sys.executable, "-m", "urst_cli", "stylize", *map(str, args)]
                          + (["--json"] if json_lines else []), capture_output=True, text=True)
    seconds, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    events = [json.loads(line) for line in proc.stdout.splitlines()] if json_lines else []
    return seconds, cpu, proc.returncode, events


def mixed(args) -> None:
    with tempfile.TemporaryDirectory(prefix="urst-batch-") as scratch:
        folder, out = Path(scratch) / "in", Path(scratch) / "out"
        inputs = make_inputs(folder, 30, [256, 384, 512, 640, 768], corrupt=3)
        seconds, cpu, code, events = urst(folder, "-r", "-s", PAINTING, "-o", f"{out}/", json_lines=True)
        done = [e for e in events if e["event"] == "file_done"]
        errors = [e for e in events if e["event"] == "file_error"]
        pixels = sum(e["width"] * e["height"] for e in done)
        print(f"one command: {len(inputs)} inputs, {len(done)} done, {len(errors)} failed, exit {code}, "
              f"{seconds:.1f} s wall, {cpu:.1f} s CPU ({pixels / 1e6:.1f} MP)")
        for e in errors:
            print(f"  failed: {Path(e['input']).relative_to(folder)}: exit {e['exit_code']} ({e['kind']})")
        good = [p for p in inputs if p.stat().st_size and str(p) not in {e["input"] for e in errors}]
        separate = good[: args.separate] if args.separate else good
        walls, cpus = [], []
        for path in separate:
            t, c, code1, _ = urst(path, "-s", PAINTING, "-o", Path(scratch) / f"single_{path.stem}.tif")
            assert code1 == 0, path
            walls.append(t)
            cpus.append(c)
        # per file done: the corrupt inputs' time is counted on the good ones
        wall_batch, cpu_batch = seconds / len(done), cpu / len(done)
        wall_alone, cpu_alone = sum(walls) / len(walls), sum(cpus) / len(cpus)
        print(f"separate commands: {len(walls)} files, {wall_alone:.2f} s wall and {cpu_alone:.2f} s CPU per file: "
              f"{wall_alone / wall_batch:.1f}x and {cpu_alone / cpu_batch:.1f}x the batch's {wall_batch:.2f} s and "
              f"{cpu_batch:.2f} s per file done")
        mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.tif")}
        seconds, cpu, code, events = urst(folder, "-r", "-s", PAINTING, "-o", f"{out}/", "--skip-existing",
                                     json_lines=True)
        kinds = [e["event"] for e in events]
        rewritten = [p for p, m in mtimes.items() if p.stat().st_mtime_ns != m]
        print(f"--skip-existing rerun: {kinds.count('file_skipped')} skipped, {kinds.count('file_error')} failed "
              f"again, {kinds.count('file_done')} done, {len(rewritten)} outputs rewritten, exit {code}, "
              f"{seconds:.1f} s")


def rss_over_files(files: int, size: int) -> tuple[float, list[dict]]:
    """One batch of ``files`` small inputs (long sides around ``size``): its wall time and file_done events."""
    with tempfile.TemporaryDirectory(prefix="urst-leak-") as scratch:
        folder = Path(scratch) / "in"
        make_inputs(folder, files, [size, size * 3 // 4, size * 5 // 4])
        seconds, cpu, code, events = urst(folder, "-r", "-s", PAINTING, "-o", f"{Path(scratch) / 'out'}/",
                                          json_lines=True)
    done = [e for e in events if e["event"] == "file_done"]
    assert code == 0 and len(done) == files, (code, len(done))
    return seconds, done


def leak(args) -> None:
    seconds, done = rss_over_files(args.files, args.size)
    rss = [e["rss_mib"] for e in done]
    at20, last = rss[19], rss[-1]
    peak20, peak = done[19]["peak_rss_mib"], done[-1]["peak_rss_mib"]
    print(f"{args.files} files in {seconds:.1f} s: RSS after the 20th {at20:.1f} MiB, after the last {last:.1f} MiB "
          f"({100 * (last / at20 - 1):+.2f}%), max after a file {max(rss[19:]):.1f} MiB "
          f"({100 * (max(rss[19:]) / at20 - 1):+.2f}%); peak RSS by the 20th {peak20:.1f} MiB, by the last "
          f"{peak:.1f} MiB ({100 * (peak / peak20 - 1):+.2f}%)")
    print("RSS after each 20th file:", " ".join(f"{r:.0f}" for r in rss[19::20]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    m = sub.add_parser("mixed", help="30 mixed inputs in one command, against one command per file")
    m.add_argument("--separate", type=int, default=0, help="time only this many separate commands (0: all)")
    m.set_defaults(fn=mixed)
    lk = sub.add_parser("leak", help="resident memory over many small files in one process")
    lk.add_argument("--files", type=int, default=200)
    lk.add_argument("--size", type=int, default=256, help="long side of the inputs (varied around it)")
    lk.set_defaults(fn=leak)
    args = parser.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
