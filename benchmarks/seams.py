"""Seam visibility: mean gradient magnitude on patch-boundary lines / mean gradient elsewhere.

    python benchmarks/seams.py OUTPUT.tif [--patch-size 512 --overlap 64]

Boundaries are where the engine's blend ramps are centred (tiling.plan_axis); 1.0 means the
boundary lines look like any other line of the image.
"""

from __future__ import annotations

import argparse

import numpy as np
import pyvips

from urst_cli.tiling import plan_axis


def seam_ratio(image: np.ndarray, patch: int, overlap: int) -> float:
    grey = image[..., :3].astype(np.float64).mean(axis=2)
    height, width = grey.shape
    gx = np.abs(np.diff(grey, axis=1))  # gx[:, x] is the step between columns x and x+1
    gy = np.abs(np.diff(grey, axis=0))
    pad = lambda n: -(-n // 4) * 4  # noqa: E731
    cols = [b for b in plan_axis(pad(width), patch, overlap, 16).bounds[1:-1] if b < width]
    rows = [b for b in plan_axis(pad(height), patch, overlap, 16).bounds[1:-1] if b < height]
    seam_x = np.zeros(gx.shape[1], bool)
    seam_x[[c - 1 for c in cols]] = True  # the step across the boundary
    seam_y = np.zeros(gy.shape[0], bool)
    seam_y[[r - 1 for r in rows]] = True
    on = np.concatenate([gx[:, seam_x].ravel(), gy[seam_y].ravel()])
    off = np.concatenate([gx[:, ~seam_x].ravel(), gy[~seam_y].ravel()])
    return float(on.mean() / off.mean())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("image")
    parser.add_argument("--patch-size", type=int, default=512)
    parser.add_argument("--overlap", type=int, default=64)
    args = parser.parse_args()
    image = pyvips.Image.new_from_file(args.image).numpy()
    print(f"seam ratio {seam_ratio(image, args.patch_size, args.overlap):.4f}")


if __name__ == "__main__":
    main()
