"""Reading images through pyvips without decoding them whole.

Everything the rest of urst sees is 8-bit sRGB (plus an optional 8-bit alpha band) in
numpy arrays of shape [rows, columns, bands]. Large inputs are only ever read in
top-to-bottom bands (libvips' sequential access), so JPEG, PNG and strip TIFFs stream too.

Coordinates are in the *padded* frame: the image extended at the bottom and right to sides
the network accepts, by reflection (edge replication for tiny images), exactly as the
whole-image reference pads it.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pyvips

from .errors import EXIT_INPUT, UrstError

__all__ = ["ImageInfo", "probe", "open_rgb", "as_rgb", "ImageSource", "as_source", "BandReader", "DECODERS",
           "prefetched", "padded_index", "reflects", "read_thumbnail", "read_crops", "read_whole", "read_style"]

MIN_STYLE_SIDE = 16
DEFAULT_MAX_PIXELS = 4 * 1024**3  # 4 gigapixels; declared sizes above this are refused before decoding
# threads decoding a band of a tiled input side by side: half the cores (the model, blending and the
# writer's encoders need the rest); one on 2 cores, where the model's threads take both
DECODERS = max(1, (os.cpu_count() or 2) // 2)


@dataclass(frozen=True)
class ImageInfo:
    path: Path
    width: int
    height: int
    has_alpha: bool

    @property
    def bands(self) -> int:
        """Output bands: RGB, plus the alpha carried through."""
        return 4 if self.has_alpha else 3

    @property
    def pixels(self) -> int:
        return self.width * self.height


def _load(path: Path, access: str) -> pyvips.Image:
    if not path.exists():
        raise UrstError(f"{path}: no such file", EXIT_INPUT)
    if path.is_dir():
        raise UrstError(f"{path}: is a directory, not an image", EXIT_INPUT)
    if path.stat().st_size == 0:
        raise UrstError(f"{path}: empty file", EXIT_INPUT)
    try:
        return pyvips.Image.new_from_file(str(path), access=access, fail=True)
    except pyvips.Error as exc:
        raise UrstError(f"{path}: not an image urst can read ({_first_line(exc)})", EXIT_INPUT) from None


def _first_line(exc: pyvips.Error) -> str:
    detail = (getattr(exc, "detail", "") or str(exc)).strip().splitlines()
    return detail[0] if detail else str(exc)


def probe(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Read the header only: size and alpha. Refuses images larger than ``max_pixels``."""
    path = Path(path)
    img = _load(path, "sequential")
    if img.width * img.height > max_pixels:
        raise UrstError(f"{path}: {img.width}x{img.height} is more than --max-pixels {max_pixels:,}", EXIT_INPUT)
    return ImageInfo(path, img.width, img.height, img.hasalpha())


def _to_uchar(img: pyvips.Image) -> pyvips.Image:
    """8-bit samples: 16-bit scaled by >>8, float taken as 0..1 and clipped, anything else cast."""
    if img.format == "uchar":
        return img
    if img.format == "ushort":
        return img.cast("uchar", shift=True)
    if img.format in ("float", "double"):
        return (img * 255).cast("uchar")
    return img.cast("uchar")


def open_rgb(path: str | os.PathLike, access: str = "sequential") -> tuple[pyvips.Image, pyvips.Image | None]:
    """The image as 8-bit sRGB and its alpha band (8-bit) if it has one.

    An embedded ICC profile is honoured; grey becomes RGB; CMYK and other spaces go through
    libvips' colour management to sRGB.
    """
    return as_rgb(_load(Path(path), access))


def as_rgb(img: pyvips.Image) -> tuple[pyvips.Image, pyvips.Image | None]:
    """An image as ``open_rgb`` returns it: 8-bit sRGB and its alpha band (8-bit) if it has one."""
    alpha = None
    if img.hasalpha():
        alpha = _to_uchar(img[img.bands - 1])
        img = img.extract_band(0, n=img.bands - 1)
    try:
        if img.get_typeof("icc-profile-data"):
            img = img.icc_transform("srgb", embedded=True, intent="relative")
        elif img.interpretation not in ("srgb", "b-w") or img.format != "uchar":
            img = img.colourspace("srgb")
    except pyvips.Error:
        pass  # unknown or broken colour metadata: take the numbers as they are
    img = _to_uchar(img)
    if img.bands == 1:
        img = img.bandjoin([img, img])
    elif img.bands == 2:
        img = img.bandjoin(img[0])
    elif img.bands > 3:
        img = img.extract_band(0, n=3)
    return img, alpha


