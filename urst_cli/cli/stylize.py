"""``urst stylize``: options parsed into a ``Job``, run by ``urst_cli.job``."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from ..errors import EXIT_USAGE, UrstError
from .common import DeviceChoice, StatsChoice, err, fail, result_summary, run_job

__all__ = ["stylize", "default_output", "PANELS"]

# the help panels of `urst stylize --help`, in the order a new user looks for them
STYLE, STROKES, TILING, OUTPUT, BATCH = "Style", "Strokes and statistics", "Tiling and device", "Output", "Batch"
PANELS = (STYLE, STROKES, TILING, OUTPUT, BATCH)


class CompressionChoice(str, Enum):
    deflate = "deflate"
    jpeg = "jpeg"
    zstd = "zstd"
    lzw = "lzw"
    none = "none"


def default_output(input_path: Path, styles: list[Path], presets: list[int], weights: Optional[str] = None) -> Path:
    """<input stem>_<style stem(s)>.tif beside the input; -2, -3, ... appended rather than overwrite anything."""
    tag = "+".join([p.stem for p in styles] + [f"preset{p}" for p in presets]) or weights or "stylized"
    candidate = input_path.with_name(f"{input_path.stem}_{tag}.tif")
    n = 2
    while candidate.exists():
        candidate = input_path.with_name(f"{input_path.stem}_{tag}-{n}.tif")
        n += 1
    return candidate


def stylize(
    input: Path = typer.Argument(..., help="Photograph to stylize (JPEG, PNG, TIFF/BigTIFF, WebP, HEIF, ...)."),
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
    weights: Optional[str] = typer.Option(None, "--weights", help="Per-style model weights: an imported name "
                                          "(urst weights list) (model johnson).", rich_help_panel=STYLE),
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
    output: Optional[Path] = typer.Option(None, "--output", "-o",
                                          help="Output file; the extension picks the format (.tif .png .jpg .webp). "
                                               "Default: <input>_<style>.tif beside the input.",
                                          rich_help_panel=OUTPUT),
    compression: CompressionChoice = typer.Option(CompressionChoice.deflate, "--compression",
                                                  help="TIFF compression.", rich_help_panel=OUTPUT),
    quality: int = typer.Option(90, "--quality", min=1, max=100, help="JPEG/WebP quality (and JPEG-in-TIFF).",
                                rich_help_panel=OUTPUT),
    tile_size: int = typer.Option(256, "--tile-size", min=16, help="TIFF tile side (a multiple of 16).",
                                  rich_help_panel=OUTPUT),
    pyramid: bool = typer.Option(False, "--pyramid", help="TIFF: add reduced-resolution levels (QuPath, OpenSlide).",
                                 rich_help_panel=OUTPUT),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the output file if it exists.",
                                   rich_help_panel=OUTPUT),
    resume: bool = typer.Option(False, "--resume", help="Keep finished rows on disk beside the output (about 3 "
                                "bytes per pixel) and, if an earlier --resume run of this output was stopped, "
                                "continue it: the result is the same as an uninterrupted run.",
                                rich_help_panel=OUTPUT),
    max_pixels: int = typer.Option(4 * 1024**3, "--max-pixels", min=1, help="Refuse inputs with more pixels.",
                                   rich_help_panel=BATCH),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors.", rich_help_panel=BATCH),
) -> None:
    """Stylize INPUT with a painting's style, streaming patches so any size fits in memory.

    Examples:

      urst stylize photo.jpg --style monet.jpg

      urst stylize scan.tif -s starry_night.jpg -o scan_starry.tif --pyramid

      urst stylize photo.jpg --preset 19 -o out.png

      urst stylize photo.jpg --model adain -s monet.jpg -s hokusai.jpg --style-weights 0.7,0.3 --alpha 0.8
    """
    from ..job import Job
    from ..stats import SampleSpec
    from ..writer import OutputSpec

    if tile_size % 16:
        fail(UrstError(f"--tile-size {tile_size}: must be a multiple of 16", EXIT_USAGE))
    try:
        mix_weights = [float(w) for w in style_weights.split(",")] if style_weights else None
    except ValueError:
        fail(UrstError(f"--style-weights {style_weights}: give numbers separated by commas", EXIT_USAGE))
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
    result = run_job(job, show_progress=not quiet)
    if not quiet:
        err.print(result_summary(result))
