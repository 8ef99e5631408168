"""One image on a Dask LocalCluster against the same image stylized locally: time, memory, bytes per band.

    python benchmarks/cluster.py [--sizes 64,256] [--workers 2] [--band-rows N] [--json runs.json]

Per size (inputs made as ``urst bench`` makes them: tiled JPEG BigTIFFs of the shipped photo, --stroke-scale 1):
the local run (``urst stylize`` under /usr/bin/time: file_done seconds, peak RSS), then the cluster run in
a fresh process (the client: cluster started first, then the job through ``cluster.banded_outcomes``; the
client's and each worker's peak RSS, every band's compute time on its worker from Dask's task stream), whether
the two files are identical, the encoded bytes of each band (from the file's tile byte counts), and the
client's write throughput: the same tiles written again from memory (``writer.write_tiles``). Run it under
the shared CPU lock: it measures time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
PAINTING = next((p for p in [SHARED / "style" / "vangogh_starry_night_1889.jpg"] if p.is_file()),
                ROOT / "urst_cli" / "data" / "starry_night.jpg")


def _peak_rss_mib() -> float:
    """This process's peak resident memory since it started: VmHWM, of its own address space (ru_maxrss also
    counts the parent's memory at the fork before the exec that started it)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024


def _local(source: Path, out: Path) -> dict:
    """``urst stylize`` under /usr/bin/time (its peak RSS: a small parent at the fork)."""
    started = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", sys.executable, "-m", "urst_cli", "stylize", str(source),
                           "-s", str(PAINTING), "-o", str(out), "--stroke-scale", "1", "--json"], capture_output=True,
                          text=True, check=True)
    done = next(json.loads(line) for line in proc.stdout.splitlines() if '"file_done"' in line)
    return {"wall_s": round(time.perf_counter() - started, 2), "job_s": done["seconds"],
            "peak_rss_mib": round(int(proc.stderr.strip().splitlines()[-1]) / 1024, 1)}


def _cluster_child(spec: dict) -> dict:
    """In a fresh process: the client's view of one banded job."""
    from distributed import get_task_stream

    from urst_cli.batch import BatchOptions, Naming, expand_inputs, name_outputs, run_batch
    from urst_cli.cluster import banded_outcomes, connect
    from urst_cli.job import Job
    from urst_cli.writer import OutputSpec

    started = time.perf_counter()
    with connect(None, spec["workers"]) as client:
        ready = time.perf_counter()
        template = Job(input=Path(), output=OutputSpec(Path()), styles=[PAINTING], stroke_scale="1")
        items = name_outputs(expand_inputs([spec["input"]]), Naming(spec["output"]))
        events = []
        with get_task_stream(client) as stream:
            run_batch(template, items, BatchOptions(), events.append, banded_outcomes(client, spec["band_rows"]))
        done = next(e for e in events if e.name == "file_done")
        workers = client.run(_peak_rss_mib)
        tasks = [(t["key"], sum(s["stop"] - s["start"] for s in t["startstops"] if s["action"] == "compute"))
                 for t in stream.data]
    bands = [seconds for key, seconds in tasks if key.startswith("urst-band-")]
    tops = sorted({int(key.split("-")[2]) for key, _ in tasks if key.startswith("urst-band-")})
    stats = [seconds for key, seconds in tasks if key.startswith("urst-stats-")]
    return {"cluster_start_s": round(ready - started, 2), "job_s": done.seconds,
            "client_peak_rss_mib": round(_peak_rss_mib(), 1),
            "worker_peak_rss_mib": sorted(round(v, 1) for v in workers.values()),
            "bands": len(bands), "band_rows": tops[1] if len(tops) > 1 else None,
            "band_s_median": round(statistics.median(bands), 2),
            "band_s_max": round(max(bands), 2), "stats_s": round(sum(stats), 2)}


def _band_bytes_and_write(path: Path, band_rows: int) -> dict:
    """Encoded bytes per band (from the file's tiles) and the client's write throughput for them."""
    import tifffile

    from urst_cli.writer import OutputSpec, write_tiles

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        counts, offsets = page.databytecounts, page.dataoffsets
        width, height, bands = page.imagewidth, page.imagelength, page.samplesperpixel
        tile = page.tilewidth
        with open(path, "rb") as f:
            tiles = []
            for offset, count in zip(offsets, counts):
                f.seek(offset)
                tiles.append(f.read(count))
    per_row = -(-width // tile)
    rows_per_band = band_rows // tile
    per_band = [sum(counts[r * per_row: (r + rows_per_band) * per_row]) for r in range(0, len(counts) // per_row,
                                                                                       rows_per_band)]
    with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
        started = time.perf_counter()
        write_tiles(iter(tiles), width, height, bands, OutputSpec(Path(scratch) / "again.tif"))
        seconds = time.perf_counter() - started
    total = sum(counts)
    return {"band_mb_median": round(statistics.median(per_band) / 1e6, 1), "file_mb": round(total / 1e6, 1),
            "client_write_mb_per_s": round(total / 1e6 / seconds, 1)}


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "_child":
        print(json.dumps(_cluster_child(json.loads(sys.argv[2]))))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="64,256", help="megapixels, comma-separated")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--band-rows", type=int, default=None, help="default: urst's (about 32 MP per band)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from urst_cli.bench import DATA, make_input

    rows = []
    with tempfile.TemporaryDirectory(prefix="urst-cluster-bench-", dir="/tmp") as scratch:
        for size in [float(s) for s in args.sizes.split(",")]:
            source = Path(scratch) / f"in-{size:g}.tif"
            width, height = make_input(DATA / "sunset_hills.jpg", size, source)
            local_out, cluster_out = Path(scratch) / f"local-{size:g}.tif", Path(scratch) / f"cluster-{size:g}.tif"
            local = _local(source, local_out)
            spec = {"workers": args.workers, "input": str(source), "output": str(cluster_out),
                    "band_rows": args.band_rows}
            proc = subprocess.run([sys.executable, __file__, "_child", json.dumps(spec)], capture_output=True,
                                  text=True, check=True)
            cluster = json.loads(proc.stdout.strip().splitlines()[-1])
            band_rows = cluster["band_rows"] or height + 256  # one band: all tile rows
            row = {"megapixels": size, "size": f"{width}x{height}", "workers": args.workers, "local": local,
                   "cluster": cluster,
                   "overhead": round(cluster["job_s"] / local["job_s"] - 1, 3),
                   "identical": local_out.read_bytes() == cluster_out.read_bytes(),
                   **_band_bytes_and_write(cluster_out, band_rows)}
            print(json.dumps(row), flush=True)
            rows.append(row)
            local_out.unlink()
            cluster_out.unlink()
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
