"""Multi-scale stylization (``--stroke-scale``): a result that looks painted at every zoom level.

The networks paint strokes of a fixed size in pixels (about their receptive field, ~100 px),
so a 30000 px result seen whole is the photo with a tint. urst paints an octave pyramid of
the input instead, the coarsest level first and every finer level from the one below it:

    photo_k    the input halved k times (2x2 averages)
    content_k  photo_k with its low band taken from out_{k+1}, the coarser painting: its
               layout, colours and large strokes, under the photo's own finer detail
    painted_k  the single-scale pass (engine.py) over content_k, with content_k's statistics
    out_k      painted_k with the luminance of its low band (two octaves down) restored to
               out_{k+1}'s, so that what the network repaints at this scale does not drift from
               what the coarser levels painted, in colours it painted itself; out_0 also takes its
               lowest band (at the coarsest level's own scale), colour too, from the coarsest level

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

Every level's content is a libvips pipeline over files (the input and temporary tiled TIFFs of
the photo pyramid and of each finished level), read by the engine like any image; the restore is
applied to the engine's rows on their way to the file (``writer.Transform``), as row streams
(rowstream.py) that keep a few dozen rows of each intermediate. Every pass streams.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyvips

from .errors import EXIT_INPUT, EXIT_OUTPUT, EXIT_USAGE, UrstError
from .engine import LUMA
from .reader import ImageSource, _first_line, open_rgb
from . import rowstream
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
# content_k takes out_{k+1}'s band below one octave down (shift_low_band), and out_k gets back out_{k+1}'s band
# below two octaves down (one: muddy), in luminance only: the colours at 100% are then the ones this level painted,
# not an average of two paintings' (the mud of forests and fur; 7 pairs at 8000 px, judge of
# benchmarks/view_style.py: median full score / single-scale 0.911 -> 0.876, view score / r 1.059 -> 1.067)
RESTORE_OCTAVES = 2
# the output's band below the coarsest level's own scale is the coarsest level's, colour too: the picture the
# model paints whole keeps its layout and colour when seen whole (view / r 1.162 -> 1.072 when it came, full /
# single 0.883 -> 0.897). Blurred by 3 taps there (sigma 0.7 px), not 5 (1 px): view / r 1.059 -> 1.036, full
# 0.911 -> 0.929; with the luminance-only restore, 1.035 and 0.897 (both goals of the judge met)
COARSEST_TAPS = 3

_BINOMIAL = pyvips.Image.new_from_array([[1, 4, 6, 4, 1]], scale=16)  # 5 taps: a Gaussian of sigma 1 px


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


def shift_low_band(x: pyvips.Image, coarse: pyvips.Image, x_halved: pyvips.Image | None = None) -> pyvips.Image:
    """``x`` (uchar) plus the low band of ``coarse - x``: their difference at ``coarse``'s scale (one octave
    down from x), blurred (sigma 1 px there) and zoomed back up (content_k, on libvips images: the engine
    reads it by regions, windows and crops anywhere).

    ``x_halved``: ``halve(x)`` where it is already on disk (the photo pyramid); then the only work at x's
    own resolution is the final addition. The step is smooth at its own scale (measured on a painting: 0.3
    levels mean from bilinear, 4 at most), and a zoom costs nothing at x's resolution.
    """
    half = halve(x) if x_halved is None else x_halved
    step = (coarse.cast("float") - half.cast("float")).convsep(_BINOMIAL, precision="float").rint()
    return (x + step.cast("short").zoom(2, 2).crop(0, 0, x.width, x.height)).cast("uchar")


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
        content = shift_low_band(_rgb(img), coarse, self._photo(self.level + 1, access))
        return _with_alpha_of(content, img)

    def thumbnail(self, long_side: int) -> np.ndarray:
        img = _rgb(self.open("sequential"))
        return img.thumbnail_image(long_side, height=long_side, size="down").numpy()


def restore(coarse: Path, photo: Path | None = None, coarsest: tuple[Path, int] | None = None) -> Transform:
    """The writer transform that turns painted_k into out_k (RGB, alpha passed through), row by row in numpy
    (rowstream.py: libvips' buffers for this pipeline grew with the image's width). With ``photo`` (the
    input, at level 0) the result keeps the photo's colours: its luminance, the photo's chroma
    (``--preserve-color``, as engine.keep_colours does for a single-scale pass). ``coarsest``: (file,
    octaves below this level) of the coarsest level, whose lowest band the output takes (the final level
    of three or more)."""

    def transform(blocks: Iterator[np.ndarray], width: int, height: int) -> Iterator[np.ndarray]:
        painted = rowstream.from_blocks(blocks, width, height)
        half = rowstream.halve(painted)  # alpha too, if any: ignored below
        step = _restored_band(half, _tiled_rows(coarse), 1, RESTORE_OCTAVES, luminance_only=True)
        if coarsest is not None:  # both bands added at once: the full-resolution work is one zoom and one sum
            path, octaves = coarsest
            # halved in 8 bits as the photo pyramid is, whose rounding (half up) would otherwise stay in the
            # difference: +0.5 levels at 3 levels, +1 at 4 (a null model's output, measured)
            restored_half = rowstream.combine(lambda h, s: np.clip(h[..., :3] + s, 0, 255).astype(np.uint8), half, step)
            step = rowstream.combine(np.add, step, _restored_band(restored_half, _tiled_rows(path), octaves, octaves,
                                                                  taps=COARSEST_TAPS))
        out = rowstream.combine(_add_zoomed_rows, painted, _zoomed(step, width, height))
        if photo is not None:
            out = rowstream.combine(keep_photo_colours, out, rowstream.from_image(open_rgb(photo, "sequential")[0]))
        return rowstream.blocks_of(out)

    return transform


def _tiled_rows(path: Path) -> rowstream.Rows:
    return rowstream.from_image(pyvips.Image.new_from_file(str(path)))


def _restored_band(half: rowstream.Rows, coarse: rowstream.Rows, coarse_octaves: int, octaves: int,
                   luminance_only: bool = False, taps: int = 5) -> rowstream.Rows:
    """What out_k gets added at half of its scale: the low band of ``coarse - x``, whole levels. ``half`` =
    halve(x); ``coarse`` is ``coarse_octaves`` down from x; their difference is halved until ``octaves`` down,
    blurred (``taps`` 5: sigma 1 px there; 3: 0.7 px) and doubled back up (bilinear). ``luminance_only``: the
    difference's luminance (BT.601) alone, one channel, added to all three (chroma left as x has it)."""
    reduced, sizes = half, []
    for _ in range(coarse_octaves - 1):
        sizes.append((reduced.width, reduced.height))
        reduced = rowstream.halve(reduced)
    difference = rowstream.combine(lambda c, r: c.astype(np.float32) - r[..., :3], coarse, reduced)
    if luminance_only:  # linear: taken at the coarse scale it equals the doubled band's, for a third of the work
        luma = np.array(LUMA, np.float32)[:, None]
        difference = rowstream.combine(lambda d: d @ luma, difference)
    for _ in range(octaves - coarse_octaves):
        sizes.append((difference.width, difference.height))
        difference = rowstream.halve(difference)
    difference = rowstream.blur(difference, taps)
    for width, height in reversed(sizes):
        difference = rowstream.double(difference, width, height)
    return rowstream.combine(np.rint, difference)


