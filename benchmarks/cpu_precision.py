"""bf16 autocast against float32 on this CPU: speed per window, and how far whole jobs' pixels move.

    python benchmarks/cpu_precision.py [--megapixels 2] [--rounds 15]

Speed: one 512 px window of the shipped photo per model, statistics replayed, float32 and bf16 in turns,
median of ``--rounds``. Pixels: whole jobs (default settings otherwise) on content photos of
../shared/data resized to ``--megapixels``, float32 against bfloat16, mean / 99th percentile / max of
|difference| in 8-bit levels; beside each, what urst's closeness check (precision.py, one 256 px window
of the shipped photo) measures for the same model and style, and whether ``--precision auto`` takes bf16.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyvips
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))

from urst_cli.bench import DATA  # noqa: E402
from urst_cli.engine import Runner  # noqa: E402
from urst_cli.heap import reuse_freed_blocks  # noqa: E402
from urst_cli.job import Job, conditioning, load_model, run  # noqa: E402
from urst_cli.models import Replay, pad_to_valid  # noqa: E402
from urst_cli.precision import bfloat16_closeness, native_bfloat16  # noqa: E402
from urst_cli.stats import whole_stats  # noqa: E402
from urst_cli.writer import OutputSpec  # noqa: E402

CPU = torch.device("cpu")
STYLED = [("magenta", {"styles": [SHARED / "style" / s]}) for s in (
    "vangogh_starry_night_1889.jpg", "hokusai_great_wave_c1831.jpg", "monet_water_lilies_1919.jpg",
    "kandinsky_composition_vii_1913.jpg", "mondrian_tableau_no2_composition_vii_1913.jpg")]
STYLED += [("multistyle26", {"presets": [p]}) for p in (0, 3, 7, 12, 19, 25)]
CONTENT = ["forest_stream_3088x2056.jpg", "coast_bridge_cables_4352x2448.jpg"]


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def speed(model: str, options: dict, rounds: int) -> tuple[float, float]:
    job = Job(input=DATA / "sunset_hills.jpg", output=OutputSpec(Path("unused.tif")), model=model, **options)
    net = load_model(job, CPU)
    cond = conditioning(job, net, CPU)
    photo = pyvips.Image.new_from_file(str(DATA / "sunset_hills.jpg")).crop(1800, 1200, 512, 512).numpy()
    runners = {bf16: Runner(net, cond, CPU, bfloat16=bf16) for bf16 in (False, True)}
    x = pad_to_valid(runners[False].to_tensor(photo[None]), net)
    policy = Replay(whole_stats(runners[False], photo), net)
    times: dict[bool, list[float]] = {False: [], True: []}
    for bf16, runner in runners.items():  # warm-up: oneDNN builds its kernels on first use
        runner(x, policy)
        runner(x, policy)
    for _ in range(rounds):
        for bf16, runner in runners.items():
            started = time.perf_counter()
            runner(x, policy)
            times[bf16].append(time.perf_counter() - started)
    return float(np.median(times[False])), float(np.median(times[True]))


def job_difference(model: str, options: dict, content: Path, megapixels: float, tmp: Path) -> tuple[float, ...]:
    img = pyvips.Image.new_from_file(str(content))
    src = tmp / "content.png"
    img.resize((megapixels * 1e6 / (img.width * img.height)) ** 0.5).write_to_file(str(src))
    outputs = []
    for precision in ("float32", "bfloat16"):
        out = tmp / f"{precision}.tif"
        run(Job(input=src, output=OutputSpec(out), model=model, precision=precision, overwrite=True, **options))
        outputs.append(pyvips.Image.new_from_file(str(out)).numpy().astype(np.int16))
    d = np.abs(outputs[0] - outputs[1])
    return float(d.mean()), float(np.percentile(d, 99)), float(d.max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megapixels", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    reuse_freed_blocks()
    print(f"{cpu_name()}, {torch.get_num_threads()} threads, native bf16: {native_bfloat16()}")
    for model, options in (STYLED[0], STYLED[5]):
        fp32, bf16 = speed(model, options, args.rounds)
        print(f"{model:<13} 512 px window: float32 {fp32 * 1e3:6.1f} ms, bf16 {bf16 * 1e3:6.1f} ms "
              f"({fp32 / bf16:.2f}x), median of {args.rounds} in turns", flush=True)
    print(f"whole jobs at {args.megapixels:g} MP, |bf16 - float32| in levels: mean / p99 / max; check window: same")
    with tempfile.TemporaryDirectory() as scratch:
        for model, options in STYLED:
            job = Job(input=DATA / "sunset_hills.jpg", output=OutputSpec(Path("unused.tif")), model=model, **options)
            net = load_model(job, CPU)
            check = bfloat16_closeness(net, conditioning(job, net, CPU))
            style = options.get("styles", [None])[0]
            label = f"{model} {style.stem if style else 'preset ' + str(options['presets'][0])}"
            for content in CONTENT:
                mean, p99, top = job_difference(model, options, SHARED / "content" / content, args.megapixels,
                                                Path(scratch))
                print(f"{label:<50} {content.split('_')[0]:<7} {mean:5.2f} / {p99:3.0f} / {top:3.0f}   check "
                      f"{check.mean:5.2f} / {check.p99:3.0f} / {check.max:3.0f}  auto: "
                      f"{'bf16' if check.acceptable else 'float32'}", flush=True)


if __name__ == "__main__":
    main()
