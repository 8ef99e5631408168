"""BandReader: bands of the padded frame, read top to bottom through one reused buffer."""

from __future__ import annotations

import numpy as np
import pytest
import pyvips

from urst_cli.errors import UrstError
from urst_cli.reader import BandReader, padded_index, prefetched, read_crops, reflects

from conftest import resized


def test_bands_equal_the_padded_image_with_overlaps_skips_and_growth(tmp_path, photo):
    src = resized(photo, tmp_path / "p.png", 301, 517)
    pw, ph = 304, 528
    full = pyvips.Image.new_from_file(str(src)).numpy()
    rows = padded_index(517, ph, reflects(301, 517, pw, ph))
    cols = padded_index(301, pw, reflects(301, 517, pw, ph))
    expected = full[rows][:, cols]
    reader = BandReader(src, pw, ph)
    # overlapping bands, a jump past unread rows, a taller band, then the padded bottom
    previous = None
    for top, bottom in [(0, 100), (60, 160), (150, 200), (300, 340), (310, 470), (440, 528)]:
        band = reader.read(top, bottom)
        np.testing.assert_array_equal(band, expected[top:bottom], err_msg=f"rows {top}-{bottom}")
        # a view of a reader buffer: the padding is filled in place, a band is never copied whole
        assert any(np.shares_memory(band, buf) for buf in reader._bufs)
        if previous is not None:  # two buffers take turns: the band before is still intact
            np.testing.assert_array_equal(previous[0], expected[previous[1]:previous[2]])
        previous = (band, top, bottom)


@pytest.mark.parametrize("decoders", [1, 3])
def test_tiled_bands_decoded_by_several_threads_equal_the_padded_image(tmp_path, photo, decoders):
    """Each thread decodes whole tiles of its own columns; the padding right of the last one is filled after."""
    _, tiled = _photo_and_tiled_copy(tmp_path, photo, "jpeg")
    pw, ph = 304, 528
    expected = _padded_expected(tiled, pw, ph)
    reader = BandReader(tiled, pw, ph, decoders=decoders)
    assert len(reader._columns) == (3 if decoders == 3 else 1)  # 64-px tiles: 128 + 128 + 45 columns
    for top, bottom in [(0, 100), (60, 160), (300, 340), (310, 470), (440, 528)]:  # overlaps, a jump, the bottom
        np.testing.assert_array_equal(reader.read(top, bottom), expected[top:bottom], err_msg=f"rows {top}-{bottom}")
    damaged = bytearray(tiled.read_bytes())  # a thread's decoding error surfaces as the reader's own
    third = len(damaged) // 3
    damaged[third: third + 2000] = b"\xff" * 2000
    (tmp_path / "damaged.tif").write_bytes(damaged)
    with pytest.raises(UrstError, match="cannot read rows"):
        reader = BandReader(tmp_path / "damaged.tif", pw, ph, decoders=decoders)
        for top in range(0, ph, 100):
            reader.read(top, min(top + 128, ph))


def _photo_and_tiled_copy(tmp_path, photo, compression):
    """The photo at 301 x 517 (PNG), and the same pixels in a TIFF of 64 px tiles."""
    src = resized(photo, tmp_path / "p.png", 301, 517)
    tiled = tmp_path / "p.tif"
    pyvips.Image.new_from_file(str(src)).tiffsave(str(tiled), tile=True, tile_width=64, tile_height=64,
                                                  compression=compression)
    return src, tiled


def _padded_expected(src, pw, ph):
    full = pyvips.Image.new_from_file(str(src)).numpy()
    h, w = full.shape[:2]
    reflect = reflects(w, h, pw, ph)
    return full[padded_index(h, ph, reflect)][:, padded_index(w, pw, reflect)]


def test_crops_from_tiled_and_sequential_files_are_the_padded_frame(tmp_path, photo):
    """Tiled TIFFs are read region by region, other files in one pass: same crops, edges padded alike."""
    src, tiled = _photo_and_tiled_copy(tmp_path, photo, "deflate")
    pw, ph = 304, 528
    expected = _padded_expected(src, pw, ph)
    boxes = [(400, 200, 528, 304), (0, 0, 100, 100), (250, 30, 330, 290)]  # the first crosses the padded corner
    for path, is_tiled in [(src, False), (tiled, True)]:
        reader = BandReader(path, pw, ph)
        assert reader.tiled == is_tiled
        for (t, l, b, r), crop in zip(boxes, read_crops(reader, boxes)):
            np.testing.assert_array_equal(crop, expected[t:b, l:r], err_msg=f"{path.name} {t, l, b, r}")


def test_prefetched_bands_equal_direct_reads_and_errors_surface(tmp_path, photo):
    src = resized(photo, tmp_path / "p.png", 200, 300)
    expected = _padded_expected(src, 200, 304)
    spans = [(0, 128), (96, 224), (192, 304)]
    bands = prefetched(BandReader(src, 200, 304), spans)
    for top, bottom in spans:
        np.testing.assert_array_equal(next(bands), expected[top:bottom])
    with pytest.raises(StopIteration):
        next(bands)
    broken = tmp_path / "broken.png"
    broken.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with pytest.raises(UrstError, match="cannot read rows"):
        list(prefetched(BandReader(broken, 200, 304), spans))