def _zoomed(step: rowstream.Rows, width: int, height: int) -> rowstream.Rows:
    """``step`` (half of width x height) zoomed 2x, nearest, in int16: smooth at its own scale, so the zoom
    loses nothing that matters and costs nothing at full resolution."""
    rows = step.reader()

    def make(top: int, bottom: int) -> np.ndarray:
        half = rows(top // 2, (bottom + 1) // 2).astype(np.int16)
        return half.repeat(2, axis=0)[top % 2: top % 2 + bottom - top].repeat(2, axis=1)[:, :width]

    return rowstream.Rows(width, height, make)


def _add_zoomed_rows(painted: np.ndarray, step: np.ndarray) -> np.ndarray:
    rgb = np.clip(painted[..., :3] + step, 0, 255).astype(np.uint8)
    return np.concatenate([rgb, painted[..., 3:]], axis=2) if painted.shape[2] > 3 else rgb


def keep_photo_colours(stylized: np.ndarray, photo: np.ndarray) -> np.ndarray:
    """The stylized luminance (BT.601) with the photo's chroma: the photo plus the luminance change in every
    band (engine.keep_colours' formula), rounded; alpha passed through."""
    rgb = photo.astype(np.float32)
    change = (stylized[..., :3] - rgb) @ np.array(LUMA, np.float32)
    kept = np.clip(np.floor(rgb + change[..., None] + 0.5), 0, 255).astype(np.uint8)
    return np.concatenate([kept, stylized[..., 3:]], axis=2) if stylized.shape[2] > 3 else kept


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
