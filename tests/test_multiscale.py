"""Multi-scale stylization (--stroke-scale): levels, the low-band composition, and jobs end to end."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import pyvips
import tifffile

from urst_cli.engine import stylize_rows
from urst_cli.errors import UrstError
from urst_cli.job import Job, prepare, run
from urst_cli.models import valid_size
from urst_cli.multiscale import halve, plan_levels, restore, shift_low_band
from urst_cli.reader import BandReader, read_style, read_whole
from urst_cli.stats import whole_stats
from urst_cli.writer import OutputSpec

from conftest import resized, run_cli, wait_for, with_alpha_ramp


def _sizes(width, height, scale):
    return [(level.index, level.width, level.height) for level in plan_levels(width, height, scale)]


def test_levels_are_octaves_down_to_the_models_own_scale():
    assert _sizes(8000, 5333, "auto") == [(3, 1000, 667), (2, 2000, 1334), (1, 4000, 2667), (0, 8000, 5333)]
    assert _sizes(1536, 1000, "auto") == [(0, 1536, 1000)]  # small enough to paint whole: single-scale
    assert _sizes(1537, 1001, "auto") == [(1, 769, 501), (0, 1537, 1001)]
    assert _sizes(1, 100_000, "auto") == [(0, 1, 100_000)]  # a thin image gets what its short side allows
    assert _sizes(1000, 800, "1") == [(0, 1000, 800)]
    assert _sizes(1000, 800, "3") == _sizes(1000, 800, "4") == [(2, 250, 200), (1, 500, 400), (0, 1000, 800)]
    for bad in ("0.5", "nan", "big", "-2"):
        with pytest.raises(UrstError, match="--stroke-scale"):
            plan_levels(1000, 800, bad)
    with pytest.raises(UrstError, match="at most 2"):
        plan_levels(300, 200, "4")


def _image(array: np.ndarray) -> pyvips.Image:
    return pyvips.Image.new_from_array(array).copy(interpretation="srgb")


def test_content_takes_the_coarse_levels_low_band():
    rng = np.random.default_rng(1)
    x = rng.integers(40, 200, (37, 51, 3), dtype=np.uint8)  # odd sides
    coarse = halve(_image(x))
    assert (coarse.width, coarse.height) == (26, 19)
    # nothing to move when the coarse image is x's own average, and a constant moves as a constant
    np.testing.assert_array_equal(shift_low_band(_image(x), coarse).numpy(), x)
    moved = shift_low_band(_image(x), (coarse + 20).cast("uchar")).numpy().astype(int)
    assert np.abs(moved - x - 20).max() <= 1
    # a step in the coarse image arrives smoothed: no overshoot, nothing beyond the step's range
    step = np.zeros((40, 40, 3), np.uint8) + 100
    target = np.full((20, 20, 3), 100, np.uint8)
    target[:, 10:] = 200
    out = shift_low_band(_image(step), _image(target)).numpy().astype(int)
    assert out.min() >= 100 and out.max() <= 200
    assert out[:, :12].mean() < 130 and out[:, -12:].mean() > 170


def _restored(x: np.ndarray, coarse: np.ndarray, tmp_path: Path, coarsest: np.ndarray | None = None) -> np.ndarray:
    """restore()'s output for the painted rows ``x``, fed in blocks, with coarser levels saved as the job saves them."""
    files = []
    for name, level in (("coarse", coarse), ("coarsest", coarsest)):
        if level is not None:  # a new name each call: libvips caches the files it opened
            files.append(tmp_path / f"{name}-{len(list(tmp_path.iterdir()))}.tif")
            _image(level).tiffsave(str(files[-1]), tile=True, tile_width=16, tile_height=16)
    transform = restore(files[0], coarsest=(files[1], 2) if coarsest is not None else None)
    blocks = (x[top: top + 10] for top in range(0, len(x), 10))
    return np.concatenate(list(transform(blocks, x.shape[1], x.shape[0]))).astype(int)


