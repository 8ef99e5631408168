"""One stylization job, start to finish: the library API behind ``urst stylize``.

    input --probe--> size/alpha
    styles --model family's conditioner--> conditionings --mix(style weights)--> conditioning
    input --estimator--> NormStats            (stats.py)
    input --BandReader--> engine --rows--> writer --> output   (one streaming pass)
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from itertools import chain
from pathlib import Path
from typing import Literal

import pyvips
import torch

from . import __version__
from .engine import Runner, TilePlan, batch_for_memory, stylize_rows, stylize_span
from .timing import Stopwatch
from .errors import EXIT_USAGE, UrstError, raise_if_stopped
from .heap import reuse_freed_blocks, trim_heap
from .models import (NUM_PRESETS, NormStats, PREDICTOR_SIZE, Stylizer, get_spec, load_parts, load_weights, mix,
                     valid_size)
from .multiscale import (COARSE_SAMPLE_SIZE, LEVELS_SUFFIX, Level, LevelFiles, LevelSource, build_photo_pyramid,
                         levels_folder, plan_levels, restore)
from .precision import cached_closeness, native_bfloat16
from .reader import DEFAULT_MAX_PIXELS, BandReader, ImageInfo, ImageSource, probe, read_style, read_whole
from .resume import Journal, journal_folder, tensor_digest
from .stats import SampleSpec, exact_stats, sampled_stats, whole_stats
from .writer import OutputSpec, check_output, encode_tiles, own_tiff, remove_orphans, write_rows

__all__ = ["Job", "Result", "Prepared", "prepare", "run", "pick_device", "coarsest_level", "StatsMode",
           "check_banded", "image_stats", "band_tiles"]

StatsMode = Literal["auto", "sampled", "thumbnail", "exact"]
FEATHER = 16  # blend width in pixels at patch seams
# device memory a batch of windows may take on CUDA by default: with weights, the blend strip and the
# carry, a job stays under 2 GiB, so it shares a GPU with others (--batch-size overrides it)
GPU_BUDGET = int(1.5 * 2**30)


@dataclass
class Job:
    input: Path
    output: OutputSpec
    model: str = "magenta"
    styles: list[Path] = field(default_factory=list)     # style images (models that take one)
    presets: list[int] = field(default_factory=list)     # built-in styles (multistyle26)
    style_weights: list[float] | None = None             # interpolation between several styles (None: equal)
    alpha: float = 1.0                                   # strength: 0 keeps the content, 1 is full style
    preserve_color: bool = False                         # keep the photo's colours, take the stylized luminance
    weights: str | None = None                           # per-style models: which imported weights (johnson)
    transform: str | None = None                         # wct: "svd" (default) or "cwct"
    weights_dir: Path | None = None                      # imported weights (None: $URST_WEIGHTS or the cache)
    stats: StatsMode = "auto"
    thumb_size: int = 1024
    sample: SampleSpec = field(default_factory=SampleSpec)
    patch_size: int | None = None     # None: chosen for the device
    overlap: int | None = None        # None: the model's receptive field plus half the feather
    batch_size: int | None = None     # None: chosen for the device
    device: str = "auto"
    precision: str = "auto"          # float32 | bfloat16 | auto (bf16 on CUDA; on CPU where faster and close)
    max_pixels: int = DEFAULT_MAX_PIXELS
    whole_limit: int | None = None    # auto stats: whole-image pass up to this many pixels (None: by device)
    overwrite: bool = False
    resume: bool = False              # journal finished rows beside the output; continue an interrupted run
    stroke_scale: str = "auto"        # multi-scale: "auto", or S >= 1 (2^k: k octaves of larger strokes); "1": single
    style_scale: float = 1.0          # read the painting this many times larger (larger copied texture)


@dataclass
class Result:
    path: Path
    width: int
    height: int
    seconds: float
    stats_mode: str
    stats_seconds: float
    patches: int
    stages: dict[str, float] = field(default_factory=dict)  # seconds: read, stats, model, blend, write
    patch_size: int = 0
    levels: list[dict] = field(default_factory=list)  # multi-scale: per level (coarsest first) size, stats, seconds

    @property
    def megapixels_per_second(self) -> float:
        return self.width * self.height / 1e6 / max(self.seconds, 1e-9)


class Progress:
    """Callbacks a front end implements; the defaults do nothing."""

    def stage(self, text: str) -> None: ...

    def start_patches(self, total: int, pixels: int, pixels_before: int, pixels_all: int) -> None:
        """A stylizing pass of ``total`` patches over ``pixels`` begins; the passes before it painted
        ``pixels_before`` of the ``pixels_all`` that all the job's passes (multi-scale levels) paint."""

    def advance(self, patches: int) -> None: ...


