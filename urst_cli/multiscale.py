"""Multi-scale stylization (``--stroke-scale``): a result that looks painted at every zoom level.

The networks paint strokes of a fixed size in pixels (about their receptive field, ~100 px),
so a 30000 px result seen whole is the photo with a tint. urst paints an octave pyramid of
the input instead, the coarsest level first and every finer level from the one below it:

    photo_k    the input halved k times (2x2 averages)
    content_k  photo_k with its low band taken from out_{k+1}, the coarser painting: its
               layout, colours and large strokes, under the photo's own finer detail
    painted_k  the single-scale pass (engine.py) over content_k, with content_k's statistics
    out_k      painted_k with its low band (two octaves down) restored to out_{k+1}'s, so that
               what the network repaints at this scale does not drift from what the coarser
               levels painted; out_0 also takes its lowest band (below the coarsest level's own
               scale) from the coarsest level

The coarsest level is painted from the photo alone, at the size the network paints a whole
picture (a long side of 768-1536 px by default): the look seen whole. Each finer level adds
an octave of strokes on top, down to the network's own brush texture at 100%.

Why this design (benchmarks/view_style.py, README "Painted at every scale"): summing frequency bands of
paintings made independently at each scale is painted seen whole but muddy at 100% (the bands
do not belong to one painting); repainting at full size from a coarse painting alone keeps
100% coherent but loses the large layout; re-stylizing every octave from the one below
without the restore compounds the style until the subject is lost. Taking each level's
content and its final low band from the level below does both: one coherent painting whose
strokes grow an octave per level.

Every level is a libvips pipeline over files (the input and temporary tiled TIFFs of the
photo pyramid and of each finished level), read by the engine like any image; the restore is
applied to the engine's rows on their way to the file (``writer.Transform``). Every pass
streams; libvips' buffers in the composition still grow with the image's width (README).
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyvips

from .errors import EXIT_INPUT, EXIT_OUTPUT, EXIT_USAGE, UrstError
from .engine import LUMA
from .reader import ImageSource, _first_line, open_rgb
from .writer import Transform

__all__ = ["Level", "plan_levels", "AUTO_LONG_SIDE", "COARSE_SAMPLE_SIZE", "LEVELS_SUFFIX", "halve",
           "shift_low_band", "LevelSource", "restore", "keep_photo_colours", "LevelFiles", "levels_folder",
           "build_photo_pyramid"]

AUTO_LONG_SIDE = 1536  # auto: halve until the long side is at most this (the coarsest is then 768-1536 px)
LEVELS_SUFFIX = ".levels"
MIN_LEVEL_SIDE = 64    # a coarser level would be too small to paint anything
# coarser levels' sampled statistics pool 16 crops of 256 px, not 384: 44% less work for a result that looks the
# same (8000 px sunset: 32.7 dB from the 384 px one, view/full scores 0.414/0.411 against 0.417/0.410)
COARSE_SAMPLE_SIZE = 256
CONTENT_OCTAVES = 1    # content_k takes out_{k+1}'s band below one octave down...
RESTORE_OCTAVES = 2    # ...and out_k gets back out_{k+1}'s band below two octaves down (one: muddy);
# the output's band below the coarsest level's own scale (sigma 1 px there) is the coarsest level's: the
# picture the model paints whole keeps its layout and colour when seen whole (7 pairs at 8000 px, judge of
# benchmarks/view_style.py, same code otherwise: median view score / r 1.162 -> 1.072, full score /
# single-scale 0.883 -> 0.897; with the JPEG photo pyramid and 8-bit halving since, 1.055 and 0.914)

# 5-tap binomial (a Gaussian of sigma 1 px) and the 3x3 filter that makes a 2x nearest zoom bilinear
_BINOMIAL = pyvips.Image.new_from_array([[1, 4, 6, 4, 1]], scale=16)
_BILINEAR = pyvips.Image.new_from_array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], scale=16)


@dataclass(frozen=True)
class Level:
    index: int   # octaves below the input: 0 is full resolution
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def plan_levels(width: int, height: int, stroke_scale: str) -> list[Level]:
    """The levels to paint, coarsest first. ``stroke_scale``: "auto", or S >= 1 (rounded to a power of two,
    2^k for k octaves); "1" is single-scale stylization."""
    sizes = [(width, height)]  # every octave this image has, down to the smallest level worth painting
    while min(sizes[-1]) >= 2 * MIN_LEVEL_SIDE:
        w, h = sizes[-1]
        sizes.append((-(-w // 2), -(-h // 2)))
    if stroke_scale == "auto":  # long, thin images get what their short side allows
        octaves = min(max(0, math.ceil(math.log2(max(width, height) / AUTO_LONG_SIDE))), len(sizes) - 1)
    else:
        try:
            scale = float(stroke_scale)
        except ValueError:
            scale = 0.0
        if not scale >= 1 or not math.isfinite(scale):
            raise UrstError(f"--stroke-scale {stroke_scale}: use auto or a number >= 1", EXIT_USAGE)
        octaves = round(math.log2(scale))
        if octaves >= len(sizes):
            raise UrstError(f"--stroke-scale {stroke_scale}: {width}x{height} has levels down to {MIN_LEVEL_SIDE} px "
                            f"a side for at most {2 ** (len(sizes) - 1)}", EXIT_USAGE)
    return [Level(k, w, h) for k, (w, h) in reversed(list(enumerate(sizes[: octaves + 1])))]


def halve(img: pyvips.Image) -> pyvips.Image:
    """2x2 averages; on an odd side the last row or column stands for two. Sides become ceil(side / 2)."""
    if img.width % 2 or img.height % 2:
        img = img.embed(0, 0, img.width + img.width % 2, img.height + img.height % 2, extend="copy")
    return img.shrink(2, 2)


def _double(img: pyvips.Image, width: int, height: int) -> pyvips.Image:
    """Bilinear upsampling by 2 (pixel centres aligned), cropped to width x height."""
    return img.zoom(2, 2).conv(_BILINEAR, precision="float").crop(0, 0, width, height)


def shift_low_band(x: pyvips.Image, coarse: pyvips.Image, octaves: int,
                   x_halved: pyvips.Image | None = None, coarse_octaves: int = 1) -> pyvips.Image:
    """``x`` (uchar) plus the low band of ``coarse - x``: their difference at ``coarse``'s scale
    (``coarse_octaves`` down from x), halved until ``octaves`` down, blurred (sigma 1 px there) and brought
    back up.

    ``x_halved``: ``halve(x)`` where it is already on disk (the photo pyramid); then the only work at x's
    own resolution is the final addition.
    """
    half = halve(x) if x_halved is None else x_halved
    return _add_zoomed(x, _low_band_step(half, coarse, coarse_octaves, octaves))


def _low_band_step(half: pyvips.Image, coarse: pyvips.Image, coarse_octaves: int, octaves: int) -> pyvips.Image:
    """What ``shift_low_band`` adds, at half of x's scale (``half`` = halve(x)), rounded to whole levels."""
    reduced, sizes = half, []  # sizes: of every octave the band passes on its way down, but x's own
    for _ in range(coarse_octaves - 1):
        sizes.append((reduced.width, reduced.height))
        reduced = halve(reduced)
    difference = coarse.cast("float") - reduced.cast("float")
    for _ in range(octaves - coarse_octaves):
        sizes.append((difference.width, difference.height))
        difference = halve(difference)
    difference = difference.convsep(_BINOMIAL, precision="float")
    for width, height in reversed(sizes):
        difference = _double(difference, width, height)
    return difference.rint()


