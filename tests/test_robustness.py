"""Nothing lost, nothing broken: resume after kill -9, signals, determinism, hostile input, fuzzing."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import pyvips

from conftest import ROOT, resized, run_cli, wait_for

sys.path.insert(0, str(Path(__file__).parent))
import fuzz  # noqa: E402


@pytest.fixture(scope="module")
def tall(tmp_path_factory, photo) -> Path:
    """400x1600 with 224-px patches: 20 band rows, so there are many points to stop at."""
    return resized(photo, tmp_path_factory.mktemp("tall") / "tall.png", 400, 1600)


JOB = ("--preset", "3", "--patch-size", "224", "--quiet")


def _start(src: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "urst_cli", "stylize", str(src), "-o", str(out), *JOB, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _rows_done(out: Path) -> int:
    try:
        return json.loads((out.parent / f".{out.name}.urst-resume" / "progress.json").read_text())["rows"]
    except (OSError, ValueError):
        return 0


def test_kill_9_then_resume_gives_the_same_bytes(tmp_path, tall):
    reference = tmp_path / "reference.tif"
    run_cli("stylize", tall, "-o", reference, *JOB, check=True)
    out = tmp_path / "out.tif"
    journal = tmp_path / ".out.tif.urst-resume"
    # killed: while starting (before any row), after the first band row, mid-way, and near the end
    for point in (None, 1, 700, 1400):
        proc = _start(tall, out, "--resume")
        if point is None:
            reached = wait_for(lambda: (journal / "state.json").exists(), proc)
        else:
            reached = wait_for(lambda: _rows_done(out) >= point, proc)
        assert reached, proc.communicate()[1]
        proc.kill()
        proc.wait()
        assert not out.exists()
        if point == 1:  # a resume with other settings is refused, saying what differs, and changes nothing
            done = _rows_done(out)
            proc = run_cli("stylize", tall, "-o", out, *JOB[2:], "--preset", "4", "--resume")
            assert proc.returncode == 2 and "differs in style" in proc.stderr, proc.stderr
            assert _rows_done(out) == done
    run_cli("stylize", tall, "-o", out, *JOB, "--resume", check=True)
    assert out.read_bytes() == reference.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tif", "reference.tif"]  # journal and partials gone


def test_same_inputs_give_the_same_bytes(tmp_path, photo):
    src = resized(photo, tmp_path / "p.png", 333, 251)
    for name in ("a.tif", "b.tif"):
        run_cli("stylize", src, "--preset", "5", "-o", tmp_path / name, "--stats", "sampled", "-q", check=True)
    assert (tmp_path / "a.tif").read_bytes() == (tmp_path / "b.tif").read_bytes()


@pytest.mark.parametrize("sig, code, word", [(signal.SIGTERM, 143, "Terminated"), (signal.SIGINT, 130, "Interrupted")])
def test_signals_stop_cleanly(tmp_path, tall, sig, code, word):
    src = tmp_path / "in.png"
    src.write_bytes(tall.read_bytes())
    out = tmp_path / "out.tif"
    proc = _start(src, out)
    # stop it while it writes: its partial file exists
    assert wait_for(lambda: any(p.name.endswith(".partial") for p in tmp_path.iterdir()), proc), proc.communicate()
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert word in stderr and "Traceback" not in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]


def test_input_is_never_written(tmp_path, photo):
    src = resized(photo, tmp_path / "p.png", 200, 150)
    src.chmod(0o444)
    before = (hashlib.sha256(src.read_bytes()).hexdigest(), src.stat().st_mtime_ns)
    run_cli("stylize", src, "--preset", "1", "-o", tmp_path / "o.tif", "-q", check=True)
    assert (hashlib.sha256(src.read_bytes()).hexdigest(), src.stat().st_mtime_ns) == before
    link = tmp_path / "link.tif"
    link.symlink_to(src)
    proc = run_cli("stylize", src, "--preset", "1", "-o", link, "--overwrite")
    assert proc.returncode == 4 and "is the input" in proc.stderr


def _error(proc, code: int, words: str) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == code and len(lines) == 1 and words in lines[0], proc.stderr


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(tag: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + tag + data + zlib.crc32(tag + data).to_bytes(4, "big")
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def test_hostile_inputs_end_in_one_line(tmp_path, photo, painting):
    good = resized(photo, tmp_path / "good.png", 120, 80)
    img = pyvips.Image.new_from_file(str(good))
    files = {}
    for suffix in ("jpg", "png", "tif"):
        whole = img.write_to_buffer(f".{suffix}")
        files[f"cut.{suffix}"] = whole[: len(whole) // 2]
    files["notes.jpg"] = b"just some text\n" * 10
    files["archive.png"] = zlib.compress(b"not an image at all" * 100)
    files["huge.png"] = _png_header_only(300_000, 300_000)  # 90 gigapixels declared, 100 bytes on disk
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    out = tmp_path / "o.tif"
    for name in ("cut.jpg", "cut.png", "cut.tif", "notes.jpg", "archive.png"):
        _error(run_cli("stylize", tmp_path / name, "--preset", "1", "-o", out), 3, "")
    started = time.monotonic()
    _error(run_cli("stylize", tmp_path / "huge.png", "--preset", "1", "-o", out), 3, "--max-pixels")
    assert time.monotonic() - started < 30  # refused from the header, nothing decoded
    tiny = tmp_path / "tiny.png"
    img.crop(0, 0, 6, 6).write_to_file(str(tiny))
    _error(run_cli("stylize", good, "-s", tiny, "-o", out), 3, "too small")
    _error(run_cli("stylize", good, "-s", tmp_path / "cut.jpg", "-o", out), 3, "style image")
    assert not out.exists() and not list(tmp_path.glob(".*"))


def test_unusual_pixel_formats_are_converted(tmp_path, photo):
    """16-bit, float (linear light), palette, CMYK and a non-sRGB ICC profile read as the same picture;
    grey+alpha becomes RGB with its alpha carried through."""
    from urst_cli.reader import read_whole

    rgb = pyvips.Image.new_from_file(str(resized(photo, tmp_path / "rgb.png", 96, 64)))
    reference = rgb.numpy().astype(np.float64)
    cases = {
        "sixteen.tif": (rgb.cast("ushort") * 257).cast("ushort").copy(interpretation="rgb16"),
        "float.tif": rgb.colourspace("scrgb"),  # float TIFF means linear light (scRGB), as in libvips and Photoshop
        "palette.png": rgb,
    }
    for name, image in cases.items():
        image.write_to_file(str(tmp_path / name), **({"palette": True} if name == "palette.png" else {}))
    rgb.icc_transform("cmyk").jpegsave(str(tmp_path / "cmyk.jpg"), Q=95)
    # saturated colours, where Display P3 numbers differ most from sRGB ones
    vivid = pyvips.Image.new_from_array(np.random.default_rng(1).choice([0, 64, 255], (64, 96, 3)).astype(np.uint8),
                                        interpretation="srgb")
    vivid.icc_transform("p3").write_to_file(str(tmp_path / "p3.png"))
    tolerance = {"sixteen.tif": 0, "float.tif": 0.5, "palette.png": 24, "cmyk.jpg": 24}
    for name, limit in tolerance.items():
        got = read_whole(tmp_path / name).astype(np.float64)
        assert got.shape == reference.shape, name
        assert np.abs(got - reference).mean() <= limit, (name, np.abs(got - reference).mean())
    # the P3 file's raw numbers are far from the sRGB ones: reading it right means honouring its profile
    expected = vivid.numpy().astype(np.float64)
    raw = pyvips.Image.new_from_file(str(tmp_path / "p3.png")).numpy().astype(np.float64)
    assert np.abs(raw - expected).mean() > 10
    assert np.abs(read_whole(tmp_path / "p3.png") - expected).mean() <= 2

    grey = rgb.colourspace("b-w")
    grey.bandjoin(grey.linear(0.5, 7).cast("uchar")).write_to_file(str(tmp_path / "grey_alpha.png"))
    out = tmp_path / "ga.tif"
    run_cli("stylize", tmp_path / "grey_alpha.png", "--preset", "2", "-o", out, "-q", check=True)
    result = pyvips.Image.new_from_file(str(out)).numpy()
    assert result.shape == (64, 96, 4)
    assert np.array_equal(result[..., 3], grey.linear(0.5, 7).cast("uchar").numpy())


def test_one_pixel_wide_and_very_tall(tmp_path, photo):
    src = tmp_path / "line.png"
    img = pyvips.Image.new_from_file(str(photo))
    img.resize(1 / img.width, vscale=100000 / img.height).write_to_file(str(src))
    out = tmp_path / "line.tif"
    run_cli("stylize", src, "--preset", "0", "-o", out, "-q", check=True)
    result = pyvips.Image.new_from_file(str(out))
    assert (result.width, result.height) == (1, 100000)


def test_read_only_output_directory(tmp_path, photo):
    src = resized(photo, tmp_path / "p.png", 64, 48)
    if os.geteuid() == 0:  # root may write into any directory: use a file system that takes no files
        out = Path("/proc/urst-out.tif")
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        out = locked / "o.tif"
    proc = run_cli("stylize", src, "--preset", "1", "-o", out)
    _error(proc, 4, "")
    assert not out.exists()


def _fuzz(tmp_path, photo, every: int) -> None:
    base = pyvips.Image.new_from_file(str(resized(photo, tmp_path / "base.png", 64, 48)))
    sources = {"photo.jpg": base.jpegsave_buffer(Q=90), "photo.png": base.pngsave_buffer(),
               "strips.tif": base.tiffsave_buffer(compression="deflate"),
               "tiles.tif": base.tiffsave_buffer(tile=True, tile_width=16, tile_height=16, compression="lzw")}
    cases = fuzz.corruptions(sources, per_kind=32)[::every]
    case_dir, out_dir = tmp_path / "cases", tmp_path / "out"
    case_dir.mkdir()
    out_dir.mkdir()
    for name, data in cases:
        (case_dir / name).write_bytes(data)
    proc = subprocess.run([sys.executable, str(Path(fuzz.__file__)), str(case_dir), str(out_dir)],
                          capture_output=True, text=True, timeout=60 + 10 * len(cases), cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(results) == len(cases)
    outcomes = {"ok": 0, "refused": 0}
    for r in results:
        assert "Traceback" not in r["stderr"] and "unexpected" not in r["stderr"], r
        if r["code"] == 0:
            assert r["left"] == ["out.tif"] and r["size_ok"], r
            outcomes["ok"] += 1
        else:
            lines = [line for line in r["stderr"].splitlines() if line.strip()]
            assert r["code"] == 3 and len(lines) == 1 and lines[0].startswith("Error:"), r
            assert r["left"] == [], r  # nothing at the output path, no partial file
            outcomes["refused"] += 1
    assert outcomes["refused"] > len(cases) // 4  # the damage is real


def test_fuzz_fast_subset(tmp_path, photo):
    _fuzz(tmp_path, photo, every=8)


@pytest.mark.slow
def test_fuzz_all_512_corruptions(tmp_path, photo):
    _fuzz(tmp_path, photo, every=1)


def test_corrupt_weights_end_in_one_line(tmp_path, photo, painting):
    src = resized(photo, tmp_path / "p.png", 64, 48)
    weights = tmp_path / "weights"
    weights.mkdir()
    for stem in ("vgg_normalised", "vgg_decoder"):
        (weights / f"{stem}.safetensors").write_bytes(np.random.default_rng(0).bytes(5000))
    proc = run_cli("stylize", src, "-m", "adain", "-s", painting, "-o", tmp_path / "o.tif", "--weights-dir", weights)
    _error(proc, 1, "unreadable")
    assert not (tmp_path / "o.tif").exists()