def coarsest_level(width: int, height: int, stroke_scale: str = "auto") -> int:
    """Octaves below full size of the coarsest level multi-scale stylization paints (``multiscale.plan_levels``):
    with "auto" the smallest k with long side / 2**k <= 1536 px (fewer where the short side would fall
    below two minimal levels). ``urst stylize --preview`` paints the input halved k times, as that level
    does: the whole result seen whole.
    """
    return plan_levels(width, height, stroke_scale)[0].index


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UrstError("--device cuda: no CUDA device is available (torch sees none)", EXIT_USAGE)
    if name not in ("cpu", "cuda"):
        raise UrstError(f"--device {name}: use auto, cpu or cuda", EXIT_USAGE)
    return torch.device(name)


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def make_plan(job: Job, runner: Runner) -> TilePlan:
    model, device = runner.model, runner.device
    m = model.pad_multiple
    context = model.default_context or model.receptive_radius
    overlap = job.overlap if job.overlap is not None else _round_up(context + FEATHER // 2, m)
    # measured on 2 CPU cores: 512 beats 1024 (2.0 vs 1.7 MP/s, cache-friendlier) despite more overlap
    patch = job.patch_size or (512 if device.type == "cpu" else 1024)
    if job.patch_size is None:
        patch = max(patch, _round_up(8 * overlap, m))  # wide-context models: keep 3/4 of each side as core
        if device.type == "cpu" and model.max_cpu_patch:  # ...unless wider windows break the 1 GiB budget
            patch = max(min(patch, model.max_cpu_patch), _round_up(2 * overlap + 64, m))
    feather = min(FEATHER, 2 * (overlap // 2))
    if overlap < 0 or overlap % m:
        raise UrstError(f"--overlap {overlap}: must be a non-negative multiple of {m} for this model", EXIT_USAGE)
    if patch % m or patch - 2 * overlap < 64:
        raise UrstError(f"--patch-size {patch}: must be a multiple of {m} and at least 2 x overlap + 64 "
                        f"(= {2 * overlap + 64})", EXIT_USAGE)
    if job.batch_size is not None and job.batch_size < 1:
        raise UrstError("--batch-size must be at least 1", EXIT_USAGE)
    if job.batch_size:
        batch = job.batch_size
    elif device.type == "cuda":  # measured: what one more window costs, against the memory budget
        batch = batch_for_memory(runner.patch_bytes(patch), GPU_BUDGET, torch.cuda.mem_get_info(device)[0])
    else:
        batch = 1  # CPU: torch already spreads one window over every core
    return TilePlan(patch, overlap, feather, batch, m)


def model_options(job: Job) -> dict:
    if job.transform is not None and job.model != "wct":
        raise UrstError("--transform applies to --model wct only", EXIT_USAGE)
    if job.transform is not None and job.transform not in ("svd", "cwct"):
        raise UrstError(f"--transform {job.transform}: use svd or cwct", EXIT_USAGE)
    return {"transform": job.transform} if job.transform else {}


class _NeedsContent(Exception):
    """The conditioner asked for the content photo: the conditioning is made per image."""


class _StyleContext:
    """What a model family's conditioner may ask for besides the style images.

    Auxiliary networks are loaded once and shared by the contexts ``with_content`` makes; a context
    without a content photo raises ``_NeedsContent`` when asked for it.
    """

    def __init__(self, weights_dir: Path | None, device: torch.device, content: Path | None = None,
                 loaded: dict | None = None):
        self.weights_dir, self.device, self.content = weights_dir, device, content
        self._loaded = {} if loaded is None else loaded

    def with_content(self, content: Path) -> "_StyleContext":
        return _StyleContext(self.weights_dir, self.device, content, self._loaded)

    def load_auxiliary(self, name: str):
        if name not in self._loaded:
            self._loaded[name] = load_weights(name, self.device, self.weights_dir)
        return self._loaded[name]

    def content_square(self):
        if self.content is None:
            raise _NeedsContent
        return read_style(self.content, PREDICTOR_SIZE, square=True)


def conditioning(job: Job, model, device: torch.device, context: _StyleContext | None = None):
    """The style the job asked for, as the model's per-layer conditioning (several styles mixed by weight).

    ``context``: where auxiliary networks and the content photo come from (default: the job's input).
    """
    spec = get_spec(job.model)
    if job.style_scale != 1 and spec.style != "image":
        raise UrstError(f"--style-scale applies to models that take --style, not '{spec.name}'", EXIT_USAGE)
    if spec.style == "image":
        if not job.styles or job.presets:
            raise UrstError(f"model '{spec.name}' needs --style PAINTING (and no --preset)", EXIT_USAGE)
        # the square the style predictor reads (magenta) can only be zoomed into
        valid = job.style_scale >= 1 if spec.style_square else job.style_scale > 0
        if not valid or not math.isfinite(job.style_scale):
            least = "at least 1" if spec.style_square else "above 0"
            raise UrstError(f"--style-scale {job.style_scale}: must be {least}"
                            f" for model '{spec.name}'", EXIT_USAGE)
        styles = [read_style(path, spec.style_side, spec.style_square, job.style_scale) for path in job.styles]
    elif spec.style == "preset":
        if not job.presets or job.styles:
            raise UrstError(f"model '{spec.name}' needs --preset 0-{NUM_PRESETS - 1} (and no --style)", EXIT_USAGE)
        bad = [p for p in job.presets if not 0 <= p < NUM_PRESETS]
        if bad:
            raise UrstError(f"--preset {bad[0]}: choose 0-{NUM_PRESETS - 1}", EXIT_USAGE)
        styles = list(job.presets)
    else:
        if (job.styles or job.presets) and not spec.parts:
            raise UrstError(f"model '{spec.name}' takes no style: it has no network", EXIT_USAGE)
        if job.styles or job.presets:
            raise UrstError(f"model '{spec.name}' has its style in its weights: use --weights, not --style/--preset",
                            EXIT_USAGE)
        styles = [None]
    if not 0 <= job.alpha <= 1:
        raise UrstError(f"--alpha {job.alpha}: must be between 0 and 1", EXIT_USAGE)
    if job.alpha != 1 and not spec.strength:
        raise UrstError(f"--alpha does not apply to model '{spec.name}'", EXIT_USAGE)
    if len(styles) > 1 and not spec.mixable:
        raise UrstError(f"model '{spec.name}' takes one --style (its styles do not mix)", EXIT_USAGE)
    weights = job.style_weights or [1.0] * len(styles)
    if len(weights) != len(styles):
        raise UrstError(f"--style-weights: {len(weights)} weights for {len(styles)} styles", EXIT_USAGE)
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise UrstError("--style-weights must be non-negative and not all zero", EXIT_USAGE)
    with torch.inference_mode():
        context = context or _StyleContext(job.weights_dir, device, job.input)
        cond = mix(spec.condition(model, styles, job.alpha, context), weights)
    trim_heap()  # the style networks' activations: ~140 MiB of free heap that windows would not reuse
    return cond


def use_bfloat16(job: Job, model, device: torch.device, cond) -> bool:
    """Whether the network runs under bf16 autocast: as asked, else on CUDA, and on CPUs that compute bf16
    natively where the job's network and style pass the closeness check (see precision.py); never by default
    for a float32-only network."""
    _check_precision(job)
    if job.precision != "auto":
        return job.precision == "bfloat16"
    if device.type == "cuda":
        return not model.float32_only
    return not model.float32_only and native_bfloat16() and cached_closeness(model, cond).acceptable


def _check_precision(job: Job) -> None:
    if job.precision not in ("auto", "float32", "bfloat16"):
        raise UrstError(f"--precision {job.precision}: use auto, float32 or bfloat16", EXIT_USAGE)


def load_model(job: Job, device: torch.device):
    spec = get_spec(job.model)
    if spec.named_weights and not job.weights:
        raise UrstError(f"model '{spec.name}' needs --weights NAME (see `urst weights list`)", EXIT_USAGE)
    if job.weights and not (spec.named_weights or spec.variants):
        raise UrstError(f"--weights applies to per-style models and models with variants only, not '{spec.name}'",
                        EXIT_USAGE)
    return load_parts(spec, device, job.weights, job.weights_dir, model_options(job))


@dataclass
class Prepared:
    """What a job sets up before it looks at its image: made once by ``prepare`` and shared by every job
    of a batch that differs from it only in input and output."""

    device: torch.device
    model: Stylizer
    context: _StyleContext
    runner: Runner | None   # None: the conditioning depends on each photo (magenta with --alpha < 1)
    plan: TilePlan | None   # with the runner (on CUDA its batch is measured with it)

    def for_image(self, job: Job) -> tuple[Runner, TilePlan]:
        """The runner and tiling for ``job``'s image."""
        if self.runner is not None:
            return self.runner, self.plan
        cond = conditioning(job, self.model, self.device, self.context.with_content(job.input))
        runner = Runner(self.model, cond, self.device, use_bfloat16(job, self.model, self.device, cond))
        return runner, make_plan(job, runner)


def prepare(job: Job) -> Prepared:
    """Process settings, device, weights and, where it does not depend on the photo, the style conditioning."""
    reuse_freed_blocks()  # process-wide: activations reuse warm heap pages instead of fresh mmaps
    pyvips.cache_set_max(0)  # every image is read once, top to bottom: libvips' operation cache only holds memory
    _check_precision(job)  # a batch's set-up error, not each image's
    device = pick_device(job.device)
    model = load_model(job, device)
    context = _StyleContext(job.weights_dir, device)
    try:
        cond = conditioning(job, model, device, context)
    except _NeedsContent:
        return Prepared(device, model, context, None, None)
    runner = Runner(model, cond, device, use_bfloat16(job, model, device, cond))
    return Prepared(device, model, context, runner, make_plan(job, runner))


def run(job: Job, progress: Progress = Progress(), clock: Stopwatch | None = None,
        prepared: Prepared | None = None) -> Result:
    """Stylize ``job.input`` into ``job.output``; ``prepared``: the set-up ``prepare`` made (default: made here)."""
    started = time.perf_counter()
    info: ImageInfo = probe(job.input, job.max_pixels)
    check_output(job.output, job.input, info.width, info.height, job.overwrite)
    levels = plan_levels(info.width, info.height, job.stroke_scale)
    prepared = prepared or prepare(job)
    runner, plan = prepared.for_image(job)
    journal = None
    if job.resume:
        journal = Journal.open(job.output.path, job_state(job, info, runner, plan, levels),
                               info.width, info.height, info.bands)
    try:
        return _stylize(job, info, levels, runner, plan, journal, progress, clock or Stopwatch(), started)
    finally:
        if journal is not None:
            journal.close()


def job_state(job: Job, info: ImageInfo, runner: Runner, plan: TilePlan, levels: list[Level]) -> dict:
    """Everything the output rows depend on, as a resumed run must find it unchanged."""
    model, cond = runner.model, runner.cond
    stat = job.input.stat()
    return {"urst": __version__, "input": str(job.input.resolve()), "input_bytes": stat.st_size,
            "input_mtime_ns": stat.st_mtime_ns, "size": [info.width, info.height], "model": job.model,
            "weights": tensor_digest(model.state_dict().values()),
            "style": tensor_digest(t for layer in cond for t in layer), "preserve_color": job.preserve_color,
            "stats": job.stats, "thumb_size": job.thumb_size, "sample": asdict(job.sample), "tiling": asdict(plan),
            "device": runner.device.type, "bfloat16": runner.bfloat16,
            "levels": [[level.width, level.height] for level in levels]}


def whole_pass_limit(runner: Runner, plan: TilePlan) -> int:
    """The most pixels a whole-image statistics pass may have and stay inside the tiled pass's memory budget."""
    if runner.device.type == "cuda":  # it holds one forward's activations: what a window costs per pixel
        return int(GPU_BUDGET / (runner.patch_bytes(plan.patch) / plan.patch**2))
    # ~230 bytes per pixel for magenta on CPU: beyond 1 MP it would break the 1 GiB that streaming keeps
    return runner.model.cpu_whole_pixels


def compute_stats(job: Job, runner: Runner, plan: TilePlan, source: ImageSource, open_reader,
                  pixels: int, sample: SampleSpec) -> tuple[NormStats, str]:
    """The normalization statistics of ``source`` (the input, or a multi-scale level), and the estimator that
    made them."""
    mode = job.stats
    whole_limit = job.whole_limit or whole_pass_limit(runner, plan)
    if mode == "auto":
        mode = "whole" if pixels <= whole_limit else "sampled"
    if mode == "whole":
        return whole_stats(runner, read_whole(source)), mode
    if mode == "exact":
        return exact_stats(runner, open_reader, plan), mode
    if mode == "sampled":
        return sampled_stats(runner, open_reader, sample), mode
    if mode == "thumbnail":
        return whole_stats(runner, source.thumbnail(job.thumb_size)), mode
    raise UrstError(f"--stats {mode}: use auto, sampled, thumbnail or exact", EXIT_USAGE)


def _stylize(job: Job, info: ImageInfo, levels: list[Level], runner: Runner, plan: TilePlan,
             journal: Journal | None, progress: Progress, clock: Stopwatch, started: float) -> Result:
    """Paint every level, coarsest first, each from the one below (a single level: the input as it is)."""
    files = None
    if len(levels) > 1:
        remove_orphans(job.output.path, LEVELS_SUFFIX)
        files = LevelFiles(journal.folder / "levels" if journal is not None else levels_folder(job.output.path))
    try:
        t_pyramid = time.perf_counter()
        if files is not None:
            progress.stage("photo pyramid")
            build_photo_pyramid(job.input, levels, files)
            raise_if_stopped()  # libvips ran the pyramid: a signal may have arrived inside its callbacks
        t_levels = time.perf_counter()
        painted = [_paint_level(job, info, levels, i, runner, plan, files, journal, progress, clock)
                   for i in range(len(levels))]
    finally:
        if files is not None and journal is None:
            files.remove()
    if journal is not None:
        journal.remove()
    else:  # an earlier interrupted --resume run of this output is of no use any more
        shutil.rmtree(journal_folder(job.output.path), ignore_errors=True)
    elapsed = time.perf_counter()
    stats_seconds = sum(p["stats_seconds"] for p in painted)
    stages = {"setup": t_pyramid - started, "pyramid": t_levels - t_pyramid, "stats": stats_seconds, **clock.seconds}
    # what is left of the streaming passes: blending, conversion to 8-bit, the engine's own bookkeeping
    stages["blend"] = elapsed - t_levels - stats_seconds - sum(clock.seconds.values())
    return Result(job.output.path, info.width, info.height, elapsed - started, painted[-1]["stats_mode"],
                  stats_seconds, sum(p["patches"] for p in painted), stages, plan.patch,
                  painted if len(levels) > 1 else [])


def _paint_level(job: Job, info: ImageInfo, levels: list[Level], i: int, runner: Runner, plan: TilePlan,
                 files: LevelFiles | None, journal: Journal | None, progress: Progress, clock: Stopwatch) -> dict:
    """One single-scale pass: level ``i`` of ``levels`` (coarsest first) from its source to its file.

    The last level is the job's output; a coarser one goes to a temporary file (kept with --resume,
    where a finished one is not painted again). Returns what the summary reports of it.
    """
    level, final = levels[i], i == len(levels) - 1
    coarser = files.output(levels[i - 1].index) if i > 0 else None
    what = {"level": level.index, "width": level.width, "height": level.height, "stats_mode": "-",
            "stats_seconds": 0.0, "patches": 0, "seconds": 0.0, "resumed": False}
    if final:
        output, bands, journal_here = job.output, info.bands, journal
    else:
        output, bands, journal_here = OutputSpec(files.output(level.index)), 3, None
        if output.path.exists():  # finished by an interrupted --resume run
            return {**what, "stats_mode": "resumed", "resumed": True}
    source = ImageSource(job.input) if len(levels) == 1 else LevelSource(job.input, level.index, files, coarser)
    coarsest = files.output(levels[0].index) if len(levels) > 2 else None  # the final level's lowest band
    transform = None
    if coarser is not None:  # single-scale keeps colours in the engine; multi-scale after the restore
        transform = restore(coarser, job.input if job.preserve_color and final else None,
                            (coarsest, levels[0].index) if final and coarsest else None)
    keep_colours = job.preserve_color and len(levels) == 1
    label = f"level {i + 1}/{len(levels)} {level.width}x{level.height}: " if len(levels) > 1 else ""
    started = time.perf_counter()
    pw, ph = valid_size(level.width, runner.model), valid_size(level.height, runner.model)
    open_reader = lambda: BandReader(source, pw, ph)  # noqa: E731 - a fresh sequential pass each call

    progress.stage(label + "statistics")
    if journal_here is not None and journal_here.stats is not None:
        stats, mode = journal_here.stats, "resumed"
    else:
        sample = job.sample if final else replace(job.sample, size=COARSE_SAMPLE_SIZE)
        stats, mode = compute_stats(job, runner, plan, source, open_reader, pw * ph, sample)
        if journal_here is not None:
            journal_here.save_stats(stats)
    stats_seconds = time.perf_counter() - started

    progress.stage(label + "stylizing")
    reader = open_reader()
    cols, rows = plan.axes(pw, ph)
    progress.start_patches(len(cols) * len(rows), level.pixels, sum(lv.pixels for lv in levels[:i]),
                           sum(lv.pixels for lv in levels))
    start = journal_here.rows_done if journal_here is not None else 0
    blocks = stylize_rows(reader, runner, stats, plan, progress.advance, keep_colours, clock, start,
                          journal_here.commit if journal_here is not None else lambda rows_done: None)
    if journal_here is not None:
        blocks = chain(journal_here.replay(), journal_here.record(blocks))
    write_rows(blocks, level.width, level.height, bands, output, clock, transform)
    if coarser is not None and journal is None:  # what this level was made from is no longer needed...
        if coarser != coarsest:  # ...but the coarsest level, until the final one is done
            coarser.unlink(missing_ok=True)
        files.photo(level.index + 1).unlink(missing_ok=True)
    return {**what, "stats_mode": mode, "stats_seconds": stats_seconds, "patches": len(cols) * len(rows),
            "seconds": time.perf_counter() - started}


# One image in bands of tile rows, each computed on its own (cluster.py runs them on Dask workers): the
# statistics once, then any band from the input, the statistics and the set-up alone, as encoded tiles
# that writer.write_tiles puts together into the file a local run writes, byte for byte.

def check_banded(job: Job, info: ImageInfo) -> None:
    """Refuse, before any work, jobs whose output cannot be made of independent bands: those need one level
    (multi-scale paints each level from the whole coarser one) and urst's own tiled TIFF."""
    if len(plan_levels(info.width, info.height, job.stroke_scale)) > 1:
        raise UrstError(f"{job.input}: one image across workers is painted at one stroke scale: give "
                        "--stroke-scale 1 (multi-scale levels need the whole coarser level)", EXIT_USAGE)
    if not own_tiff(job.output):
        raise UrstError(f"{job.output.path}: one image across workers is written as a tiled TIFF (.tif, "
                        "--compression deflate or none, no --pyramid)", EXIT_USAGE)
    if job.resume:
        raise UrstError("--resume does not apply to one image across workers (a lost band is computed again)",
                        EXIT_USAGE)


def image_stats(job: Job, prepared: Prepared, info: ImageInfo) -> tuple[NormStats, str]:
    """The normalization statistics of a one-level job's image, and the estimator that made them."""
    runner, plan = prepared.for_image(job)
    pw, ph = valid_size(info.width, runner.model), valid_size(info.height, runner.model)
    source = ImageSource(job.input)
    return compute_stats(job, runner, plan, source, lambda: BandReader(source, pw, ph), pw * ph, job.sample)


def band_tiles(job: Job, prepared: Prepared, info: ImageInfo, stats: NormStats, top: int, bottom: int) -> list[bytes]:
    """Output rows [top, bottom) of a one-level job (``top`` on a tile row; ``bottom`` too, or the image's
    height) as encoded TIFF tiles: what a local run writes there, computed from the input and ``stats``."""
    runner, plan = prepared.for_image(job)
    reader = BandReader(ImageSource(job.input), valid_size(info.width, runner.model),
                        valid_size(info.height, runner.model))
    blocks = stylize_span(reader, runner, stats, plan, top, bottom, job.preserve_color)
    return encode_tiles(blocks, info.width, info.height, info.bands, job.output, bottom - top)