def test_restore_gives_back_the_coarser_levels_band(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.integers(40, 200, (67, 90, 4), dtype=np.uint8)  # with alpha, passed through
    coarse, coarsest = halve(_image(x[..., :3])).numpy(), halve(halve(_image(x[..., :3]))).numpy()
    assert coarsest.shape == (17, 23, 3)
    np.testing.assert_array_equal(_restored(x, coarse, tmp_path), x)
    np.testing.assert_array_equal(_restored(x, coarse, tmp_path, coarsest), x)
    moved = _restored(x, (coarse + 20).astype(np.uint8), tmp_path)
    assert np.abs(moved[..., :3] - x[..., :3] - 20).max() <= 1 and (moved[..., 3] == x[..., 3]).all()
    # the coarser level's band comes back in luminance only: a change of colour at equal luminance does not...
    hue = np.array([22, -8, -16])  # BT.601 luminance +0.06
    moved = _restored(x, (coarse + hue).astype(np.uint8), tmp_path)
    assert np.abs(moved - x).max() <= 1
    # ...but the coarsest level's band brings its colour too
    moved = _restored(x, coarse, tmp_path, (coarsest + hue).astype(np.uint8))
    assert np.abs(moved[..., :3] - x[..., :3] - hue).max() <= 1
    # the coarsest level's band alone: a constant moves as a constant...
    moved = _restored(x, coarse, tmp_path, (coarsest - 25).astype(np.uint8))
    assert np.abs(moved[..., :3] - x[..., :3] + 25).max() <= 1
    # ...and what it moves is smooth: a checkerboard in the coarsest level barely reaches full resolution
    board = (np.indices((17, 23)).sum(axis=0) % 2 * 40 - 20)[..., None].repeat(3, axis=2)
    moved = _restored(x, coarse, tmp_path, (coarsest + board).clip(0, 255).astype(np.uint8))
    assert np.abs(moved - x)[8:-8, 8:-8].max() <= 6


@pytest.fixture(scope="module")
def photo_512(tmp_path_factory, photo):
    return resized(photo, tmp_path_factory.mktemp("ms") / "photo.png", 512, 344)


def test_stroke_scale_1_is_the_single_scale_pass(tmp_path, photo_512, painting):
    """--stroke-scale 1 writes exactly what the engine's single pass over the input makes (the code before
    multi-scale stylization existed did just that)."""
    out = tmp_path / "one.tif"
    job = Job(input=photo_512, output=OutputSpec(out), styles=[painting], stroke_scale="1")
    run(job)
    runner, plan = prepare(job).for_image(job)  # the job's precision: bf16 where the CPU is fast and close in it
    pw, ph = valid_size(512, runner.model), valid_size(344, runner.model)
    stats = whole_stats(runner, read_whole(photo_512))
    expected = np.concatenate(list(stylize_rows(BandReader(photo_512, pw, ph), runner, stats, plan)))
    np.testing.assert_array_equal(tifffile.imread(out), expected)


def _leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


def test_four_times_larger_strokes_end_to_end(tmp_path, photo_512, painting):
    for name in ("a.tif", "b.tif"):
        proc = run_cli("stylize", photo_512, "-s", painting, "-o", tmp_path / name, "--stroke-scale", "4", check=True)
        assert "levels 128x86" in proc.stderr and "256x172" in proc.stderr, proc.stderr
    assert _leftovers(tmp_path, {"a.tif", "b.tif"}) == []  # the level files are gone
    a, b = tifffile.imread(tmp_path / "a.tif"), tifffile.imread(tmp_path / "b.tif")
    np.testing.assert_array_equal(a, b)  # deterministic
    single = tmp_path / "single.tif"
    run_cli("stylize", photo_512, "-s", painting, "-o", single, "--stroke-scale", "1", check=True)
    single = tifffile.imread(single).astype(float)
    assert a.shape == (344, 512, 3) and a.std() > 10
    # larger strokes: seen whole (reduced 4x) the painting differs from the single-scale one, at 100% both paint
    assert np.abs(a.astype(float) - single).mean() > 10


def test_every_output_format_and_colours_and_alpha(tmp_path, photo_512, painting):
    src, alpha = with_alpha_ramp(photo_512, tmp_path / "rgba.png")
    out = tmp_path / "out.png"
    run_cli("stylize", src, "-s", painting, "-o", out, "--stroke-scale", "2", "--preserve-color", check=True)
    result = pyvips.Image.new_from_file(str(out)).numpy()
    np.testing.assert_array_equal(result[..., 3], alpha)

    def chroma(pixels):
        p = pixels[..., :3].astype(float)
        y = p @ np.array([0.299, 0.587, 0.114])
        return np.stack([p[..., 2] - y, p[..., 0] - y], axis=-1)

    unclipped = ((result[..., :3] > 0) & (result[..., :3] < 255)).all(axis=-1)  # clipping moves chroma
    assert unclipped.mean() > 0.9
    # the photo's colours, pixel by pixel
    assert np.abs(chroma(result) - chroma(read_whole(photo_512)))[unclipped].max() <= 1.5
    pyramid = tmp_path / "pyramid.tif"
    run_cli("stylize", photo_512, "-s", painting, "-o", pyramid, "--stroke-scale", "2", "--pyramid", check=True)
    assert pyvips.Image.new_from_file(str(pyramid)).width == 512


@pytest.mark.parametrize("stats", ["exact", "sampled", "thumbnail"])
def test_every_statistics_mode(tmp_path, photo_512, stats):
    out = tmp_path / "out.tif"
    run_cli("stylize", photo_512, "--preset", "7", "-o", out, "--stroke-scale", "2", "--stats", stats,
            "--patch-size", "256", check=True)
    assert tifffile.imread(out).std() > 10


def _start(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "urst_cli", "stylize", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def photo_1600(tmp_path_factory, photo):
    return resized(photo, tmp_path_factory.mktemp("ms") / "photo.png", 1600, 1066)


def test_killed_between_levels_resumes_to_the_same_bytes(tmp_path, photo_1600, painting):
    job = ("-s", painting, "--stroke-scale", "4", "-q")
    reference = tmp_path / "reference.tif"
    run_cli("stylize", photo_1600, "-o", reference, *job, check=True)
    out = tmp_path / "out.tif"
    levels = tmp_path / ".out.tif.urst-resume" / "levels"
    proc = _start(photo_1600, "-o", out, *job, "--resume")
    assert wait_for(lambda: (levels / "level-2.tif").exists(), proc, interval=0.005), proc.communicate()[1]
    proc.kill()  # the coarsest level is done, the next one under way
    proc.wait()
    assert not out.exists() and not (levels / "level-1.tif").exists()
    proc = run_cli("stylize", photo_1600, "-o", out, *job[:-1], "--resume", check=True)
    assert "400x267 resumed" in proc.stderr, proc.stderr  # a finished level is not painted again
    np.testing.assert_array_equal(tifffile.imread(out), tifffile.imread(reference))
    assert _leftovers(tmp_path, {"out.tif", "reference.tif"}) == []


def test_interrupted_between_levels_leaves_nothing(tmp_path, photo_1600, painting):
    src = tmp_path / "in.png"
    src.write_bytes(photo_1600.read_bytes())
    proc = _start(src, "-s", painting, "-o", tmp_path / "out.tif", "--stroke-scale", "4")
    assert wait_for(lambda: any(p.glob("level-2.tif") for p in tmp_path.glob(".out.tif.*.levels")), proc,
                    interval=0.005)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Interrupted" in stderr and "Traceback" not in stderr, stderr
    assert _leftovers(tmp_path, {"in.png"}) == []


def test_style_scale_reads_the_painting_larger(painting):
    square = read_style(painting, 256, square=True)
    zoomed = read_style(painting, 256, square=True, scale=2)
    assert square.shape == zoomed.shape == (256, 256, 3)
    # the zoomed square is the centre half of the plain one, enlarged twice
    centre = pyvips.Image.new_from_array(square[64:192, 64:192]).resize(2).numpy()
    assert np.abs(zoomed.astype(float) - centre).mean() < 12 < np.abs(zoomed.astype(float) - square).mean()
    assert max(read_style(painting, 512, square=False, scale=0.5).shape[:2]) == 256


def test_style_scale_is_checked(tmp_path, photo_512, painting):
    for args, words in ((("-s", painting, "--style-scale", "0.5"), "at least 1 for model 'magenta'"),
                        (("--preset", "2", "--style-scale", "2"), "models that take --style")):
        proc = run_cli("stylize", photo_512, "-o", tmp_path / "o.tif", *args)
        assert proc.returncode == 2 and words in proc.stderr, proc.stderr


def test_a_corrupt_input_found_while_halving_is_an_input_error(tmp_path, photo, painting):
    """The photo pyramid decodes the whole input first: a truncated JPEG ends there in one line, exit 3, and
    leaves nothing beside the output."""
    whole = resized(photo, tmp_path / "whole.jpg", 2000, 1340).read_bytes()
    src = tmp_path / "cut.jpg"
    src.write_bytes(whole[: len(whole) // 3])
    proc = run_cli("stylize", src, "-s", painting, "-o", tmp_path / "out.tif")
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.strip().splitlines() == [f"Error: {src}: image data unreadable (VipsJpeg: premature end of "
                                                "JPEG image)"]
    assert _leftovers(tmp_path, {"whole.jpg", "cut.jpg"}) == []
