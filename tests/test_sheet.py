"""``urst sheet``: one photo in many styles, labelled, in seconds."""

from __future__ import annotations

import numpy as np
import pyvips

from conftest import resized, run_cli


def test_sheet_with_a_painting_and_the_presets(tmp_path, photo, painting):
    src = resized(photo, tmp_path / "photo.jpg", 900, 600)
    out = tmp_path / "sheet.png"
    proc = run_cli("sheet", src, "-s", painting, "--presets", "--size", "120", "-o", out, check=True)
    assert "wrote" in proc.stderr and "preset 25" in proc.stderr
    sheet = pyvips.Image.new_from_file(str(out)).numpy()
    # 28 cells (the photo, the painting, 26 presets) of 120x80 + a caption strip, 6 across, 8 px apart
    assert sheet.shape[1] == 8 + 6 * 120 + 5 * 8 + 8 and sheet.shape[0] > 5 * 80
    first, second = sheet[8:88, 8:128], sheet[8:88, 136:256]
    original = pyvips.Image.new_from_file(str(src)).resize(120 / 900).numpy()
    assert np.abs(first.astype(int) - original[:80, :120]).mean() < 8   # the photo as it is
    assert np.abs(second.astype(int) - first).mean() > 20               # stylized
    caption = sheet[90:110, 8:128]
    assert (caption < 64).mean() > 0.5 and (caption > 192).any()        # white text on a dark strip
    assert run_cli("sheet", src).returncode == 2                        # nothing to try
