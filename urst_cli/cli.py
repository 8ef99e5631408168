"""The ``urst`` command line: a thin Typer layer over ``urst_cli.job``.

Human messages and progress go to stderr; errors a user can cause end in one
"Error: ..." line and a documented exit code (see errors.py), never a traceback.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from . import __version__
from .errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_USAGE, Terminated, UrstError

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Paint photographs of any size in the style of a painting (URST, streamed through pyvips).")
err = Console(stderr=True, highlight=False)


class StatsChoice(str, Enum):
    auto = "auto"
    sampled = "sampled"
    thumbnail = "thumbnail"
    exact = "exact"


class DeviceChoice(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class InputFormat(str, Enum):
    tif = "tif"
    jpg = "jpg"
    png = "png"


class CompressionChoice(str, Enum):
    deflate = "deflate"
    jpeg = "jpeg"
    zstd = "zstd"
    lzw = "lzw"
    none = "none"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"urst {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Print the version and exit.")) -> None:
    """urst: ultra-resolution style transfer for images of any size."""


def default_output(input_path: Path, styles: list[Path], presets: list[int], weights: Optional[str] = None) -> Path:
    """<input stem>_<style stem(s)>.tif beside the input; -2, -3, ... appended rather than overwrite anything."""
    tag = "+".join([p.stem for p in styles] + [f"preset{p}" for p in presets]) or weights or "stylized"
    candidate = input_path.with_name(f"{input_path.stem}_{tag}.tif")
    n = 2
    while candidate.exists():
        candidate = input_path.with_name(f"{input_path.stem}_{tag}-{n}.tif")
        n += 1
    return candidate


class _RichProgress:
    """Shows a progress bar on a terminal; stays silent otherwise."""

    def __init__(self, enabled: bool):
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                            console=err, transient=True, disable=not enabled)
        self.task = None
        self.pixels_per_patch = 0.0

    def stage(self, text: str) -> None:
        if self.task is None:
            self.task = self.bar.add_task(text, total=None, rate="")
        self.bar.update(self.task, description=text)

    def start_patches(self, total: int) -> None:
        self.bar.reset(self.task, total=total, rate="")

    def advance(self, patches: int) -> None:
        self.bar.advance(self.task, patches)
        task = self.bar.tasks[0]
        if task.elapsed and self.pixels_per_patch:
            self.bar.update(self.task, rate=f"{task.completed * self.pixels_per_patch / task.elapsed / 1e6:.2f} MP/s")


def _peak_memory_text() -> str:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    text = f"peak RSS {peak:.0f} MiB"
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        text += f", peak GPU {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB"
    return text


@app.command()
def stylize(
    input: Path = typer.Argument(..., help="Photograph to stylize (JPEG, PNG, TIFF/BigTIFF, WebP, HEIF, ...)."),
    style: list[Path] = typer.Option([], "--style", "-s", help="Painting whose style to apply (magenta, adain, wct); "
                                     "repeat to interpolate several."),
    output: Optional[Path] = typer.Option(None, "--output", "-o",
                                          help="Output file; the extension picks the format (.tif .png .jpg .webp). "
                                               "Default: <input>_<style>.tif beside the input."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Network to use (see `urst models`); default "
                                        "magenta, or multistyle26 when only --preset is given."),
    preset: list[int] = typer.Option([], "--preset", help="Built-in style 0-25 (model multistyle26); repeat to mix."),
    style_weights: Optional[str] = typer.Option(None, "--style-weights", help="Comma-separated weights of the "
                                                "styles or presets, e.g. 0.7,0.3 (default: equal)."),
    alpha: float = typer.Option(1.0, "--alpha", min=0.0, max=1.0, help="Strength, 0-1: magenta moves the style "
                                "vector towards the photo's own; adain/wct blend stylized and content features."),
    preserve_color: bool = typer.Option(False, "--preserve-color", help="Keep the photo's colours: only the "
                                        "stylized luminance is used (any model)."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Per-style model weights: an imported name "
                                          "(urst weights list) (model johnson)."),
    transform: Optional[str] = typer.Option(None, "--transform", help="WCT transform: svd (default) or cwct "
                                            "(Cholesky, CAP-VSTNet)."),
    weights_dir: Optional[Path] = typer.Option(None, "--weights-dir", help="Imported weights directory "
                                               "(default $URST_WEIGHTS, else ~/.cache/urst/weights)."),
    stats: StatsChoice = typer.Option(StatsChoice.auto, "--stats",
                                      help="Normalization statistics: exact (streaming passes, equals whole-image "
                                           "output), sampled (full-resolution crops), thumbnail (URST's TIN), or "
                                           "auto (exact from one pass when the image fits, else sampled)."),
    thumb_size: int = typer.Option(1024, "--thumb-size", min=64, help="Long side of the thumbnail for --stats thumbnail."),
    patch_size: Optional[int] = typer.Option(None, "--patch-size", min=64, help="Patch side in pixels, context "
                                             "included (default 512 on CPU, 1024 on CUDA)."),
    overlap: Optional[int] = typer.Option(None, "--overlap", min=0, help="Context pixels each patch sees beyond what "
                                          "it keeps, per side (default: receptive field + 8, e.g. 64)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Patches per forward pass "
                                             "(default 1 on CPU; on CUDA as many as fit in 1.5 GiB of GPU memory)."),
    device: DeviceChoice = typer.Option(DeviceChoice.auto, "--device", help="Where the network runs."),
    precision: str = typer.Option("auto", "--precision", help="Convolution precision: float32, bfloat16, or auto "
                                  "(bf16 on CUDA, and on CPUs with native bf16 for the VGG models; "
                                  "statistics are float32 always)."),
    compression: CompressionChoice = typer.Option(CompressionChoice.deflate, "--compression",
                                                  help="TIFF compression."),
    quality: int = typer.Option(90, "--quality", min=1, max=100, help="JPEG/WebP quality (and JPEG-in-TIFF)."),
    tile_size: int = typer.Option(256, "--tile-size", min=16, help="TIFF tile side (a multiple of 16)."),
    pyramid: bool = typer.Option(False, "--pyramid", help="TIFF: add reduced-resolution levels (QuPath, OpenSlide)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the output file if it exists."),
    resume: bool = typer.Option(False, "--resume", help="Keep finished rows on disk beside the output (about 3 "
                                "bytes per pixel) and, if an earlier --resume run of this output was stopped, "
                                "continue it: the result is the same as an uninterrupted run."),
    max_pixels: int = typer.Option(4 * 1024**3, "--max-pixels", min=1, help="Refuse inputs with more pixels."),
    seed: int = typer.Option(0, "--seed", help="Seed of the crop positions for --stats sampled."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors."),
) -> None:
    """Stylize INPUT with a painting's style, streaming patches so any size fits in memory.

    Examples:

      urst stylize photo.jpg --style monet.jpg

      urst stylize scan.tif -s starry_night.jpg -o scan_starry.tif --pyramid

      urst stylize photo.jpg --preset 19 -o out.png

      urst stylize photo.jpg --model adain -s monet.jpg -s hokusai.jpg --style-weights 0.7,0.3 --alpha 0.8
    """
    from .job import Job
    from .stats import SampleSpec
    from .writer import OutputSpec

    if tile_size % 16:
        _fail(UrstError(f"--tile-size {tile_size}: must be a multiple of 16", EXIT_USAGE))
    try:
        mix_weights = [float(w) for w in style_weights.split(",")] if style_weights else None
    except ValueError:
        _fail(UrstError(f"--style-weights {style_weights}: give numbers separated by commas", EXIT_USAGE))
    if model is None:
        model = "multistyle26" if preset and not style else "magenta"
    out_path = output or default_output(input, style, preset, weights)
    job = Job(input=input, output=OutputSpec(out_path, compression.value, quality, tile_size, pyramid),
              model=model, styles=style, presets=preset, style_weights=mix_weights, alpha=alpha,
              preserve_color=preserve_color, weights=weights, transform=transform, weights_dir=weights_dir,
              stats=stats.value, thumb_size=thumb_size,
              sample=SampleSpec(seed=seed), patch_size=patch_size, overlap=overlap, batch_size=batch_size,
              device=device.value, precision=precision, max_pixels=max_pixels, overwrite=overwrite,
              resume=resume)
    result = _run(job, show_progress=not quiet)
    if not quiet:
        err.print(_summary(result))


@app.command("models")
def list_models(weights_dir: Optional[Path] = typer.Option(None, "--weights-dir", help="Imported weights directory.")
                ) -> None:
    """List the models, what style each takes, the weights each needs and whether they are installed."""
    from .models import REGISTRY, find_weights, part_stems
    from .weightstore import list_weights

    installed = {w.stem for w in list_weights(weights_dir)}
    for spec in REGISTRY.values():
        if spec.named_weights:
            names = sorted(s for s in installed if s.startswith(next(iter(spec.parts)).split("{name}")[0]))
            state = f"installed: {', '.join(names)}" if names else "MISSING"
        else:
            missing = [stem for stem in part_stems(spec) if find_weights(stem, weights_dir) is None]
            state = "installed" if not missing else f"MISSING {', '.join(s + '.safetensors' for s in missing)}"
        typer.echo(f"{spec.name:<13} {spec.summary}\n{'':<13} weights: {state} (from {spec.source})")


weights_app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                          help="Import and list model weights.")
app.add_typer(weights_app, name="weights")


@weights_app.command("import")
def weights_import(
    file: Path = typer.Argument(..., help="A .pth state dict (or .safetensors), e.g. vgg_normalised.pth."),
    model: str = typer.Option(..., "--model", "-m", help="The model it belongs to (see `urst models`)."),
    name: Optional[str] = typer.Option(None, "--name", help="Per-style models: the name to use with --weights "
                                       "(default: the file's stem)."),
    weights_dir: Optional[Path] = typer.Option(None, "--weights-dir", help="Where to store it "
                                               "(default $URST_WEIGHTS, else ~/.cache/urst/weights)."),
) -> None:
    """Check a weights file against the model's layout and store it as safetensors (never runs pickled code)."""
    from .weightstore import import_weights

    try:
        path = import_weights(file, model, name, weights_dir)
    except UrstError as exc:
        _fail(exc)
    typer.echo(f"imported {file.name} as {path}")