def _add_zoomed(x: pyvips.Image, step: pyvips.Image) -> pyvips.Image:
    """x plus ``step`` (half of x's size) zoomed 2x: the step is smooth at its own scale (measured on a
    painting: 0.3 levels mean from bilinear, 4 at most), and a zoom costs nothing at x's resolution."""
    step = step.cast("short").zoom(2, 2).crop(0, 0, x.width, x.height)
    return (x + step).cast("uchar")


def _rgb(img: pyvips.Image) -> pyvips.Image:
    return img.extract_band(0, n=3)


def _with_alpha_of(rgb: pyvips.Image, img: pyvips.Image) -> pyvips.Image:
    return rgb.bandjoin(img.extract_band(3, n=img.bands - 3)) if img.bands > 3 else rgb


class LevelSource(ImageSource):
    """content_k: the level's photo (the input itself at level 0, with its alpha) with its low band from
    ``coarse``, the coarser level's finished output (None at the coarsest level: the photo as it is).
    ``files``: where the photo pyramid is."""

    def __init__(self, input_path: Path, level: int, files: LevelFiles, coarse: Path | None):
        super().__init__(input_path)
        self.level, self.files, self.coarse = level, files, coarse

    def _photo(self, level: int, access: str) -> pyvips.Image:
        return super().open(access) if level == 0 else pyvips.Image.new_from_file(str(self.files.photo(level)),
                                                                                  access=access)

    def open(self, access: str) -> pyvips.Image:
        img = self._photo(self.level, access)
        if self.coarse is None:
            return img
        coarse = pyvips.Image.new_from_file(str(self.coarse), access=access)
        content = shift_low_band(_rgb(img), coarse, CONTENT_OCTAVES, self._photo(self.level + 1, access))
        return _with_alpha_of(content, img)

    def thumbnail(self, long_side: int) -> np.ndarray:
        img = _rgb(self.open("sequential"))
        return img.thumbnail_image(long_side, height=long_side, size="down").numpy()