class ImageSource:
    """Where a pass's pixels come from: 8-bit sRGB (plus alpha), opened afresh for every pass.

    This one is a file. A multi-scale level is a libvips pipeline over files (multiscale.py):
    the readers below take either, so every estimator and the engine work on both.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)  # what error messages name

    def open(self, access: str) -> pyvips.Image:
        """RGB (and alpha, if any) as one uchar image; ``access`` is libvips' "sequential" or "random"."""
        return _joined(*open_rgb(self.path, access))

    def thumbnail(self, long_side: int) -> np.ndarray:
        """A downsampled RGB view with the given long side, uint8 [h, w, 3]."""
        return read_thumbnail(self.path, long_side)


def as_source(source: "ImageSource | str | os.PathLike") -> ImageSource:
    return source if isinstance(source, ImageSource) else ImageSource(source)


def padded_index(size: int, padded: int, reflect: bool) -> np.ndarray:
    """Source index of each position of an axis extended from ``size`` to ``padded``."""
    idx = np.arange(padded)
    beyond = idx >= size
    idx[beyond] = 2 * (size - 1) - idx[beyond] if reflect else size - 1
    return idx


def reflects(width: int, height: int, padded_width: int, padded_height: int) -> bool:
    """Reflection needs the pad to be smaller than the side; tiny images replicate their edge instead."""
    return padded_width - width < width and padded_height - height < height