@weights_app.command("list")
def weights_list(weights_dir: Optional[Path] = typer.Option(None, "--weights-dir", help="Imported weights "
                                                             "directory.")) -> None:
    """Installed weights: name, size, sha256, the models that use them, and where they are."""
    from .weightstore import list_weights

    for w in list_weights(weights_dir):
        typer.echo(f"{w.stem:<24} {w.size / 1e6:8.1f} MB  {w.sha256}  {','.join(w.models) or '-':<14} "
                   f"{'shipped' if w.shipped else w.path}")


@app.command()
def bench(
    sizes: str = typer.Option("1,4,16,64,256", "--sizes", help="Input sizes in megapixels, comma-separated."),
    input: Optional[Path] = typer.Option(None, "--input", help="Photo to resize to each size (default: the shipped one)."),
    input_format: InputFormat = typer.Option(InputFormat.tif, "--input-format", help="How each input is stored: "
                                             "tif (tiled JPEG BigTIFF, like scans and the demo), jpg or png."),
    style: list[Path] = typer.Option([], "--style", "-s", help="Painting (default: the shipped Starry Night)."),
    model: str = typer.Option("magenta", "--model", "-m", help="Network to measure."),
    preset: list[int] = typer.Option([], "--preset", help="Built-in style (multistyle26)."),
    stats: StatsChoice = typer.Option(StatsChoice.auto, "--stats", help="As in stylize."),
    patch_size: Optional[int] = typer.Option(None, "--patch-size", min=64, help="As in stylize."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="As in stylize."),
    device: DeviceChoice = typer.Option(DeviceChoice.auto, "--device", help="As in stylize."),
    weights_dir: Optional[Path] = typer.Option(None, "--weights-dir", help="Imported weights directory."),
    baseline: bool = typer.Option(False, "--baseline-whole", help="Also run each image whole, without tiling, "
                                  "until it runs out of memory (as in the URST paper's memory figure)."),
    copy_baseline: bool = typer.Option(False, "--baseline-copy", help="Also time libvips copying each input to "
                                       "a tiled deflate BigTIFF (decode + encode only): the I/O floor."),
    host_baseline: bool = typer.Option(False, "--baseline-host", help="Also run each input with the network "
                                       "replaced by the null model (same windows, batches, transfers, blending and "
                                       "writing): the host pipeline's ceiling."),
    memory_limit: float = typer.Option(16.0, "--memory-limit", min=0.5, help="GiB a whole-image baseline may "
                                       "allocate before it counts as out of memory."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON (for scripts)."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write a chart of memory and time against "
                                        "megapixels to this PNG (needs matplotlib: pip install urst[plot])."),
) -> None:
    """Measure time, throughput, peak memory and where the time goes, for a sweep of image sizes.

    Each size runs in a fresh process, so its peak memory is its own.
    """
    from .bench import DATA, run_sweep
    from .models import get_spec

    try:
        size_list = [float(v) for v in sizes.split(",") if v.strip()]
        if not size_list or min(size_list) <= 0:
            raise ValueError
        spec = get_spec(model)
    except ValueError:
        _fail(UrstError(f"--sizes {sizes}: give positive megapixels separated by commas", EXIT_USAGE))
    except UrstError as exc:
        _fail(exc)
    if plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            _fail(UrstError("--plot needs matplotlib: pip install 'urst[plot]'", EXIT_USAGE))
    if input is not None and not input.is_file():
        _fail(UrstError(f"{input}: no such file", 3))
    styles = [str(p) for p in style] or ([str(DATA / "starry_night.jpg")] if spec.style == "image" else [])
    options = {"source_path": str(input or DATA / "sunset_hills.jpg"), "input_format": input_format.value,
               "styles": styles, "presets": preset or ([0] if spec.style == "preset" else []), "model": model,
               "stats": stats.value, "patch_size": patch_size, "batch_size": batch_size, "device": device.value,
               "weights_dir": str(weights_dir) if weights_dir else None, "memory_limit": int(memory_limit * 2**30)}
    table = _BenchTable(enabled=not as_json)
    rows = run_sweep(size_list, options, baseline, table.add, copy_baseline, host_baseline)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    if plot is not None:
        _plot(rows, plot)
        err.print(f"chart: {plot}")


