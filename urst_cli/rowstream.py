"""Images as rows made on demand, top to bottom, through local operations (the multi-scale composition).

libvips runs such arithmetic too, but each operation of a libvips pipeline keeps buffers of its own that
grow with the image's width and the rows asked at once: the final level's composition at 16000 px wide
grew the process by 513 MiB that way. Here every intermediate image keeps only the rows its readers
still need (tens of rows), and the arithmetic is numpy's.

A ``Rows`` is an image whose rows are made in consecutive ranges by a function of (top, bottom). Each
operation that reads it takes a reader (``Rows.reader``) and asks for non-decreasing ranges; rows that
every reader has moved past are dropped. Rows asked outside the image repeat the nearest edge row, as
libvips' "copy" extension does, so the operations below need no edge cases of their own.
"""

from __future__ import annotations

import math
from typing import Callable, Iterator

import numpy as np
import pyvips

__all__ = ["Rows", "RowReader", "from_blocks", "from_image", "halve", "blur", "double", "combine", "blocks_of"]

RowReader = Callable[[int, int], np.ndarray]
"""rows(top, bottom): that range of an image's rows, [bottom - top, width, bands], edges repeated outside it"""


class Rows:
    """A ``width`` x ``height`` image made by ``make(top, bottom)`` in consecutive ranges, as its readers ask.

    Made rows wait in a ring buffer (row y at y modulo its length) until every reader has moved past them: the
    ring grows to what the readers' lookahead needs, then stays; rows reach readers as copies.
    """

    def __init__(self, width: int, height: int, make: Callable[[int, int], np.ndarray]):
        self.width, self.height, self._make = width, height, make
        self._ring: np.ndarray | None = None
        self._kept_from, self._made = 0, 0  # the ring holds rows [_kept_from, _made)
        self._lows: list[int] = []  # per reader, the first row it may still ask for

    @property
    def capacity(self) -> int:
        """The most rows this image has held at once."""
        return 0 if self._ring is None else len(self._ring)

    def reader(self) -> RowReader:
        slot = len(self._lows)
        self._lows.append(0)

        def rows(top: int, bottom: int) -> np.ndarray:
            self._lows[slot] = min(max(top, 0), self.height - 1)
            self._make_until(min(max(bottom, 1), self.height))
            return self._ring[np.clip(np.arange(top, bottom), 0, self.height - 1) % len(self._ring)]

        return rows

    def _make_until(self, bottom: int) -> None:  # bottom <= height
        if self._made < bottom:
            n = bottom - self._made
            new = self._make(self._made, bottom)
            self._kept_from = max(self._kept_from, min(self._lows))  # readers all exist before the first rows
            if self._ring is None or len(self._ring) < self._made + n - self._kept_from:
                self._grow(self._made + n - self._kept_from, new)
            self._ring[np.arange(self._made, self._made + n) % len(self._ring)] = new
            self._made += n

    def _grow(self, rows: int, like: np.ndarray) -> None:
        ring = np.empty((max(rows, 2 * len(self._ring) if self._ring is not None else 0),) + like.shape[1:],
                        like.dtype)
        if self._ring is not None:
            kept = np.arange(self._kept_from, self._made)
            ring[kept % len(ring)] = self._ring[kept % len(self._ring)]
        self._ring = ring


def from_blocks(blocks: Iterator[np.ndarray], width: int, height: int) -> Rows:
    """Row blocks of any sizes, top to bottom. A block is read before the next one is asked for: its producer may
    reuse the buffer after that (writer.write_rows' blocks)."""
    left = [np.zeros((0,), np.uint8)]  # the rows of the latest block not yet made into a range

    def make(top: int, bottom: int) -> np.ndarray:
        out, done = None, 0
        while done < bottom - top:
            if not len(left[0]):
                left[0] = next(blocks)
            part, left[0] = left[0][: bottom - top - done], left[0][bottom - top - done:]
            if out is None:
                out = np.empty((bottom - top,) + part.shape[1:], part.dtype)
            out[done: done + len(part)] = part
            done += len(part)
        return out

    return Rows(width, height, make)


def from_image(image: pyvips.Image) -> Rows:
    """An 8-bit libvips image's rows, pulled through its pipeline in ranges (a tiled file decodes only their tiles)."""
    region = pyvips.Region.new(image.cast("uchar"))

    def make(top: int, bottom: int) -> np.ndarray:
        data = region.fetch(0, top, image.width, bottom - top)
        return np.frombuffer(data, np.uint8).reshape(bottom - top, image.width, image.bands)

    return Rows(image.width, image.height, make)


