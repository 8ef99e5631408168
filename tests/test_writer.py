"""The writer on its own: row blocks in, a file that other readers decode to the same pixels."""

from __future__ import annotations

import numpy as np
import pytest
import pyvips
import tifffile

from urst_cli import writer
from urst_cli.writer import OutputSpec, write_rows


def _blocks(image: np.ndarray, rows: int):
    return (image[top: top + rows] for top in range(0, image.shape[0], rows))


def _pixels(path) -> np.ndarray:
    img = pyvips.Image.new_from_file(str(path))
    return np.ndarray(buffer=img.write_to_memory(), dtype=np.uint8, shape=(img.height, img.width, img.bands))


@pytest.mark.parametrize("encoders", [1, 3])
@pytest.mark.parametrize("compression", ["deflate", "none"])
@pytest.mark.parametrize("height, width, bands, block_rows", [(75, 131, 3, 7), (33, 20, 4, 64), (1, 1, 3, 1)])
def test_own_tiff_tiles_round_trip(tmp_path, monkeypatch, photo, compression, height, width, bands, block_rows,
                                   encoders):
    """Odd sizes, partial edge tiles, blocks that straddle tile rows, tiles encoded in one thread or in
    several (as on a many-core machine): libvips and tifffile read the same pixels."""
    monkeypatch.setattr(writer, "ENCODERS", encoders)
    rgb = pyvips.Image.new_from_file(str(photo)).crop(0, 0, width, height)
    image = np.ndarray(buffer=rgb.write_to_memory(), dtype=np.uint8, shape=(height, width, 3))
    if bands == 4:
        image = np.concatenate([image, np.arange(height * width, dtype=np.uint8).reshape(height, width, 1)], axis=2)
    out = tmp_path / "out.tif"
    write_rows(_blocks(image, block_rows), width, height, bands, OutputSpec(out, compression, tile_size=16))
    assert np.array_equal(_pixels(out), image)
    with tifffile.TiffFile(out) as tiff:
        page = tiff.pages[0]
        assert tiff.is_bigtiff and page.is_tiled and (page.tilewidth, page.tilelength) == (16, 16)
        assert page.compression == (8 if compression == "deflate" else 1)
        assert page.predictor == (2 if compression == "deflate" else 1)
        assert np.array_equal(page.asarray(), image)
        if bands == 4:
            assert page.extrasamples == (2,)  # unassociated alpha, as libvips writes it


def test_deflate_shrinks_flat_areas(tmp_path):
    """Runs of equal predictor residuals are run-length coded: a flat image costs almost nothing."""
    flat = np.full((512, 512, 4), (200, 120, 40, 255), np.uint8)
    out = tmp_path / "flat.tif"
    write_rows(_blocks(flat, 64), 512, 512, 4, OutputSpec(out))
    assert out.stat().st_size < flat.nbytes / 100


@pytest.mark.parametrize("suffix", [".tif", ".png"])
def test_blocks_may_be_views_of_two_buffers_taking_turns(tmp_path, photo, suffix):
    """The engine hands over band rows without copies: each block is done with before the block after the next
    one is asked for, so a producer that scribbles over the buffer it reuses at once changes nothing."""
    rgb = pyvips.Image.new_from_file(str(photo)).crop(0, 0, 300, 200)
    image = np.ndarray(buffer=rgb.write_to_memory(), dtype=np.uint8, shape=(200, 300, 3))
    buffers = [np.empty((40, 300, 3), np.uint8) for _ in range(2)]

    def reused():
        for k, top in enumerate(range(0, 200, 40)):
            buffers[k % 2].fill(255)  # what the engine does to the block before last: overwrite it
            buffers[k % 2][:] = image[top: top + 40]
            yield buffers[k % 2]

    out = tmp_path / f"out{suffix}"
    write_rows(reused(), 300, 200, 3, OutputSpec(out, tile_size=16))
    assert np.array_equal(_pixels(out), image)
