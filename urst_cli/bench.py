"""``urst bench``: what this machine does with a given model, size by size.

Each size runs in a fresh Python process (``python -m urst_cli.bench RUN-SPEC``), so the peak
memory reported is that run's alone. Inputs are made on the fly from a real photo with
libvips (resized to the requested megapixels, streamed to a tiled JPEG BigTIFF, a JPEG or a
PNG), outputs are tiled BigTIFFs in a scratch directory removed afterwards.
"""

from __future__ import annotations

import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .engine import TilePlan

__all__ = ["run_sweep", "make_input"]

DATA = Path(__file__).resolve().parent / "data"


def make_input(source: Path, megapixels: float, dest: Path) -> tuple[int, int]:
    """``source`` resized (aspect kept) to about ``megapixels`` and saved by ``dest``'s suffix (.tif: tiled
    JPEG BigTIFF, as scanners and slide formats store gigapixel images); returns its size."""
    import pyvips

    img = pyvips.Image.new_from_file(str(source), access="sequential")
    scale = math.sqrt(megapixels * 1e6 / (img.width * img.height))
    img = img.resize(scale)
    if dest.suffix == ".tif":
        img.tiffsave(str(dest), tile=True, bigtiff=True, compression="jpeg", Q=90)
    elif dest.suffix == ".jpg":
        img.jpegsave(str(dest), Q=90)
    else:
        img.write_to_file(str(dest))
    return img.width, img.height


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(spec: dict) -> dict:
    """One measurement, in this (fresh) process: a tiled job, or the whole image in one piece."""
    import torch

    from .heap import reuse_freed_blocks
    from .job import Job, pick_device, prepare, run
    from .models import NULL_MODEL, PerInstance, pad_to_valid
    from .stats import SampleSpec
    from .timing import Stopwatch
    from .writer import OutputSpec

    job = Job(input=Path(spec["input"]), output=OutputSpec(Path(spec["output"])), model=spec["model"],
              styles=[Path(p) for p in spec["styles"]], presets=spec["presets"], stats=spec["stats"],
              patch_size=spec["patch_size"], batch_size=spec["batch_size"], device=spec["device"],
              weights=spec.get("weights"), weights_dir=Path(spec["weights_dir"]) if spec["weights_dir"] else None,
              sample=SampleSpec(), overwrite=True, stroke_scale=spec.get("stroke_scale", "auto"))
    if spec["mode"] == "copy":  # libvips alone: decode the input and write the same kind of file urst writes
        import pyvips

        started = time.perf_counter()
        pyvips.Image.new_from_file(str(job.input), access="sequential").tiffsave(
            str(job.output.path), tile=True, tile_width=job.output.tile_size, tile_height=job.output.tile_size,
            bigtiff=True, compression="deflate", predictor="horizontal")
        return {"seconds": time.perf_counter() - started, "peak_rss_mib": _peak_rss_mib()}
    reuse_freed_blocks()  # as the job does, for the model-alone timings too
    device = pick_device(job.device)
    cuda = device.type == "cuda"
    if spec["mode"] == "host":
        job = _host_only(job)
    before = None  # the model alone, timed before and after a tiled job: machines drift in speed over seconds
    if spec["mode"] == "whole":
        from .reader import read_whole

        runner, _ = prepare(job).for_image(job)
        started = time.perf_counter()
        try:
            x = pad_to_valid(runner.to_tensor(read_whole(job.input)[None]), runner.model)
            runner(x, PerInstance(runner.model))
            if cuda:
                torch.cuda.synchronize()
        except (RuntimeError, MemoryError) as exc:  # torch's CPU and CUDA allocators both raise RuntimeError
            if "memory" not in str(exc).lower():
                raise
            return {"oom": True, "seconds": time.perf_counter() - started, "peak_rss_mib": _peak_rss_mib()}
        result = {"oom": False, "seconds": time.perf_counter() - started, "peak_rss_mib": _peak_rss_mib()}
    else:
        # no device synchronisation at stage boundaries: it would stop the host from preparing the next batch
        # while the device runs this one, and time a slower job than urst runs (on CUDA the split then charges
        # device time to the stage that waits for it: the downloads, counted as blending)
        clock = Stopwatch()
        if job.model != NULL_MODEL:
            before = _model_alone(job, device)
        if cuda:
            torch.cuda.reset_peak_memory_stats()  # the job's own peak, not the reference runs'
        done = run(job, clock=clock)
        result = {"seconds": done.seconds, "stages": done.stages, "patches": done.patches,
                  "stats_mode": done.stats_mode, "peak_rss_mib": _peak_rss_mib(), "width": done.width,
                  "height": done.height, "levels": done.levels}
    if cuda:
        result["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20  # before the reference runs below
    if before is not None:
        after = _model_alone(job, device)
        edge, inside = before.batch_counts()
        result["model_alone_seconds"] = (edge * float(np.median(before.edge + after.edge))
                                         + inside * float(np.median(before.inside + after.inside)))
    return result


def _host_only(job):
    """``job`` with its network replaced by the null model, everything else as the network's job runs: the same
    windows and batches, and the same choice of statistics estimator (the null model's statistics cost nothing)."""
    from dataclasses import replace

    from .job import prepare, whole_pass_limit
    from .models import NULL_MODEL

    runner, plan = prepare(job).for_image(job)
    return replace(job, model=NULL_MODEL, styles=[], presets=[], weights=None, transform=None,
                   patch_size=plan.patch, overlap=plan.overlap, batch_size=plan.batch,
                   whole_limit=job.whole_limit or whole_pass_limit(runner, plan))


@dataclass
class _ModelAlone:
    plan: TilePlan
    radius: int                     # the network's receptive radius
    padded: list[tuple[int, int]]   # the padded frame of every level the job paints
    edge: list[float]               # seconds per batch of windows with an edge on the frame's border
    inside: list[float]             # seconds per batch of windows inside it (zero padding, see engine.inside_image)

    def batch_counts(self) -> tuple[int, int]:
        """(batches at a frame's border, batches inside it) of the job's levels, as the engine cuts them."""
        from .engine import batch_columns, inside_image

        inside = []
        for frame in self.padded:
            cols, rows = self.plan.axes(*frame)
            inside += [inside_image(self.plan, self.radius, cols, rows, r, js) for r in range(len(rows))
                       for js in batch_columns(len(cols), self.plan.batch)]
        return len(inside) - sum(inside), sum(inside)


def _model_alone(job, device) -> _ModelAlone:
    """The job's model on its own, per batch, both ways it runs: warm, no I/O, no blending, statistics replayed.

    Real pixels (the input's top-left window, repeated to a batch); many timed batches (at least
    1.5 s of them), so that the median is not one slow moment of a shared machine.
    """
    import torch

    from .job import prepare
    from .models import Replay, valid_size
    from .multiscale import plan_levels
    from .reader import BandReader, probe
    from .stats import whole_stats

    runner, plan = prepare(job).for_image(job)
    model = runner.model
    window = BandReader(job.input, plan.patch, plan.patch).read(0, plan.patch)[:, :, :3]
    patches = runner.to_tensor(np.stack([window] * plan.batch))
    policy = Replay(whole_stats(runner, window).to(device), model)
    times: dict[bool, list[float]] = {False: [], True: []}
    for inside in times:
        runner(patches, policy, inside)
    while len(times[True]) < 5 or sum(times[True]) < 0.75 and len(times[True]) < 100:
        for inside, taken in times.items():  # in turns: a drift in the machine's speed affects both alike
            started = time.perf_counter()
            runner(patches, policy, inside)
            if device.type == "cuda":
                torch.cuda.synchronize()
            taken.append(time.perf_counter() - started)
    info = probe(job.input)
    padded = [(valid_size(level.width, model), valid_size(level.height, model))
              for level in plan_levels(info.width, info.height, job.stroke_scale)]
    return _ModelAlone(plan, model.receptive_radius, padded, times[False], times[True])


def run_sweep(sizes: list[float], options: dict, baseline: bool, on_result=lambda row: None,
              copy_baseline: bool = False, host_baseline: bool = False,
              stroke_scales: tuple[str, ...] = ("auto",)) -> list[dict]:
    """Measure every size at every stroke scale, one row per size and stroke scale; with the first stroke scale
    also the whole-image baseline (up to where it runs out of memory); with ``copy_baseline``, ``vips copy``
    of the same input to a tiled deflate BigTIFF: the I/O floor; with ``host_baseline``, in every row, the same
    job (same stroke scale) with the null model instead of the network: urst's own pipeline."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="urst-bench-") as scratch:
        whole_failed = False
        for mp in sizes:
            path = Path(scratch) / f"input_{mp:g}mp.{options.get('input_format', 'tif')}"
            width, height = make_input(Path(options["source_path"]), mp, path)
            spec = {**options, "input": str(path), "output": str(Path(scratch) / "out.tif"), "mode": "tiled"}
            for i, strokes in enumerate(stroke_scales):
                row = {"megapixels": width * height / 1e6, "width": width, "height": height, "input": path.suffix[1:],
                       "stroke_scale": strokes, "tiled": _spawn({**spec, "stroke_scale": strokes})}
                # the whole image and the copy are the same for every stroke scale; the host pipeline is not
                # (each level is a pass of its own), so it runs beside every row, with the row's levels
                if baseline and not whole_failed and i == 0:
                    row["whole"] = _spawn({**spec, "mode": "whole"}, options.get("memory_limit"))
                    whole_failed = row["whole"].get("oom", False) or "error" in row["whole"]
                if copy_baseline and i == 0:
                    row["copy"] = _spawn({**spec, "mode": "copy"})
                if host_baseline:
                    row["host"] = _spawn({**spec, "mode": "host", "stroke_scale": strokes})
                rows.append(row)
                on_result(row)
            path.unlink()
    return rows


def _spawn(spec: dict, memory_limit: int | None = None) -> dict:
    """Run one measurement in a fresh interpreter; a memory limit makes the whole-image baseline fail cleanly."""
    def limit():
        if memory_limit:
            resource.setrlimit(resource.RLIMIT_DATA, (memory_limit, memory_limit))

    proc = subprocess.run([sys.executable, "-m", "urst_cli.bench", json.dumps(spec)], capture_output=True,
                          text=True, preexec_fn=limit)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        text = lines[-1].removeprefix("Error: ") if lines else f"exit {proc.returncode}"
        oom = proc.returncode in (-9, 137) or "memory" in text.lower()
        return {"oom": oom, "error": text}
    return json.loads(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    from .errors import UrstError

    try:
        print(json.dumps(_child(json.loads(sys.argv[1]))))
    except UrstError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