class _BenchTable:
    """Prints one row per size as soon as it is measured."""

    STAGES = ("read", "stats", "model", "blend", "write")

    def __init__(self, enabled: bool):
        from rich.console import Console

        self.out = Console(highlight=False) if enabled else None
        self.started = False

    def add(self, row: dict) -> None:
        if self.out is None:
            return
        if not self.started:
            self.out.print(f"{'size':>15} {'MP':>7} {'time s':>8} {'MP/s':>6} {'RSS MiB':>8} {'GPU MiB':>8} "
                           f"{'÷model':>7} {'÷copy':>6}  " + " ".join(f"{s:>6}" for s in self.STAGES) +
                           "  whole image", soft_wrap=True)
            self.started = True
        size = f"{row['width']}x{row['height']}"
        whole = row.get("whole")
        whole_text = ("" if whole is None else "out of memory" if whole.get("oom") else
                      f"failed: {whole['error']}" if "error" in whole else
                      f"{whole['seconds']:.1f} s, {whole['peak_rss_mib']:.0f} MiB")
        self._line(size, row["megapixels"], row["tiled"], row.get("copy", {}), whole_text)
        if "host" in row:  # the same job with the null model: the pipeline without the network
            self._line("host only", row["megapixels"], row["host"], row.get("copy", {}), "")

    def _line(self, label: str, megapixels: float, t: dict, copy: dict, whole_text: str) -> None:
        if "error" in t:
            self.out.print(f"{label:>15} {megapixels:7.1f}  failed: {t['error']}", markup=False, soft_wrap=True)
            return
        per_copy = f"{t['seconds'] / copy['seconds']:6.1f}" if "seconds" in copy else f"{'-':>6}"
        per_model = f"{t['seconds'] / t['model_alone_seconds']:7.2f}" if "model_alone_seconds" in t else f"{'-':>7}"
        stages = " ".join(f"{t['stages'].get(s, 0):6.1f}" for s in self.STAGES)
        gpu = f"{t['peak_gpu_mib']:8.0f}" if "peak_gpu_mib" in t else f"{'-':>8}"
        self.out.print(f"{label:>15} {megapixels:7.1f} {t['seconds']:8.1f} {megapixels / t['seconds']:6.2f} "
                       f"{t['peak_rss_mib']:8.0f} {gpu} {per_model} {per_copy}  {stages}  {whole_text}",
                       markup=False, soft_wrap=True)


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if "error" not in r["tiled"]]
    mp = [r["megapixels"] for r in ok]
    fig, (mem, secs) = plt.subplots(1, 2, figsize=(10, 4))
    mem.plot(mp, [r["tiled"]["peak_rss_mib"] for r in ok], "o-", label="urst (tiled)")
    secs.plot(mp, [r["tiled"]["seconds"] for r in ok], "o-", label="urst (tiled)")
    whole = [r for r in rows if r.get("whole") and not r["whole"].get("oom") and "error" not in r["whole"]]
    if whole:
        mem.plot([r["megapixels"] for r in whole], [r["whole"]["peak_rss_mib"] for r in whole], "s--",
                 label="whole image")
        secs.plot([r["megapixels"] for r in whole], [r["whole"]["seconds"] for r in whole], "s--",
                  label="whole image")
    for axis, label in ((mem, "peak RSS (MiB)"), (secs, "time (s)")):
        axis.set_xscale("log")
        axis.set_xlabel("megapixels")
        axis.set_ylabel(label)
        axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


