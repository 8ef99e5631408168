"""How close sampled and thumbnail statistics come to the exact ones (PSNR of 8-bit outputs).

    python benchmarks/stats_fidelity.py [--size 2048x1536] [--crops 16 --crop-size 384 --context 64] [--seeds 0 1 2]
        [--model linear --weights r31 --weights-dir DIR [--generic-crops]]

For each photo/painting pair from ../shared/data: the photo is resized to --size, stylized
with exact statistics (one whole-image pass; equal to the streamed exact estimator, see
tests/test_fidelity.py), then with each estimator; every output goes through the same tiled
engine and 8-bit rounding, and PSNR is taken against the exact output. The model is magenta
unless --model names another (imported weights in --weights-dir); sampling uses the model's own
crops (``Stylizer.sample_crop``) as a job does, or with --generic-crops the --crop-size/--context ones.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from conftest import SHARED, resized  # noqa: E402

from urst_cli.engine import Runner, TilePlan, stylize_rows  # noqa: E402
from urst_cli.job import FEATHER, Job, conditioning  # noqa: E402
from urst_cli.models import get_spec, load_parts, valid_size  # noqa: E402
from urst_cli.reader import BandReader, read_thumbnail, read_whole  # noqa: E402
from urst_cli.stats import SampleSpec, sampled_stats, whole_stats  # noqa: E402
from urst_cli.writer import OutputSpec  # noqa: E402

PAIRS = [
    ("content/forest_stream_3088x2056.jpg", "style/vangogh_starry_night_1889.jpg"),
    ("content/coast_bridge_cables_4352x2448.jpg", "style/monet_water_lilies_1919.jpg"),
    ("content/kleiber_bird_6028x3391.jpg", "style/hokusai_great_wave_c1831.jpg"),
    ("content/sunset_hills_4272x2848.jpg", "style/kandinsky_composition_vii_1913.jpg"),
    ("content/dogs_wooden_house_2056x3088.jpg", "style/turner_shipwreck_of_the_minotaur_c1810.jpg"),
]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="2048x1536")
    parser.add_argument("--crops", type=int, default=SampleSpec.crops)
    parser.add_argument("--crop-size", type=int, default=SampleSpec.size)
    parser.add_argument("--context", type=int, default=SampleSpec.context)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--thumb-size", type=int, default=1024)
    parser.add_argument("--pairs", type=int, default=len(PAIRS))
    parser.add_argument("--model", default="magenta")
    parser.add_argument("--weights", default=None, help="the model's variant (e.g. r31)")
    parser.add_argument("--weights-dir", type=Path, default=None)
    parser.add_argument("--generic-crops", action="store_true", help="ignore the model's own sample_crop")
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    cpu = torch.device("cpu")
    net = load_parts(get_spec(args.model), cpu, args.weights, args.weights_dir)
    if args.generic_crops:
        net.sample_crop = None
    m = net.pad_multiple
    overlap = max(64, -(-(net.receptive_radius + FEATHER // 2) // m) * m)  # as a job's default, at least 64
    plan = TilePlan(patch=1024, overlap=overlap, feather=FEATHER, batch=1, multiple=m)
    pw, ph = valid_size(width, net), valid_size(height, net)
    sampled_scores, thumb_scores = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for content, style in PAIRS[: args.pairs]:
            path = resized(SHARED / content, Path(tmp) / "photo.png", width, height)
            job = Job(input=path, output=OutputSpec(path), model=args.model, styles=[SHARED / style],
                      weights=args.weights, weights_dir=args.weights_dir)
            runner = Runner(net, conditioning(job, net, cpu), cpu)

            def render(stats) -> np.ndarray:
                # blocks are views of reused buffers: copied as they come
                return np.concatenate([b.copy() for b in stylize_rows(BandReader(path, pw, ph), runner, stats, plan)])

            exact = render(whole_stats(runner, read_whole(path)))
            t0 = time.perf_counter()
            thumb = psnr(render(whole_stats(runner, read_thumbnail(path, args.thumb_size))), exact)
            per_seed = []
            for seed in args.seeds:
                spec = SampleSpec(args.crops, args.crop_size, args.context, seed)
                t0 = time.perf_counter()
                stats = sampled_stats(runner, lambda: BandReader(path, pw, ph), spec)
                seconds = time.perf_counter() - t0
                per_seed.append(psnr(render(stats), exact))
            sampled_scores += per_seed
            thumb_scores.append(thumb)
            print(f"{Path(content).stem:>32} + {Path(style).stem:<40} sampled "
                  f"{' '.join(f'{s:5.1f}' for s in per_seed)} dB ({seconds:.1f} s)  thumbnail {thumb:5.1f} dB",
                  flush=True)
    print(f"sampled: median {statistics.median(sampled_scores):.1f} dB, min {min(sampled_scores):.1f} dB; "
          f"thumbnail {args.thumb_size}: median {statistics.median(thumb_scores):.1f} dB, "
          f"min {min(thumb_scores):.1f} dB")


if __name__ == "__main__":
    main()
