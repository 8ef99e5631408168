"""The command line as a user meets it: outputs, naming, and one-line errors."""

from __future__ import annotations

import signal
import resource
import subprocess
import sys

import numpy as np
import pytest
import pyvips
import tifffile

from conftest import ROOT, resized, run_cli, with_alpha_ramp


@pytest.fixture(scope="module")
def photo_300(tmp_path_factory, photo):
    return resized(photo, tmp_path_factory.mktemp("cli") / "photo.png", 300, 200)


def _no_traceback(proc):
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout


def test_version_and_help():
    assert run_cli("--version", check=True).stdout.startswith("urst ")
    help_text = run_cli("stylize", "--help", check=True).stdout
    for option in ("--style", "--output", "--stats", "--patch-size", "--overlap", "--batch-size", "--device",
                   "--compression", "--pyramid", "--quiet", "--overwrite"):
        assert option in help_text


def test_every_option_has_help():
    import typer.main

    from urst_cli.cli import app

    group = typer.main.get_command(app)
    for name, command in group.commands.items():
        assert command.help, f"command {name} has no help"
        for param in command.params:
            if param.param_type_name == "option":
                assert param.help, f"{name} {param.opts} has no help"


def test_stylize_writes_tiled_bigtiff(tmp_path, photo_300, painting):
    out = tmp_path / "out.tif"
    proc = run_cli("stylize", photo_300, "--style", painting, "-o", out, "--patch-size", "256", check=True)
    assert "wrote" in proc.stderr and proc.stdout == ""
    with tifffile.TiffFile(out) as tif:
        assert tif.is_bigtiff
        page = tif.pages[0]
        assert page.is_tiled and page.shape == (200, 300, 3)
        pixels = page.asarray()
    assert pixels.std() > 10  # a picture, not a flat colour
    img = pyvips.Image.new_from_file(str(out))
    assert (img.width, img.height, img.bands) == (300, 200, 3)
    np.testing.assert_array_equal(img.numpy(), pixels)


def test_default_output_never_overwrites(tmp_path, photo_300, painting):
    src = tmp_path / "big.png"
    src.write_bytes(photo_300.read_bytes())
    style = tmp_path / "monet.jpg"
    style.write_bytes(painting.read_bytes())
    for expected in ("big_monet.tif", "big_monet-2.tif"):
        run_cli("stylize", src, "--style", style, "-q", check=True)
        assert (tmp_path / expected).is_file()


def test_alpha_is_carried_untouched(tmp_path, photo_300, painting):
    src, alpha = with_alpha_ramp(photo_300, tmp_path / "rgba.png")
    out = tmp_path / "rgba.tif"
    run_cli("stylize", src, "-s", painting, "-o", out, "--patch-size", "256", check=True)
    result = pyvips.Image.new_from_file(str(out)).numpy()
    assert result.shape == (200, 300, 4)
    np.testing.assert_array_equal(result[..., 3], alpha)


@pytest.mark.parametrize("size", [(1001, 333), (37, 2900), (1, 1)])
def test_odd_sizes(tmp_path, photo_300, painting, size):
    src = resized(photo_300, tmp_path / "odd.png", *size)
    out = tmp_path / "odd.tif"
    run_cli("stylize", src, "-s", painting, "-o", out, "--patch-size", "512", check=True)
    img = pyvips.Image.new_from_file(str(out))
    assert (img.width, img.height) == size


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp"])
def test_other_formats(tmp_path, photo_300, painting, suffix):
    out = tmp_path / f"out{suffix}"
    run_cli("stylize", photo_300, "-s", painting, "-o", out, "--model", "magenta", check=True)
    assert pyvips.Image.new_from_file(str(out)).width == 300


def test_multistyle_preset_and_pyramid(tmp_path, photo_300):
    out = tmp_path / "p.tif"
    run_cli("stylize", photo_300, "--preset", "19", "-o", out, "--pyramid",
            "--tile-size", "128", "--compression", "jpeg", check=True)
    with tifffile.TiffFile(out) as tif:
        assert len(tif.series[0].levels) >= 2


