"""Row streams (rowstream.py): each operation equals libvips' on the whole image, and nothing is held whole."""

from __future__ import annotations

import numpy as np
import pytest
import pyvips

from urst_cli import rowstream

BILINEAR = pyvips.Image.new_from_array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], scale=16)
BINOMIAL = pyvips.Image.new_from_array([[1, 4, 6, 4, 1]], scale=16)
BINOMIAL3 = pyvips.Image.new_from_array([[1, 2, 1]], scale=4)


def _blocks(array: np.ndarray, seed: int):
    """The array in blocks of random heights, each yielded from a buffer reused afterwards (as the engine does)."""
    rng, top = np.random.default_rng(seed), 0
    buffer = np.empty((40,) + array.shape[1:], array.dtype)
    while top < len(array):
        n = min(int(rng.integers(1, 40)), len(array) - top)
        buffer[:n] = array[top: top + n]
        yield buffer[:n]
        buffer[:] = 0  # the block's rows are gone once the next one is asked for
        top += n


def _stream(array: np.ndarray, seed: int = 0) -> rowstream.Rows:
    return rowstream.from_blocks(_blocks(array, seed), array.shape[1], array.shape[0])


def _whole(image: rowstream.Rows) -> np.ndarray:
    return np.concatenate(list(rowstream.blocks_of(image, rows=7)))


@pytest.mark.parametrize("shape", [(37, 51, 3), (40, 32, 4), (1, 1, 3), (2, 3, 3)])
def test_halve_is_libvips_shrink(shape):
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, shape, dtype=np.uint8)
    image = pyvips.Image.new_from_array(x)
    even = image.embed(0, 0, image.width + image.width % 2, image.height + image.height % 2, extend="copy")
    np.testing.assert_array_equal(_whole(rowstream.halve(_stream(x))), even.shrink(2, 2).numpy().reshape(
        -(-shape[0] // 2), -(-shape[1] // 2), shape[2]))
    f = x.astype(np.float32) / 3
    np.testing.assert_allclose(_whole(rowstream.halve(_stream(f))), even.cast("float").shrink(2, 2).numpy().reshape(
        -(-shape[0] // 2), -(-shape[1] // 2), shape[2]) / 3, atol=1e-4)


def test_blur_and_double_are_libvips_filters_with_copied_edges():
    rng = np.random.default_rng(4)
    x = rng.random((29, 43, 3), np.float32) * 255
    image = pyvips.Image.new_from_array(x)
    expected = image.convsep(BINOMIAL, precision="float").numpy()
    np.testing.assert_allclose(_whole(rowstream.blur(_stream(x))), expected, atol=1e-3)
    expected = image.convsep(BINOMIAL3, precision="float").numpy()
    np.testing.assert_allclose(_whole(rowstream.blur(_stream(x), taps=3)), expected, atol=1e-3)
    for width, height in ((86, 58), (85, 57)):  # bilinear doubling, pixel centres aligned, cropped
        expected = image.zoom(2, 2).conv(BILINEAR, precision="float").crop(0, 0, width, height).numpy()
        np.testing.assert_allclose(_whole(rowstream.double(_stream(x), width, height)), expected, atol=1e-3)


def test_a_graph_of_streams_holds_a_few_rows_of_each_image():
    """A tall image through halve, blur, double and a sum with itself: the output is the whole-image result, and
    the source never keeps more than a few dozen rows, however tall the image."""
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, (3001, 17, 3), dtype=np.uint8)
    source = _stream(x, seed=6)
    half = rowstream.halve(source)
    smooth = rowstream.double(rowstream.blur(rowstream.halve(half)), half.width, half.height)
    out = rowstream.combine(lambda a, b: a - b, rowstream.combine(lambda h: h.astype(np.float32), half), smooth)
    streamed = _whole(out)
    image = pyvips.Image.new_from_array(x)
    image = image.embed(0, 0, 18, 3002, extend="copy").shrink(2, 2)
    quarter = image.embed(0, 0, 10, 1502, extend="copy").shrink(2, 2).cast("float")  # halved in 8 bits, as halve does
    expected_smooth = quarter.convsep(BINOMIAL, precision="float").zoom(2, 2).conv(
        BILINEAR, precision="float").crop(0, 0, 9, 1501)
    np.testing.assert_allclose(streamed, (image.cast("float") - expected_smooth).numpy(), atol=1e-3)
    assert source.capacity <= 96 and half.capacity <= 96  # of 3001 and 1501 rows