@app.command()
def demo(
    size: int = typer.Option(8000, "--size", min=256, help="Long side, in pixels, to enlarge the shipped photo to."),
    out_dir: Path = typer.Option(Path("urst-demo"), "--out-dir", help="Where the enlarged photo and the result go."),
) -> None:
    """Stylize the shipped photo, enlarged to --size pixels, with the shipped painting (Van Gogh)."""
    import pyvips

    from .job import Job
    from .writer import OutputSpec

    data = Path(__file__).resolve().parent / "data"
    out_dir.mkdir(parents=True, exist_ok=True)
    photo = pyvips.Image.new_from_file(str(data / "sunset_hills.jpg"), access="sequential")
    scale = size / max(photo.width, photo.height)
    big = out_dir / f"sunset_hills_{round(photo.width * scale)}x{round(photo.height * scale)}.tif"
    if not big.exists():
        err.print(f"making the demo input {big} (the shipped photo enlarged x{scale:.2f})")
        partial = big.with_name(f".{big.name}.partial")
        photo.resize(scale).tiffsave(str(partial), tile=True, bigtiff=True, compression="jpeg", Q=92)
        partial.replace(big)
    result_path = out_dir / "sunset_hills_starry_night.tif"
    job = Job(input=big, output=OutputSpec(result_path, pyramid=True), styles=[data / "starry_night.jpg"],
              overwrite=True)
    result = _run(job, show_progress=True)
    err.print(_summary(result))
    typer.echo(f"result: {result.path.resolve()}")


