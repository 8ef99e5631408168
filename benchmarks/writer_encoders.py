"""The default writer on its own (urst's TIFF tiles: horizontal predictor, ISA-L deflate), by encoder threads.

    python benchmarks/writer_encoders.py [--megapixels 64] [--encoders 1,2,4,8]

Rows of a real stylized image (the shipped photo stylized by the shipped painting, 1 MP, repeated to the
size) are handed to ``write_rows`` from memory in band rows of 384 rows, as the engine hands them; for each
number of threads encoding a row of tiles (urst uses half the cores), the wall time, MP/s, CPU seconds and
the file's size. On 2 cores urst encodes in the writer thread itself.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyvips

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from urst_cli import writer  # noqa: E402
from urst_cli.bench import DATA  # noqa: E402
from urst_cli.job import Job, run  # noqa: E402


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megapixels", type=float, default=64)
    parser.add_argument("--encoders", default=f"1,2,4,{os.cpu_count()}")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "photo.png"
        photo = pyvips.Image.new_from_file(str(DATA / "sunset_hills.jpg"))
        photo.resize((1e6 / (photo.width * photo.height)) ** 0.5).write_to_file(str(src))
        run(Job(input=src, output=writer.OutputSpec(Path(tmp) / "styled.tif"), styles=[DATA / "starry_night.jpg"]))
        styled = pyvips.Image.new_from_file(str(Path(tmp) / "styled.tif")).numpy()
        width = round((args.megapixels * 1e6 * 3 / 2) ** 0.5)
        height = round(width * 2 / 3)
        reps = (-(-384 // styled.shape[0]), -(-width // styled.shape[1]), 1)
        band = np.tile(styled, reps)[:384, :width].copy()  # one band row, handed over again and again
        print(f"{width}x{height}, {os.cpu_count()} cores")
        for encoders in (int(e) for e in args.encoders.split(",")):
            writer.ENCODERS = encoders
            out = writer.OutputSpec(Path(tmp) / "out.tif")
            blocks = (band[: min(384, height - top)] for top in range(0, height, 384))
            cpu, started = cpu_seconds(), time.perf_counter()
            writer.write_rows(blocks, width, height, 3, out)
            seconds = time.perf_counter() - started
            print(f"{encoders:2d} encoder threads: {seconds:6.2f} s {width * height / 1e6 / seconds:7.1f} MP/s, "
                  f"{cpu_seconds() - cpu:6.2f} s CPU, {out.path.stat().st_size / 1e6:7.1f} MB", flush=True)


if __name__ == "__main__":
    main()
