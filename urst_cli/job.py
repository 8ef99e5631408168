"""One stylization job, start to finish: the library API behind ``urst stylize``.

    input --probe--> size/alpha
    styles --model family's conditioner--> conditionings --mix(style weights)--> conditioning
    input --estimator--> NormStats            (stats.py)
    input --BandReader--> engine --rows--> writer --> output   (one streaming pass)
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, field
from itertools import chain
from pathlib import Path
from typing import Literal

import pyvips
import torch

from . import __version__
from .engine import Runner, TilePlan, batch_for_memory, stylize_rows
from .timing import Stopwatch
from .errors import EXIT_USAGE, UrstError
from .heap import reuse_freed_blocks
from .models import NUM_PRESETS, NormStats, PREDICTOR_SIZE, get_spec, load_parts, load_weights, mix, valid_size
from .precision import cached_closeness, native_bfloat16
from .reader import DEFAULT_MAX_PIXELS, BandReader, ImageInfo, probe, read_style, read_thumbnail, read_whole
from .resume import Journal, journal_folder, tensor_digest
from .stats import SampleSpec, exact_stats, sampled_stats, whole_stats
from .writer import OutputSpec, check_output, write_rows

__all__ = ["Job", "Result", "run", "pick_device", "StatsMode"]

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

    @property
    def megapixels_per_second(self) -> float:
        return self.width * self.height / 1e6 / max(self.seconds, 1e-9)


class Progress:
    """Callbacks a front end implements; the defaults do nothing."""

    def stage(self, text: str) -> None: ...
    def start_patches(self, total: int) -> None: ...
    def advance(self, patches: int) -> None: ...


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
    overlap = job.overlap if job.overlap is not None else _round_up(model.receptive_radius + FEATHER // 2, m)
    # measured on 2 CPU cores: 512 beats 1024 (2.0 vs 1.7 MP/s, cache-friendlier) despite more overlap
    patch = job.patch_size or (512 if device.type == "cpu" else 1024)
    if job.patch_size is None:
        patch = max(patch, _round_up(8 * overlap, m))  # wide-context models: keep 3/4 of each side as core
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


class _StyleContext:
    """What a model family's conditioner may ask for besides the style images."""

    def __init__(self, job: Job, device: torch.device):
        self.job, self.device = job, device

    def load_auxiliary(self, name: str):
        return load_weights(name, self.device, self.job.weights_dir)

    def content_square(self):
        return read_style(self.job.input, PREDICTOR_SIZE, square=True)


def conditioning(job: Job, model, device: torch.device):
    """The style the job asked for, as the model's per-layer conditioning (several styles mixed by weight)."""
    spec = get_spec(job.model)
    if spec.style == "image":
        if not job.styles or job.presets:
            raise UrstError(f"model '{spec.name}' needs --style PAINTING (and no --preset)", EXIT_USAGE)
        styles = [read_style(path, spec.style_side, spec.style_square) for path in job.styles]
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
    weights = job.style_weights or [1.0] * len(styles)
    if len(weights) != len(styles):
        raise UrstError(f"--style-weights: {len(weights)} weights for {len(styles)} styles", EXIT_USAGE)
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise UrstError("--style-weights must be non-negative and not all zero", EXIT_USAGE)
    with torch.inference_mode():
        return mix(spec.condition(model, styles, job.alpha, _StyleContext(job, device)), weights)


def use_bfloat16(job: Job, model, device: torch.device, cond) -> bool:
    """Whether the network runs under bf16 autocast: as asked, else on CUDA, and on CPUs that compute bf16
    natively where the job's network and style pass the closeness check (see precision.py)."""
    if job.precision not in ("auto", "float32", "bfloat16"):
        raise UrstError(f"--precision {job.precision}: use auto, float32 or bfloat16", EXIT_USAGE)
    if job.precision != "auto":
        return job.precision == "bfloat16"
    if device.type == "cuda":
        return True
    return native_bfloat16() and cached_closeness(model, cond).acceptable


def make_runner(job: Job, device: torch.device) -> Runner:
    """The job's network, filled with its weights and conditioned with its style, in the job's precision."""
    model = load_model(job, device)
    cond = conditioning(job, model, device)
    return Runner(model, cond, device, use_bfloat16(job, model, device, cond))


def load_model(job: Job, device: torch.device):
    spec = get_spec(job.model)
    if spec.named_weights and not job.weights:
        raise UrstError(f"model '{spec.name}' needs --weights NAME (see `urst weights list`)", EXIT_USAGE)
    if job.weights and not spec.named_weights:
        raise UrstError(f"--weights applies to per-style models only, not '{spec.name}'", EXIT_USAGE)
    return load_parts(spec, device, job.weights, job.weights_dir, model_options(job))