def restore(coarse: Path, photo: Path | None = None, coarsest: tuple[Path, int] | None = None) -> Transform:
    """The writer transform that turns painted_k into out_k (RGB, alpha passed through). With ``photo`` (the
    input, at level 0) the result keeps the photo's colours: its luminance, the photo's chroma
    (``--preserve-color``, as engine.keep_colours does for a single-scale pass). ``coarsest``: (file,
    octaves below this level) of the coarsest level, whose lowest band the output takes (the final level
    of three or more)."""

    def transform(painted: pyvips.Image) -> pyvips.Image:
        x = _rgb(painted)
        half = halve(x)
        step = _low_band_step(half, pyvips.Image.new_from_file(str(coarse), access="sequential"), 1,
                              RESTORE_OCTAVES)
        if coarsest is not None:  # both bands added at once: the full-resolution work is one zoom and one sum
            path, octaves = coarsest
            # halved in 8 bits as the photo pyramid is, whose rounding (half up) would otherwise stay in the
            # difference: +0.5 levels at 3 levels, +1 at 4 (a null model's output, measured)
            restored_half = (half + step).cast("uchar")
            step += _low_band_step(restored_half, pyvips.Image.new_from_file(str(path), access="sequential"),
                                   octaves, octaves)
        rgb = _add_zoomed(x, step)
        if photo is not None:
            rgb = keep_photo_colours(rgb, open_rgb(photo, "sequential")[0])
        return _with_alpha_of(rgb, painted)

    return transform


def keep_photo_colours(stylized: pyvips.Image, photo: pyvips.Image) -> pyvips.Image:
    """The stylized luminance (BT.601) with the photo's chroma: the photo plus the luminance change in every
    band (engine.keep_colours' formula, on libvips images)."""
    change = (stylized.cast("float") - photo.cast("float")).recomb([list(LUMA)] * 3)
    return (photo + change + 0.5).cast("uchar")


class LevelFiles:
    """The temporary files of one multi-scale job: the photo pyramid and each finished level.

    ``folder`` is hidden beside the output (inside the resume journal with --resume, where finished levels
    are kept for the next run); the job removes it when it ends.
    """

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def photo(self, level: int) -> Path:
        return self.folder / f"photo-{level}.tif"

    def output(self, level: int) -> Path:
        return self.folder / f"level-{level}.tif"

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def levels_folder(output: Path) -> Path:
    """Where a run without --resume keeps its levels: hidden beside the output, named by this process
    (``writer.remove_orphans(output, LEVELS_SUFFIX)`` clears those of killed runs)."""
    return output.with_name(f".{output.name}.{os.getpid()}{LEVELS_SUFFIX}")


def build_photo_pyramid(input_path: Path, levels: list[Level], files: LevelFiles) -> None:
    """photo_1 .. photo_K as tiled TIFFs, each halved from the one above (the input decoded once).

    JPEG at quality 95: 0.6 bytes a pixel, 0.7 levels from the photo on average (the sunset photo at
    2136x1424); lossless deflate took 2.1 and put the temporary files at 0.58 of the output's size at their
    peak. The photo is only what the network repaints. Files already there (a resumed job) are kept; each
    is written aside and renamed when complete.
    """
    previous = None
    for level in sorted(levels, key=lambda lv: lv.index)[1:]:
        path = files.photo(level.index)
        if not path.exists():
            above = open_rgb(input_path, "sequential")[0] if previous is None else \
                pyvips.Image.new_from_file(str(previous), access="sequential")
            partial = path.with_name(path.name + ".partial")
            halved = halve(above)
            try:
                halved.tiffsave(str(partial), tile=True, tile_width=256, tile_height=256, bigtiff=True,
                                compression="jpeg", Q=95)
            except pyvips.Error as exc:  # the first level is where the input is decoded, in full
                room = shutil.disk_usage(files.folder).free > 3 * halved.width * halved.height
                if previous is None and room:
                    raise UrstError(f"{input_path}: image data unreadable ({_first_line(exc)})", EXIT_INPUT) from None
                raise UrstError(f"cannot write the multi-scale levels in {files.folder}: {_first_line(exc)}",
                                EXIT_OUTPUT) from None
            os.replace(partial, path)
        previous = path
