"""What each output format's saver adds to peak memory, without torch: rows in, a file (or pyramid) out.

    python benchmarks/saver_memory.py OUT.dzi|OUT.szi|OUT.tif [--pyramid] [--side 16000] [--pixels IMAGE]

Streams a --side x --side image to OUT through urst's writer, one block of 64 rows of --pixels
(default: the shipped photo) repeated, and prints the time and the process's peak RSS before and
after writing. Run each format in a fresh process.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import pyvips

from urst_cli.writer import OutputSpec, write_rows

ROWS = 64


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--pyramid", action="store_true", help="TIFF: with reduced-resolution levels (libvips)")
    parser.add_argument("--side", type=int, default=16000)
    parser.add_argument("--pixels", type=Path, default=Path(__file__).resolve().parents[1] / "urst_cli" / "data" /
                        "sunset_hills.jpg")
    args = parser.parse_args()
    source = pyvips.Image.new_from_file(str(args.pixels))[0:3]
    strip = source.crop(0, 0, min(source.width, args.side), ROWS).numpy()
    block = np.ascontiguousarray(np.tile(strip, (1, -(-args.side // strip.shape[1]), 1))[:, :args.side])
    before = peak_mib()
    started = time.perf_counter()
    write_rows((block for _ in range(-(-args.side // ROWS))), args.side, -(-args.side // ROWS) * ROWS, 3,
               OutputSpec(args.output, pyramid=args.pyramid))
    print(f"{args.output.name}{' (pyramid)' if args.pyramid else ''} {args.side} px wide: "
          f"{time.perf_counter() - started:.1f} s, peak RSS {peak_mib():.0f} MiB (before writing {before:.0f} MiB)")


if __name__ == "__main__":
    main()
