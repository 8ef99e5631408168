"""Peak memory and time of one 4000x3000 job per model family, default settings, on the CPU.

    python benchmarks/family_memory.py --weights-dir DIR [--models adain,capvst:artistic,...] [--size 4000x3000]

Each job is ``urst stylize`` in a fresh process (``--device cpu``, the shipped photo resized to --size and
saved as a JPEG, the shipped painting as style); its peak RSS is the child's own (wait4). DIR holds the
imported weights of the families asked for; for the imported families, random values in the published
layouts (tests/conftest.py's ``published_*`` helpers) measure the same: memory and time do not depend on
the values. Run it under the shared CPU lock (flock /tmp/urst-cpu.lock ...).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyvips

DATA = Path(__file__).resolve().parents[1] / "urst_cli" / "data"
FAMILIES = ("magenta", "adain", "wct", "capvst:photorealistic", "capvst:artistic", "sanet", "linear:r41",
            "linear:r31", "msgnet")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights-dir", type=Path, required=True)
    parser.add_argument("--models", default=",".join(FAMILIES), help="model[:weights], comma-separated")
    parser.add_argument("--size", default="4000x3000")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        photo = pyvips.Image.new_from_file(str(DATA / "sunset_hills.jpg"))
        source = Path(tmp) / "input.jpg"
        photo.resize(width / photo.width, vscale=height / photo.height).jpegsave(str(source), Q=90)
        print(f"{'model':<24} {'wall':>8} {'peak RSS':>10}")
        for item in args.models.split(","):
            model, _, weights = item.partition(":")
            command = [sys.executable, "-m", "urst_cli", "stylize", str(source), "-m", model, "-s",
                       str(DATA / "starry_night.jpg"), "-o", str(Path(tmp) / "out.tif"), "--overwrite", "--quiet",
                       "--device", "cpu", "--weights-dir", str(args.weights_dir),
                       *(("--weights", weights) if weights else ())]
            started = time.perf_counter()
            child = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
            _, status, usage = os.wait4(child.pid, 0)
            wall = time.perf_counter() - started
            if status != 0:
                print(f"{item:<24} failed: {child.stderr.read().strip()}")
                continue
            print(f"{item:<24} {wall:7.1f}s {usage.ru_maxrss / 1024:7.0f} MiB", flush=True)


if __name__ == "__main__":
    main()