def _run(job, show_progress: bool):
    """Run a job with a progress bar on a terminal; user errors and Ctrl-C end in one line and their exit code."""
    from .job import run

    progress = _RichProgress(enabled=show_progress and err.is_terminal)
    kept = "; finished rows are kept: run it again with --resume to continue" if job.resume else \
        "; nothing was written"
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        with progress.bar:
            return run(job, progress)
    except UrstError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        err.print(f"Interrupted{kept}.")
        raise typer.Exit(EXIT_INTERRUPTED)
    except Terminated:
        err.print(f"Terminated{kept}.")
        raise typer.Exit(EXIT_TERMINATED)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def _summary(result) -> str:
    return (f"wrote {result.path}  {result.width}x{result.height}  in {result.seconds:.1f} s "
            f"({result.megapixels_per_second:.2f} MP/s; stats {result.stats_mode} {result.stats_seconds:.1f} s; "
            f"{result.patches} patches; {_peak_memory_text()})")


def _fail(exc: UrstError) -> None:
    err.print(f"Error: {exc}", markup=False, soft_wrap=True)
    raise typer.Exit(exc.exit_code)


def entry() -> None:
    """Console-script entry point: unexpected failures become one line (URST_DEBUG=1 shows the traceback)."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    except Terminated:
        sys.exit(EXIT_TERMINATED)
    except Exception as exc:  # a bug, not a user error: still no wall of text unless asked
        if os.environ.get("URST_DEBUG"):
            raise
        err.print(f"Error: unexpected {type(exc).__name__}: {exc} (set URST_DEBUG=1 for details)", markup=False)
        sys.exit(EXIT_FAILURE)