def _error(proc, code: int, words: str):
    _no_traceback(proc)
    assert proc.returncode == code, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:") and words in lines[0], proc.stderr


def test_user_errors_are_one_line(tmp_path, photo_300, painting):
    fake = tmp_path / "notes.jpg"
    fake.write_text("this is not a picture\n")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    exists = tmp_path / "exists.tif"
    exists.write_bytes(b"keep me")
    _error(run_cli("stylize", tmp_path / "missing.jpg", "-s", painting), 3, "no such file")
    _error(run_cli("stylize", tmp_path, "-s", painting), 3, "directory")
    _error(run_cli("stylize", fake, "-s", painting, "-o", tmp_path / "o.tif"), 3, "not an image")
    _error(run_cli("stylize", empty, "-s", painting, "-o", tmp_path / "o.tif"), 3, "empty")
    _error(run_cli("stylize", photo_300, "-s", fake, "-o", tmp_path / "o.tif"), 3, "not an image")
    _error(run_cli("stylize", photo_300, "-s", painting, "-o", exists), 4, "already exists")
    assert exists.read_bytes() == b"keep me"
    _error(run_cli("stylize", photo_300, "-s", painting, "-o", photo_300, "--overwrite"), 4, "is the input")
    _error(run_cli("stylize", photo_300, "-s", painting, "-o", tmp_path / "nodir" / "o.tif"), 4, "does not exist")
    _error(run_cli("stylize", photo_300, "-s", painting, "-o", tmp_path / "o.bmp"), 4, "unsupported output")
    _error(run_cli("stylize", photo_300, "-o", tmp_path / "o.tif"), 2, "--style")
    _error(run_cli("stylize", photo_300, "-s", painting, "-o", tmp_path / "o.tif", "--model", "nope"), 1,
           "unknown model")
    _error(run_cli("stylize", photo_300, "-s", painting, "-o", tmp_path / "o.tif", "--patch-size", "130"), 2,
           "--patch-size")
    _error(run_cli("stylize", photo_300, "-s", painting, "-o", tmp_path / "o.tif", "--max-pixels", "1000"), 3,
           "--max-pixels")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.png", "exists.tif", "notes.jpg"]


def test_full_disk_leaves_nothing(tmp_path, photo_300, painting):
    """A file-size limit makes every write past 64 KiB fail, as a full disk would."""
    out = tmp_path / "o.tif"

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    proc = subprocess.run([sys.executable, "-m", "urst_cli", "stylize", str(photo_300), "-s", str(painting),
                           "-o", str(out), "--compression", "none"], capture_output=True, text=True,
                          preexec_fn=limit, timeout=300)
    _error(proc, 4, "cannot write")
    assert list(tmp_path.iterdir()) == []


def test_quiet_prints_nothing(tmp_path, photo_300, painting):
    proc = run_cli("stylize", photo_300, "-s", painting, "-o", tmp_path / "q.tif", "-q", check=True)
    assert proc.stdout == "" and proc.stderr == ""


def test_no_visible_seams(tmp_path, photo, painting):
    """Gradient on patch-boundary lines is no stronger than elsewhere (sampled statistics, small patches)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from seams import seam_ratio

    src = resized(photo, tmp_path / "p.png", 1200, 900)
    out = tmp_path / "s.tif"
    run_cli("stylize", src, "-s", painting, "-o", out, "--stats", "sampled", "--patch-size", "256", check=True)
    assert seam_ratio(pyvips.Image.new_from_file(str(out)).numpy(), 256, 64) <= 1.03


def test_compressions_work_or_are_refused_up_front(tmp_path, photo_300):
    """Every advertised TIFF compression either writes a readable file or fails at once with one line."""
    from urst_cli.writer import COMPRESSIONS, tiff_compression_available

    for compression in COMPRESSIONS:
        out = tmp_path / f"{compression}.tif"
        proc = run_cli("stylize", photo_300, "--preset", "1", "-o", out, "--compression", compression, "-q")
        if tiff_compression_available(compression):
            assert proc.returncode == 0, proc.stderr
            assert pyvips.Image.new_from_file(str(out)).width == 300
        else:
            _error(proc, 2, "cannot write it")
            assert not out.exists()
