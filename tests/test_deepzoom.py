"""DeepZoom (.dzi, .szi) and IIIF output: streamed rows in, a pyramid that appears whole or not at all."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import pyvips

from urst_cli.deepzoom import read_descriptor
from urst_cli.errors import UrstError
from urst_cli.writer import OutputSpec, check_output, write_rows

from conftest import run_cli

WIDTH, HEIGHT = 1300, 700  # three tiles across, two down at full resolution


@pytest.fixture(scope="module")
def image(photo) -> np.ndarray:
    return pyvips.Image.new_from_file(str(photo)).crop(0, 0, WIDTH, HEIGHT).numpy()


def _blocks(image: np.ndarray, rows: int = 64):
    return (image[top: top + rows] for top in range(0, image.shape[0], rows))


def _decoded(data: bytes) -> np.ndarray:
    return pyvips.Image.new_from_buffer(data, "").numpy()


def _jpeg_error(expected: np.ndarray, data: bytes) -> float:
    """Mean absolute difference of a tile from the pixels it shows, as a multiple of libvips' own Q90 error."""
    again = _decoded(pyvips.Image.new_from_array(expected).jpegsave_buffer(Q=90))
    reference = np.abs(again.astype(int) - expected).mean()
    return np.abs(_decoded(data).astype(int) - expected).mean() / reference


def _spec(tmp_path: Path, kind: str) -> OutputSpec:
    return OutputSpec(tmp_path / "out", explicit_format="iiif") if kind == "iiif" else \
        OutputSpec(tmp_path / f"out.{kind}")