def _pad_columns(rows: np.ndarray, left: int, right: int) -> np.ndarray:
    return np.concatenate([rows[:, :1]] * left + [rows] + [rows[:, -1:]] * right, axis=1)


def _along(x: np.ndarray, axis: int, start: int, stop: int) -> np.ndarray:
    """x[start:stop] along ``axis`` (0: rows, 1: columns)."""
    return x[start:stop] if axis == 0 else x[:, start:stop]


def halve(image: Rows) -> Rows:
    """2x2 averages (sides become ceil(side / 2); an odd side's last row or column stands for two). uint8 as
    libvips' shrink makes it (pairs of rows averaged, then pairs of columns, each rounded half up): the
    photo pyramid's rounding, which the composition's differences must share; float images exactly."""
    rows = image.reader()

    def make(top: int, bottom: int) -> np.ndarray:
        pairs = rows(2 * top, 2 * bottom)
        if pairs.shape[1] % 2:
            pairs = _pad_columns(pairs, 0, 1)
        if pairs.dtype == np.uint8:
            wide = pairs.astype(np.uint16)
            vertical = (wide[0::2] + wide[1::2] + 1) >> 1
            return ((vertical[:, 0::2] + vertical[:, 1::2] + 1) >> 1).astype(np.uint8)
        vertical = pairs[0::2] + pairs[1::2]
        return (vertical[:, 0::2] + vertical[:, 1::2]) * np.float32(0.25)

    return Rows(-(-image.width // 2), -(-image.height // 2), make)


def blur(image: Rows, taps: int = 5) -> Rows:
    """A binomial filter across rows and columns, in float32: 5 taps (1 4 6 4 1, a Gaussian of sigma 1 px)
    or 3 (1 2 1, sigma 0.7 px)."""
    rows = image.reader()
    radius = taps // 2
    weights = [np.float32(math.comb(taps - 1, i) / 2 ** (taps - 1)) for i in range(taps)]

    def filtered(x: np.ndarray, axis: int) -> np.ndarray:
        n = x.shape[axis] - 2 * radius
        return sum(w * _along(x, axis, i, n + i) for i, w in enumerate(weights))

    def make(top: int, bottom: int) -> np.ndarray:
        vertical = filtered(rows(top - radius, bottom + radius).astype(np.float32), 0)
        return filtered(_pad_columns(vertical, radius, radius), 1)

    return Rows(image.width, image.height, make)


def double(image: Rows, width: int, height: int) -> Rows:
    """Bilinear upsampling by 2 with pixel centres aligned (each new pixel 3/4 of its source and 1/4 of the
    neighbour on its side), cropped to ``width`` x ``height``; float32."""
    rows = image.reader()

    def twice(x: np.ndarray, axis: int) -> np.ndarray:
        """x [.., n + 2, ..] with one neighbour each side -> 2n samples along ``axis``."""
        n = x.shape[axis] - 2
        before, centre, after = (_along(x, axis, i, n + i) for i in range(3))
        out = np.empty(centre.shape[:axis] + (2 * n,) + centre.shape[axis + 1:], np.float32)
        index = [slice(None)] * x.ndim
        index[axis] = slice(0, None, 2)
        out[tuple(index)] = 0.25 * before + 0.75 * centre
        index[axis] = slice(1, None, 2)
        out[tuple(index)] = 0.75 * centre + 0.25 * after
        return out

    def make(top: int, bottom: int) -> np.ndarray:
        first, last = top // 2, (bottom - 1) // 2  # the source rows these rows lie between
        vertical = twice(rows(first - 1, last + 2).astype(np.float32), 0)[top - 2 * first: bottom - 2 * first]
        return twice(_pad_columns(vertical, 1, 1), 1)[:, :width]

    return Rows(width, height, make)


def combine(function: Callable[..., np.ndarray], *images: Rows) -> Rows:
    """Pixel by pixel: ``function`` of the same rows of every image (all of one size)."""
    readers = [image.reader() for image in images]
    return Rows(images[0].width, images[0].height, lambda top, bottom: function(*(rows(top, bottom) for rows in readers)))


def blocks_of(image: Rows, rows: int = 32) -> Iterator[np.ndarray]:
    """The whole image as blocks of ``rows`` rows, top to bottom."""
    read = image.reader()
    for top in range(0, image.height, rows):
        yield read(top, min(top + rows, image.height))
