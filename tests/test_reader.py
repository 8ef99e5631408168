"""BandReader: bands of the padded frame, read top to bottom through one reused buffer."""

from __future__ import annotations

import numpy as np
import pyvips

from urst_cli.reader import BandReader, padded_index, reflects

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
    for top, bottom in [(0, 100), (60, 160), (150, 200), (300, 340), (310, 470), (440, 528)]:
        band = reader.read(top, bottom)
        np.testing.assert_array_equal(band, expected[top:bottom], err_msg=f"rows {top}-{bottom}")
