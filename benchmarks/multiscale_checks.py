"""Multi-scale stylization's side effects on one default run: temporary disk and seams at every level.

    python benchmarks/multiscale_checks.py [--long-side 4000]

Stylizes the shipped-data sunset photo (enlarged) with Starry Night twice, default and ``--stroke-scale 1``;
polls the hidden levels folder for its peak size, and measures benchmarks/seams.py's ratio at the
patch boundaries of level 0, and of levels 1 and 2 on the output shrunk 2x and 4x (the single pass has
no boundaries there: its ratios show what the image's own lines give).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import pyvips

from seams import seam_ratio
from urst_cli.job import Job, prepare, run
from urst_cli.multiscale import LEVELS_SUFFIX
from urst_cli.writer import OutputSpec
from view_style import SHARED, enlarged


def _folder_bytes(parent: Path, pattern: str) -> int:
    return sum(f.stat().st_size for d in parent.glob(pattern) for f in d.rglob("*") if f.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--long-side", type=int, default=4000)
    args = parser.parse_args()
    painting = SHARED / "style" / "vangogh_starry_night_1889.jpg"
    with tempfile.TemporaryDirectory(prefix="urst-ms-checks-") as scratch:
        folder = Path(scratch)
        content = enlarged(SHARED / "content" / "sunset_hills_4272x2848.jpg", args.long_side, folder / "in.tif")
        report = {}
        for strokes in ("auto", "1"):
            out = folder / f"out-{strokes}.tif"
            job = Job(input=content, output=OutputSpec(out), styles=[painting], stroke_scale=strokes)
            plan = prepare(job).for_image(job)[1]
            peak, done = [0], threading.Event()

            def poll() -> None:
                while not done.wait(0.05):
                    peak[0] = max(peak[0], _folder_bytes(folder, f".{out.name}.*{LEVELS_SUFFIX}"))

            watcher = threading.Thread(target=poll, daemon=True)
            watcher.start()
            started = time.perf_counter()
            run(job)
            done.set()
            watcher.join()
            image = pyvips.Image.new_from_file(str(out))
            report[strokes] = {
                "seconds": round(time.perf_counter() - started, 1), "output_bytes": out.stat().st_size,
                "peak_temporary_bytes": peak[0], "temporary_to_output": round(peak[0] / out.stat().st_size, 3),
                "seams": {f"level {k}": round(seam_ratio((image.shrink(2**k, 2**k) if k else image).numpy(),
                                                         plan.patch, plan.overlap), 3) for k in range(3)}}
        print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