class BandReader:
    """Streams horizontal bands of the padded frame, top to bottom, with RGB and alpha in one array.

    ``read(top, bottom)`` must be called with non-decreasing ``top``; rows shared with the
    previous band are kept, so the file is decoded exactly once. Rows live in two buffers
    reused for the whole pass (no width-sized allocation per band), taking turns: a returned
    band stays valid until the read after the next one, so one band can be decoded while the
    previous one is in use (``prefetched``).

    A tiled file's band is decoded by ``decoders`` threads side by side, each filling its own
    columns (whole tiles) through its own handle on the file; other files are decoded in one
    top-to-bottom stream, as JPEG and PNG have to be.
    """

    FETCH_ROWS = 8  # rows per libvips request: libvips holds ~14x that while serving it (50 MB for 32 x 38.7k px)

    def __init__(self, source: ImageSource | str | os.PathLike, padded_width: int, padded_height: int,
                 decoders: int | None = None):
        self.source = as_source(source)
        self.image = self.source.open("sequential")
        self.width, self.height, self.bands = self.image.width, self.image.height, self.image.bands
        self.padded_width, self.padded_height = padded_width, padded_height
        reflect = reflects(self.width, self.height, padded_width, padded_height)
        self._cols = padded_index(self.width, padded_width, reflect)
        self._rows_of = padded_index(self.height, padded_height, reflect)
        # rows below the image mirror the last rows: never drop those while they may be needed
        self._keep_limit = int(self._rows_of[self.height:].min()) if padded_height > self.height else self.height
        self._region = pyvips.Region.new(self.image)
        self._random_region: pyvips.Region | None = None
        self._columns = self._column_blocks(decoders or DECODERS)
        self._decoders = ThreadPoolExecutor(len(self._columns), thread_name_prefix="urst-decode") \
            if len(self._columns) > 1 else None
        self._bufs = [np.zeros((0, padded_width, self.bands), np.uint8) for _ in range(2)]
        self._turn = 0  # the buffer holding the last band
        self._top, self._count = 0, 0  # its first rows hold real rows [_top, _top + _count)
        self._jumped = False  # a tiled file read from a random-access handle, having skipped rows

    @property
    def tiled(self) -> bool:
        """Whether the file is stored in tiles, so that any region decodes on its own (``read_region``)."""
        return bool(self.image.get_typeof("tile-width"))

    def _column_blocks(self, decoders: int) -> list[tuple[int, int, pyvips.Region]]:
        """(left, right, region) of each decoding thread's columns: whole tiles, a handle on the file each."""
        real = min(self.width, self.padded_width)
        if decoders < 2 or not self.tiled:
            return [(0, real, self._region)]
        tile = self.image.get("tile-width")
        step = -(-real // decoders // tile) * tile
        return [(left, min(left + step, real), pyvips.Region.new(self.source.open("random")))
                for left in range(0, real, step)]

    def read_region(self, top: int, left: int, bottom: int, right: int) -> np.ndarray:
        """Any box of the padded frame, decoding only what lies under it (tiled files; others decode
        everything above it). Independent of the band pass: ``read`` may go on afterwards."""
        if self._random_region is None:
            self._random_region = pyvips.Region.new(self.source.open("random"))
        rows, cols = self._rows_of[top:bottom], self._cols[left:right]
        r0, c0 = int(rows.min()), int(cols.min())
        box = self._fetch(self._random_region, c0, r0, int(cols.max()) + 1 - c0, int(rows.max()) + 1 - r0)
        return box[rows - r0][:, cols - c0]

    def read(self, top: int, bottom: int) -> np.ndarray:
        """Rows [top, bottom) of the padded frame: uint8 [bottom - top, padded_width, bands], a view of a buffer.

        The buffers are as wide as the padded frame and the padding is filled in place (a few
        columns per band, mirrored rows once at the bottom), so no band is ever copied whole.
        """
        if top < self._top:
            raise ValueError("BandReader reads top to bottom only")
        keep_from = min(top, self._keep_limit)
        need = min(bottom, self.height)
        kept = max(0, self._top + self._count - keep_from)
        if not kept:
            self._skip(self._top + self._count, keep_from)
        previous, self._turn = self._bufs[self._turn], 1 - self._turn
        buf = self._bufs[self._turn]
        if bottom - keep_from > len(buf):
            buf = self._bufs[self._turn] = np.empty((bottom - keep_from, self.padded_width, self.bands), np.uint8)
        buf[:kept] = previous[self._count - kept: self._count]
        self._top, self._count = keep_from, kept
        if self._decoders is None:
            self._fill(buf, keep_from, keep_from + kept, need, *self._columns[0])
        else:  # each thread its columns; map's results re-raise a thread's error here
            list(self._decoders.map(lambda block: self._fill(buf, keep_from, keep_from + kept, need, *block),
                                    self._columns))
        fresh = slice(kept, max(kept, need - keep_from))
        real = min(self.width, self.padded_width)
        buf[fresh, real:] = buf[fresh][:, self._cols[real:]]
        self._count = max(self._count, need - keep_from)
        if bottom > need:  # below the image: mirrored (or repeated) rows, all of them still in this buffer
            buf[need - keep_from: bottom - keep_from] = buf[self._rows_of[need:bottom] - keep_from]
        return buf[top - keep_from: bottom - keep_from]

    def _fill(self, buf: np.ndarray, offset: int, start: int, stop: int, left: int, right: int,
              region: pyvips.Region) -> None:
        """Image rows [start, stop), columns [left, right) into ``buf``, whose first row is image row ``offset``."""
        for top in range(start, stop, self.FETCH_ROWS):
            rows = slice(top - offset, min(top + self.FETCH_ROWS, stop) - offset)
            buf[rows, left:right] = self._fetch(region, left, top, right - left, rows.stop - rows.start)

    def _skip(self, start: int, stop: int) -> None:
        """Decode and drop rows [start, stop): a sequential source cannot jump ahead (tiled files need not:
        they are read through a handle that reads any region, as several decoding threads read them)."""
        if self._decoders is not None or stop <= start:
            return
        if self.tiled:  # a band of rows far down the image (a cluster's band) decodes only its own tiles
            if not self._jumped:
                self._region = pyvips.Region.new(self.source.open("random"))
                self._columns = [(left, right, self._region) for left, right, _ in self._columns]
                self._jumped = True
            return
        for row in range(start, stop, self.FETCH_ROWS):
            self._fetch(self._region, 0, row, self.width, min(self.FETCH_ROWS, stop - row))

    def _fetch(self, region: pyvips.Region, left: int, top: int, width: int, height: int) -> np.ndarray:
        try:
            data = region.fetch(left, top, width, height)
        except pyvips.Error as exc:
            raise UrstError(f"cannot read rows {top}-{top + height}: {_first_line(exc)}", EXIT_INPUT) from None
        return np.frombuffer(data, dtype=np.uint8).reshape(height, width, self.bands)


def _joined(rgb: pyvips.Image, alpha: pyvips.Image | None) -> pyvips.Image:
    return rgb.bandjoin(alpha) if alpha is not None else rgb


def prefetched(reader: BandReader, spans: Sequence[tuple[int, int]]) -> Iterator[np.ndarray]:
    """``reader.read(top, bottom)`` for each span, the next one decoded in a thread while the caller uses this one.

    Decoding (libvips, which lets go of the GIL) then overlaps the caller's compute instead of
    stalling it. A band stays valid until the caller asks for the next one (the reader's two
    buffers take turns).
    """
    pending = _Background(reader.read, *spans[0]) if spans else None
    for i in range(len(spans)):
        band = pending.result()
        pending = _Background(reader.read, *spans[i + 1]) if i + 1 < len(spans) else None
        yield band


class _Background:
    """One call run in a daemon thread (an interrupted run never waits on it); ``result`` re-raises its error."""

    def __init__(self, fn, *args):
        self._value, self._error = None, None
        self._thread = threading.Thread(target=self._run, args=(fn, *args), name="urst-reader", daemon=True)
        self._thread.start()

    def _run(self, fn, *args) -> None:
        try:
            self._value = fn(*args)
        except BaseException as exc:  # handed to the caller's thread
            self._error = exc

    def result(self):
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


def read_whole(source: ImageSource | str | os.PathLike) -> np.ndarray:
    """The whole image as uint8 [H, W, 3] (only for images known to be small)."""
    source = as_source(source)
    try:
        return source.open("sequential").extract_band(0, n=3).numpy()
    except pyvips.Error as exc:
        raise UrstError(f"{source.path}: image data unreadable ({_first_line(exc)})", EXIT_INPUT) from None


def read_thumbnail(path: str | os.PathLike, long_side: int) -> np.ndarray:
    """A downsampled RGB view with the given long side, using libvips shrink-on-load where the format allows."""
    try:
        thumb = pyvips.Image.thumbnail(str(path), long_side, height=long_side, size="down", fail_on="error")
    except pyvips.Error as exc:
        raise UrstError(f"{path}: cannot make a thumbnail ({_first_line(exc)})", EXIT_INPUT) from None
    return _rgb_array(thumb)


def read_style(path: str | os.PathLike, side: int, square: bool, scale: float = 1.0) -> np.ndarray:
    """A style image as uint8 RGB: its centre square resized to side x side, or resized to a long side of ``side``.

    ``scale`` reads the painting ``scale`` times larger: a long side of scale x side, or, for the
    square, the centre side x side of its centre square resized to scale x side (scale >= 1).
    """
    path = Path(path)
    read_side = round(side * scale)
    header = _load(path, "sequential")  # clear errors for missing, empty and unreadable files
    if min(header.width, header.height) < MIN_STYLE_SIDE:
        raise UrstError(f"{path}: style image too small ({header.width}x{header.height}; a painting needs at "
                        f"least {MIN_STYLE_SIDE} px a side to show its brushwork)", EXIT_INPUT)
    try:
        if square:
            thumb = pyvips.Image.thumbnail(str(path), read_side, height=read_side, crop="centre", size="force",
                                           fail_on="error")
            thumb = thumb.crop((read_side - side) // 2, (read_side - side) // 2, side, side)
        else:
            thumb = pyvips.Image.thumbnail(str(path), read_side, height=read_side, fail_on="error")
    except pyvips.Error as exc:
        raise UrstError(f"{path}: style image unreadable ({_first_line(exc)})", EXIT_INPUT) from None
    if min(thumb.width, thumb.height) < MIN_STYLE_SIDE:  # a long, thin image resized to a long side of ``side``
        raise UrstError(f"{path}: style image too small or too thin ({thumb.width}x{thumb.height} after resizing)",
                        EXIT_INPUT)
    return _rgb_array(thumb)


def _rgb_array(img: pyvips.Image) -> np.ndarray:
    if img.hasalpha():
        img = img.extract_band(0, n=img.bands - 1)
    if img.interpretation not in ("srgb", "b-w") or img.format != "uchar":
        try:
            img = img.colourspace("srgb")
        except pyvips.Error:
            pass
    img = _to_uchar(img)
    if img.bands == 1:
        img = img.bandjoin([img, img])
    try:
        return img.extract_band(0, n=3).numpy()
    except pyvips.Error as exc:
        raise UrstError(f"image data unreadable ({_first_line(exc)})", EXIT_INPUT) from None


def read_crops(reader: BandReader, boxes: Sequence[tuple[int, int, int, int]]) -> list[np.ndarray]:
    """Crops (top, left, bottom, right) of the padded frame, RGB only: from a tiled file only the tiles
    under them are decoded; other files are decoded in one top-to-bottom pass."""
    if reader.tiled:
        return [reader.read_region(*box)[:, :, :3].copy() for box in boxes]
    order = sorted(range(len(boxes)), key=lambda i: boxes[i][0])
    crops: list[np.ndarray] = [np.empty(0)] * len(boxes)
    for i in order:
        top, left, bottom, right = boxes[i]
        crops[i] = reader.read(top, bottom)[:, left:right, :3].copy()
    return crops
