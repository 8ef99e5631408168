"""``urst stylize``: options parsed into a ``Job``, run by ``urst_cli.job``."""

from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from ..errors import EXIT_USAGE, UrstError
from .common import DeviceChoice, EventView, StatsChoice, fail, run_batch_command

__all__ = ["stylize", "PANELS"]

# the help panels of `urst stylize --help`, in the order a new user looks for them
STYLE, STROKES, TILING, OUTPUT, BATCH, CLUSTER = ("Style", "Strokes and statistics", "Tiling and device", "Output",
                                                 "Batch", "Cluster")
PANELS = (STYLE, STROKES, TILING, OUTPUT, BATCH, CLUSTER)


class CompressionChoice(str, Enum):
    deflate = "deflate"
    jpeg = "jpeg"
    zstd = "zstd"
    lzw = "lzw"
    none = "none"


class FormatChoice(str, Enum):
    tif = "tif"
    png = "png"
    jpg = "jpg"
    webp = "webp"
    dzi = "dzi"
    szi = "szi"
    iiif = "iiif"


def stylize(
    inputs: Optional[list[str]] = typer.Argument(None, help="Photographs to stylize (JPEG, PNG, TIFF/BigTIFF, WebP, "
                                                 "HEIF, ...) and folders of them; - reads one from stdin.",
                                                 show_default=False),
    style: list[Path] = typer.Option([], "--style", "-s", help="Painting whose style to apply (magenta, adain, wct); "
                                     "repeat to interpolate several.", rich_help_panel=STYLE),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Network to use (see `urst models`); default "
                                        "magenta, or multistyle26 when only --preset is given.",
                                        rich_help_panel=STYLE),
    preset: list[int] = typer.Option([], "--preset", help="Built-in style 0-25 (model multistyle26); repeat to mix.",
                                     rich_help_panel=STYLE),
    style_weights: Optional[str] = typer.Option(None, "--style-weights", help="Comma-separated weights of the "
                                                "styles or presets, e.g. 0.7,0.3 (default: equal).",
                                                rich_help_panel=STYLE),
    alpha: float = typer.Option(1.0, "--alpha", min=0.0, max=1.0, help="Strength, 0-1: magenta moves the style "
                                "vector towards the photo's own; adain/wct blend stylized and content features.",
                                rich_help_panel=STYLE),
    preserve_color: bool = typer.Option(False, "--preserve-color", help="Keep the photo's colours: only the "
                                        "stylized luminance is used (any model).", rich_help_panel=STYLE),
    weights: Optional[str] = typer.Option(None, "--weights", help="Which weights: an imported name for johnson "
                                          "(urst weights list); photorealistic|artistic for capvst, r41|r31 for "
                                          "linear.", rich_help_panel=STYLE),
    transform: Optional[str] = typer.Option(None, "--transform", help="WCT transform: svd (default) or cwct "
                                            "(Cholesky, CAP-VSTNet).", rich_help_panel=STYLE),
    weights_dir: Optional[Path] = typer.Option(None, "--weights-dir", help="Imported weights directory "
                                               "(default $URST_WEIGHTS, else ~/.cache/urst/weights).",
                                               rich_help_panel=STYLE),
    stats: StatsChoice = typer.Option(StatsChoice.auto, "--stats",
                                      help="Normalization statistics: exact (streaming passes, equals whole-image "
                                           "output), sampled (full-resolution crops), thumbnail (URST's TIN), or "
                                           "auto (exact from one pass when the image fits, else sampled).",
                                      rich_help_panel=STROKES),
    thumb_size: int = typer.Option(1024, "--thumb-size", min=64, help="Long side of the thumbnail for --stats "
                                   "thumbnail.", rich_help_panel=STROKES),
    seed: int = typer.Option(0, "--seed", help="Seed of the crop positions for --stats sampled.",
                             rich_help_panel=STROKES),
    stroke_scale: str = typer.Option("auto", "--stroke-scale", help="Paint strokes up to S times larger than the "
                                     "network's own, an octave pyramid painted coarse to fine, so the result looks "
                                     "painted seen whole and at 100%: auto (the coarsest level about 1000-1500 px), "
                                     "or S >= 1 (a power of two; 1 = single-scale).", rich_help_panel=STROKES),
    style_scale: float = typer.Option(1.0, "--style-scale", help="Read the painting F times larger, which makes the "
                                      "copied texture larger (adain, wct: F x 512 px long side; magenta: its predictor "
                                      "sees the centre 1/F of the painting enlarged F times, F >= 1).",
                                      rich_help_panel=STROKES),
    patch_size: Optional[int] = typer.Option(None, "--patch-size", min=64, help="Patch side in pixels, context "
                                             "included (default 512 on CPU, 1024 on CUDA).", rich_help_panel=TILING),
    overlap: Optional[int] = typer.Option(None, "--overlap", min=0, help="Context pixels each patch sees beyond what "
                                          "it keeps, per side (default: receptive field + 8, e.g. 64).",
                                          rich_help_panel=TILING),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Patches per forward pass "
                                             "(default 1 on CPU; on CUDA as many as fit in 1.5 GiB of GPU memory).",
                                             rich_help_panel=TILING),
    device: DeviceChoice = typer.Option(DeviceChoice.auto, "--device", help="Where the network runs.",
                                        rich_help_panel=TILING),
    precision: str = typer.Option("auto", "--precision", help="Convolution precision: float32, bfloat16, or auto "
                                  "(bf16 on CUDA, and on CPUs with native bf16 for the VGG models; "
                                  "statistics are float32 always).", rich_help_panel=TILING),
    output: Optional[str] = typer.Option(None, "--output", "-o",
                                         help="Output: a file (one input; its extension picks the format: .tif .png "
                                              ".jpg .webp .dzi .szi .iiif), a folder ending in / (mirrors the inputs' "
                                              "tree), a template such as '{dir}/{stem}_{style}.{ext}' (fields: dir "
                                              "rel stem name suffix style model ext; see the README), or - for "
                                              "stdout (with --format). Default: <input>_<style>.tif beside each input.",
                                         rich_help_panel=OUTPUT),
    format: Optional[FormatChoice] = typer.Option(None, "--format", help="Output format where -o does not name a "
                                                  "file: tif (tiled BigTIFF, the default), png, jpg, webp, dzi, szi, "
                                                  "iiif (a folder of IIIF tiles).",
                                                  rich_help_panel=OUTPUT),
    compression: CompressionChoice = typer.Option(CompressionChoice.deflate, "--compression",
                                                  help="TIFF compression.", rich_help_panel=OUTPUT),
    quality: int = typer.Option(90, "--quality", min=1, max=100, help="JPEG/WebP quality (and JPEG-in-TIFF).",
                                rich_help_panel=OUTPUT),
    tile_size: int = typer.Option(256, "--tile-size", min=16, help="TIFF tile side (a multiple of 16).",
                                  rich_help_panel=OUTPUT),
    pyramid: bool = typer.Option(False, "--pyramid", help="TIFF: add reduced-resolution levels (QuPath, OpenSlide).",
                                 rich_help_panel=OUTPUT),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace outputs that exist (never asks).",
                                   rich_help_panel=OUTPUT),
    skip_existing: bool = typer.Option(False, "--skip-existing", help="Leave inputs whose output exists alone: an "
                                       "output appears only when complete, so this resumes a stopped batch.",
                                       rich_help_panel=OUTPUT),
    resume: bool = typer.Option(False, "--resume", help="Keep finished rows on disk beside the output (about 3 "
                                "bytes per pixel) and, if an earlier --resume run of this output was stopped, "
                                "continue it: the result is the same as an uninterrupted run.",
                                rich_help_panel=OUTPUT),
    preview: bool = typer.Option(False, "--preview", help="Only write <output>_preview: the coarsest level of "
                                 "--stroke-scale (the input halved to at most 1536 px long with auto), painted in "
                                 "seconds: how the whole result will look seen whole.", rich_help_panel=OUTPUT),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Look for images in the folders' sub-folders "
                                   "too.", rich_help_panel=BATCH),
    files_from: Optional[str] = typer.Option(None, "--files-from", help="Also stylize the files (or folders) listed "
                                             "in this file, one a line; - reads the list from stdin.",
                                             rich_help_panel=BATCH),
    fail_fast: bool = typer.Option(False, "--fail-fast", help="Stop at the first input that fails (exit with its "
                                   "code); by default it is reported and the others go on (exit 5).",
                                   rich_help_panel=BATCH),
    failed_list: Optional[Path] = typer.Option(None, "--failed-list", help="Write the inputs that failed to this "
                                               "file, one a line, ready for --files-from.", rich_help_panel=BATCH),
    as_json: bool = typer.Option(False, "--json", help="Print events as JSON Lines on stdout (start, file_start, "
                                 "progress, file_done, file_skipped, file_error, summary; see the README).",
                                 rich_help_panel=BATCH),
    max_pixels: int = typer.Option(4 * 1024**3, "--max-pixels", min=1, help="Refuse inputs with more pixels.",
                                   rich_help_panel=BATCH),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors.", rich_help_panel=BATCH),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Run on the Dask cluster of this scheduler "
                                            "(e.g. tcp://host:8786; needs urst\\[cluster] and a file system the "
                                            "workers share): several inputs one per worker, one input in bands of "
                                            "rows across all of them.", rich_help_panel=CLUSTER),
    local_workers: Optional[int] = typer.Option(None, "--local-workers", min=1, help="As --scheduler, on N worker "
                                                "processes started on this machine.", rich_help_panel=CLUSTER),
    band_rows: Optional[int] = typer.Option(None, "--band-rows", min=1, help="One input on a cluster: rows per band, "
                                            "a multiple of --tile-size (default: about 32 MP per band).",
                                            rich_help_panel=CLUSTER),
) -> None:
    """Stylize photographs with a painting's style, streaming patches so any size fits in memory.

    Many inputs run in one process: the model and the style are set up once. A file that fails is
    reported and the others go on; exit status 5 then says some failed.

    Examples:

      urst stylize photo.jpg --style monet.jpg

      urst stylize scan.tif -s starry_night.jpg -o scan_starry.tif --pyramid

      urst stylize scans/ -r -s monet.jpg -o out/ --skip-existing --failed-list failed.txt

      urst stylize photo.jpg --preset 19 -o out.png

      urst stylize photo.jpg --model adain -s monet.jpg -s hokusai.jpg --style-weights 0.7,0.3 --alpha 0.8
    """
    import tempfile

    from ..batch import BatchOptions, Naming, expand_inputs, name_outputs, style_tag
    from ..job import Job
    from ..stats import SampleSpec
    from ..writer import OutputSpec

    if tile_size % 16:
        fail(UrstError(f"--tile-size {tile_size}: must be a multiple of 16", EXIT_USAGE))
    try:
        mix_weights = [float(w) for w in style_weights.split(",")] if style_weights else None
    except ValueError:
        fail(UrstError(f"--style-weights {style_weights}: give numbers separated by commas", EXIT_USAGE))
    if overwrite and skip_existing:
        fail(UrstError("--overwrite and --skip-existing contradict each other: give one", EXIT_USAGE))
    if output == "-" and as_json:
        fail(UrstError("-o - and --json both want stdout: give one", EXIT_USAGE))
    if output == "-" and sys.stdout.isatty():
        fail(UrstError("-o - writes the image to stdout, which is a terminal: redirect it to a file or a pipe",
                       EXIT_USAGE))
    if not inputs and not files_from:
        fail(UrstError("give an input: files, folders, - (stdin) or --files-from", EXIT_USAGE))
    if model is None:
        model = "multistyle26" if preset and not style else "magenta"
    template = Job(input=Path(), output=OutputSpec(Path(), compression.value, quality, tile_size, pyramid),
                   model=model, styles=style, presets=preset, style_weights=mix_weights, alpha=alpha,
                   preserve_color=preserve_color, weights=weights, transform=transform, weights_dir=weights_dir,
                   stats=stats.value, thumb_size=thumb_size, sample=SampleSpec(seed=seed), patch_size=patch_size,
                   overlap=overlap, batch_size=batch_size, device=device.value, precision=precision,
                   max_pixels=max_pixels, overwrite=overwrite, resume=resume, stroke_scale=stroke_scale,
                   style_scale=style_scale)
    naming = Naming(output, format.value if format else None, style_tag(style, preset, weights), model,
                    numbered=not (overwrite or skip_existing), preview=preview)
    with tempfile.TemporaryDirectory(prefix="urst-") as workdir:
        try:
            sources = expand_inputs(inputs or [], recursive, files_from, Path(workdir))
            items = name_outputs(sources, naming)
        except UrstError as exc:
            fail(exc)
        options = BatchOptions(skip_existing=skip_existing, fail_fast=fail_fast, preview=preview,
                               raise_unexpected=bool(os.environ.get("URST_DEBUG")), workdir=Path(workdir))
        if scheduler is None and local_workers is None:
            run_batch_command(template, items, options, EventView(as_json, quiet), failed_list)
            return
        _on_cluster(template, items, options, EventView(as_json, quiet), failed_list, scheduler, local_workers,
                    band_rows)


def _on_cluster(template, items, options, view: EventView, failed_list, scheduler, local_workers, band_rows) -> None:
    """A batch with one task per file, or one input in bands, on a Dask cluster (urst_cli.cluster)."""
    from ..batch import STDOUT

    if scheduler is not None and local_workers is not None:
        fail(UrstError("--scheduler and --local-workers both say where to run: give one", EXIT_USAGE))
    if options.preview or template.resume or any(item.output == STDOUT for item in items):
        fail(UrstError("--preview, --resume and -o - run here only: leave out --scheduler/--local-workers", EXIT_USAGE))
    from ..cluster import banded_outcomes, check_one_image, connect, file_outcomes

    try:
        if len(items) == 1:  # what cannot run in bands is refused before any worker starts
            check_one_image(template, items[0], band_rows)
        with connect(scheduler, local_workers) as client:
            outcomes = banded_outcomes(client, band_rows) if len(items) == 1 else file_outcomes(client)
            run_batch_command(template, items, options, view, failed_list, outcomes)
    except UrstError as exc:
        fail(exc)