def run(job: Job, progress: Progress = Progress(), clock: Stopwatch | None = None) -> Result:
    started = time.perf_counter()
    reuse_freed_blocks()  # process-wide: activations reuse warm heap pages instead of fresh mmaps
    pyvips.cache_set_max(0)  # every image is read once, top to bottom: libvips' operation cache only holds memory
    info: ImageInfo = probe(job.input, job.max_pixels)
    check_output(job.output, job.input, info.width, info.height, job.overwrite)
    device = pick_device(job.device)
    runner = make_runner(job, device)
    plan = make_plan(job, runner)
    journal = None
    if job.resume:
        journal = Journal.open(job.output.path, job_state(job, info, runner, plan),
                               info.width, info.height, info.bands)
    try:
        return _stylize(job, info, runner, plan, journal, progress, clock, started)
    finally:
        if journal is not None:
            journal.close()


def job_state(job: Job, info: ImageInfo, runner: Runner, plan: TilePlan) -> dict:
    """Everything the output rows depend on, as a resumed run must find it unchanged."""
    model, cond = runner.model, runner.cond
    stat = job.input.stat()
    return {"urst": __version__, "input": str(job.input.resolve()), "input_bytes": stat.st_size,
            "input_mtime_ns": stat.st_mtime_ns, "size": [info.width, info.height], "model": job.model,
            "weights": tensor_digest(model.state_dict().values()),
            "style": tensor_digest(t for layer in cond for t in layer), "preserve_color": job.preserve_color,
            "stats": job.stats, "thumb_size": job.thumb_size, "sample": asdict(job.sample), "tiling": asdict(plan),
            "device": runner.device.type, "bfloat16": runner.bfloat16}


def whole_pass_limit(runner: Runner, plan: TilePlan) -> int:
    """The most pixels a whole-image statistics pass may have and stay inside the tiled pass's memory budget."""
    if runner.device.type == "cuda":  # it holds one forward's activations: what a window costs per pixel
        return int(GPU_BUDGET / (runner.patch_bytes(plan.patch) / plan.patch**2))
    # ~230 bytes per pixel for magenta on CPU: beyond 1 MP it would break the 1 GiB that streaming keeps
    return 1_000_000


def compute_stats(job: Job, runner: Runner, plan: TilePlan, open_reader, pixels: int) -> tuple[NormStats, str]:
    """The job's normalization statistics, and the estimator that made them."""
    mode = job.stats
    whole_limit = job.whole_limit or whole_pass_limit(runner, plan)
    if mode == "auto":
        mode = "whole" if pixels <= whole_limit else "sampled"
    if mode == "whole":
        return whole_stats(runner, read_whole(job.input)), mode
    if mode == "exact":
        return exact_stats(runner, open_reader, plan), mode
    if mode == "sampled":
        return sampled_stats(runner, open_reader, job.sample), mode
    if mode == "thumbnail":
        return whole_stats(runner, read_thumbnail(job.input, job.thumb_size)), mode
    raise UrstError(f"--stats {mode}: use auto, sampled, thumbnail or exact", EXIT_USAGE)


def _stylize(job: Job, info: ImageInfo, runner: Runner, plan: TilePlan, journal: Journal | None,
             progress: Progress, clock: Stopwatch | None, started: float) -> Result:
    pw, ph = valid_size(info.width, runner.model), valid_size(info.height, runner.model)
    open_reader = lambda: BandReader(job.input, pw, ph)  # noqa: E731 - a fresh sequential pass each call

    progress.stage("statistics")
    t_stats = time.perf_counter()
    if journal is not None and journal.stats is not None:
        stats, mode = journal.stats, "resumed"
    else:
        stats, mode = compute_stats(job, runner, plan, open_reader, pw * ph)
        if journal is not None:
            journal.save_stats(stats)
    stats_seconds = time.perf_counter() - t_stats

    progress.stage("stylizing")
    clock = clock or Stopwatch()
    t_stylize = time.perf_counter()
    reader = open_reader()
    cols, rows = plan.axes(pw, ph)
    progress.start_patches(len(cols) * len(rows))
    start = journal.rows_done if journal is not None else 0
    blocks = stylize_rows(reader, runner, stats, plan, progress.advance, job.preserve_color, clock, start,
                          journal.commit if journal is not None else lambda rows_done: None)
    if journal is not None:
        blocks = chain(journal.replay(), journal.record(blocks))
    write_rows(blocks, info.width, info.height, info.bands, job.output, clock)
    if journal is not None:
        journal.remove()
    else:  # an earlier interrupted --resume run of this output is of no use any more
        shutil.rmtree(journal_folder(job.output.path), ignore_errors=True)
    stages = {"setup": t_stats - started, "stats": stats_seconds, **clock.seconds}
    # what is left of the streaming pass: blending, conversion to 8-bit, the engine's own bookkeeping
    stages["blend"] = time.perf_counter() - t_stylize - sum(clock.seconds.values())
    return Result(job.output.path, info.width, info.height, time.perf_counter() - started, mode, stats_seconds,
                  len(cols) * len(rows), stages, plan.patch)
