"""``urst info``: headers as they are, and what a job would do with them."""

from __future__ import annotations

import json

import pyvips

from conftest import resized, run_cli


def test_info_json_on_bigtiff_pyramid_jpeg_and_png_with_alpha(tmp_path, photo):
    src = pyvips.Image.new_from_file(str(resized(photo, tmp_path / "src.png", 1200, 800)))
    src.tiffsave(str(tmp_path / "big.tif"), tile=True, tile_width=256, tile_height=256, bigtiff=True,
                 compression="deflate")
    src.tiffsave(str(tmp_path / "pyramid.tif"), tile=True, tile_width=128, tile_height=128, pyramid=True,
                 compression="jpeg")
    src.jpegsave(str(tmp_path / "icc.jpg"), profile="srgb")
    alpha = (pyvips.Image.xyz(1200, 800)[0] * 255 / 1199).cast("uchar")
    src.bandjoin(alpha).pngsave(str(tmp_path / "alpha.png"))
    proc = run_cli("info", "--json", *(tmp_path / n for n in ("big.tif", "pyramid.tif", "icc.jpg", "alpha.png")),
                   check=True)
    big, pyramid, jpeg, png = (json.loads(line) for line in proc.stdout.splitlines())
    for facts in (big, pyramid, jpeg, png):
        assert (facts["width"], facts["height"], facts["bit_depth"]) == (1200, 800, 8)
        assert facts["file_bytes"] == (tmp_path / facts["path"].split("/")[-1]).stat().st_size
        plan = facts["urst"]
        assert plan["device"] == "cpu" and plan["patches"] > 1 and plan["stats"] == "whole"  # 0.96 MP: one pass
        assert plan["peak_rss_mib_estimate"] > 500 and plan["gpu_batch_mib"] is None
    assert big["bigtiff"] is True and big["tile"] == [256, 256] and big["compression"] == "adobe_deflate"
    assert pyramid["bigtiff"] is False and [w for w, h in pyramid["levels"]] == [1200, 600, 300, 150, 75]
    assert jpeg["format"] == "jpeg" and jpeg["icc"]["colour_space"] == "RGB" and "sRGB" in jpeg["icc"]["description"]
    assert jpeg["tile"] is None and jpeg["levels"] == [[1200, 800]]
    assert png["alpha"] is True and png["bands"] == 4
    assert png["urst"]["output_bytes_estimate"] == int(1200 * 800 * 4 * 0.75)
    assert big["urst"]["output_bytes_estimate"] == int(1200 * 800 * 3 * 0.75)


def test_info_reads_stdin_and_reports_bad_files(tmp_path, photo):
    src = resized(photo, tmp_path / "p.jpg", 300, 200)
    (tmp_path / "bad.png").write_text("nope")
    proc = run_cli("info", "-", tmp_path / "bad.png", "--json", stdin=src.read_bytes())
    good, bad = (json.loads(line) for line in proc.stdout.splitlines())
    assert proc.returncode == 5 and good["path"] == "-" and good["width"] == 300
    assert bad["exit_code"] == 3 and "not an image" in bad["error"]
    text = run_cli("info", src, check=True).stdout
    assert "300x200" in text and "patches" in text


def test_info_counts_every_multiscale_level(tmp_path):
    """A 4000x3000 image is painted at 1000x750, 2000x1500, then at full size: every pass's patches are counted."""
    pyvips.Image.black(4000, 3000, bands=3).tiffsave(str(tmp_path / "big.tif"), tile=True, compression="deflate")
    pyvips.Image.black(1000, 750, bands=3).tiffsave(str(tmp_path / "small.tif"), tile=True, compression="deflate")
    proc = run_cli("info", "--json", tmp_path / "big.tif", tmp_path / "small.tif", check=True)
    big, small = (json.loads(line)["urst"] for line in proc.stdout.splitlines())
    assert big["levels"] == [[1000, 750], [2000, 1500], [4000, 3000]] and small["levels"] == [[1000, 750]]
    assert big["patches"] > 16 * small["patches"]  # 1 + 4 + 16 times the small one's pixels
    assert "in 3 levels (1000x750, 2000x1500, 4000x3000)" in run_cli("info", tmp_path / "big.tif", check=True).stdout