def test_dzi_tiles_show_the_rows(tmp_path, image):
    write_rows(_blocks(image), WIDTH, HEIGHT, 3, OutputSpec(tmp_path / "out.dzi"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.dzi", "out_files"]
    d = read_descriptor(tmp_path / "out.dzi")
    assert (d.width, d.height, d.tile_size, d.overlap, d.format) == (WIDTH, HEIGHT, 512, 1, "jpeg")
    deepest = tmp_path / "out_files" / "11"  # 2^11 = 2048 >= 1300
    assert sorted(p.name for p in deepest.iterdir()) == sorted(f"{c}_{r}.jpeg" for c in range(3) for r in range(2))
    # tile (1, 1) covers columns 511..1024 and rows 511..700 (one pixel of overlap each side)
    assert _jpeg_error(image[511:, 511:1025], (deepest / "1_1.jpeg").read_bytes()) < 1.05
    assert [p.name for p in (tmp_path / "out_files" / "0").iterdir()] == ["0_0.jpeg"]  # down to one pixel


def test_szi_is_one_zip_of_the_same_pyramid(tmp_path, image):
    write_rows(_blocks(image), WIDTH, HEIGHT, 3, OutputSpec(tmp_path / "out.szi"))
    assert [p.name for p in tmp_path.iterdir()] == ["out.szi"]
    assert read_descriptor(tmp_path / "out.szi").width == WIDTH
    with zipfile.ZipFile(tmp_path / "out.szi") as archive:
        assert "out/out.dzi" in archive.namelist()
        assert _jpeg_error(image[:513, :513], archive.read("out/out_files/11/0_0.jpeg")) < 1.05


def test_iiif_folder(tmp_path, image):
    write_rows(_blocks(image), WIDTH, HEIGHT, 3, _spec(tmp_path, "iiif"))
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    info = json.loads((tmp_path / "out" / "info.json").read_text())
    assert (info["width"], info["height"], info["tiles"][0]["width"]) == (WIDTH, HEIGHT, 512)
    tile = tmp_path / "out" / "512,0,512,512" / "512,512" / "0" / "default.jpg"
    assert _jpeg_error(image[:512, 512:1024], tile.read_bytes()) < 1.05


def test_alpha_is_kept_in_png_tiles(tmp_path, image):
    alpha = np.arange(WIDTH * HEIGHT, dtype=np.uint8).reshape(HEIGHT, WIDTH, 1)
    rgba = np.concatenate([image, alpha], axis=2)
    write_rows(_blocks(rgba), WIDTH, HEIGHT, 4, OutputSpec(tmp_path / "out.dzi"))
    assert read_descriptor(tmp_path / "out.dzi").format == "png"
    assert np.array_equal(_decoded((tmp_path / "out_files" / "11" / "2_0.png").read_bytes()), rgba[:513, 1023:])
    write_rows(_blocks(rgba), WIDTH, HEIGHT, 4, _spec(tmp_path, "iiif"))
    assert json.loads((tmp_path / "out" / "info.json").read_text())["preferredFormats"] == ["png"]


@pytest.mark.parametrize("kind", ["dzi", "szi", "iiif"])
def test_failed_run_leaves_nothing(tmp_path, image, kind):
    def failing():
        yield image[:300]
        raise RuntimeError("the model failed")

    with pytest.raises(RuntimeError):
        write_rows(failing(), WIDTH, HEIGHT, 3, _spec(tmp_path, kind))
    assert list(tmp_path.iterdir()) == []


def test_existing_pyramids_are_replaced_only_when_asked(tmp_path, image, photo):
    spec = OutputSpec(tmp_path / "out.dzi")
    write_rows(_blocks(image[:100, :100]), 100, 100, 3, spec)
    stale = tmp_path / "out_files" / "7" / "stale.jpeg"  # the new pyramid must replace the folder, not merge into it
    stale.write_bytes(b"old")
    (tmp_path / "out.dzi").unlink()  # the folder alone still blocks the output
    with pytest.raises(UrstError, match="out_files: already exists"):
        check_output(spec, photo, WIDTH, HEIGHT, overwrite=False)
    check_output(spec, photo, WIDTH, HEIGHT, overwrite=True)
    write_rows(_blocks(image), WIDTH, HEIGHT, 3, spec)
    assert read_descriptor(tmp_path / "out.dzi").width == WIDTH
    assert (tmp_path / "out_files" / "11" / "2_1.jpeg").is_file() and not stale.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.dzi", "out_files"]


def test_a_folder_urst_did_not_write_is_never_replaced(tmp_path, photo):
    photos = tmp_path / "out_files"
    photos.mkdir()
    (photos / "holiday.jpg").write_bytes(b"...")
    for spec in (OutputSpec(tmp_path / "out.dzi"), OutputSpec(photos, explicit_format="iiif")):
        with pytest.raises(UrstError, match="is a directory that urst did not write"):
            check_output(spec, photo, WIDTH, HEIGHT, overwrite=True)


def test_staging_folders_of_killed_runs_are_removed(tmp_path, image):
    dead = subprocess.Popen(["true"])
    dead.wait()  # its pid is free: the run that made the folder is gone
    orphan = tmp_path / f".out.szi.{dead.pid}.partial"
    (orphan / "out_files" / "0").mkdir(parents=True)
    write_rows(_blocks(image), WIDTH, HEIGHT, 3, OutputSpec(tmp_path / "out.szi"))
    assert [p.name for p in tmp_path.iterdir()] == ["out.szi"]


def test_stylize_writes_pyramids_by_format(tmp_path, small_photo):
    """--format names pyramids for folder outputs, as the extension does for files."""
    run_cli("stylize", small_photo, "--preset", "1", "-o", f"{tmp_path}/out/", "--format", "szi", check=True)
    made = tmp_path / "out" / "small_preset1.szi"
    assert [p.name for p in (tmp_path / "out").iterdir()] == [made.name]
    assert (read_descriptor(made).width, read_descriptor(made).height) == (384, 256)


def test_stylize_writes_iiif_folders(tmp_path, small_photo):
    """-o NAME.iiif (or --format iiif) is an IIIF folder; run again with --overwrite it is replaced, not written into."""
    out = tmp_path / "one.iiif"
    for again in ([], ["--overwrite"]):
        proc = run_cli("stylize", small_photo, "--preset", "1", "-o", out, "--json", *again, check=True)
        [done] = [e for e in map(json.loads, proc.stdout.splitlines()) if e["event"] == "file_done"]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["one.iiif"]
        assert (read_descriptor(out).width, read_descriptor(out).height) == (384, 256)
        assert done["bytes"] == sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    run_cli("stylize", small_photo, "--preset", "1", "-o", f"{tmp_path}/out/", "--format", "iiif", check=True)
    assert json.loads((tmp_path / "out" / "small_preset1.iiif" / "info.json").read_text())["width"] == 384


@pytest.mark.parametrize("kind", ["dzi", "szi", "iiif"])
def test_any_file_name(tmp_path, image, kind):
    """Brackets (which libvips reads as options in a file name), dots and spaces are only a name."""
    name = "a [Q=5].b" + ("" if kind == "iiif" else f".{kind}")
    write_rows(_blocks(image), WIDTH, HEIGHT, 3, OutputSpec(tmp_path / name, explicit_format=kind))
    assert read_descriptor(tmp_path / name).width == WIDTH
    expected = {"dzi": [name, "a [Q=5].b_files"], "szi": [name], "iiif": [name]}[kind]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(expected)
