"""The CUDA path against the CPU one. Runs where torch sees a GPU (the lent device machines); skipped elsewhere."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import pyvips
import torch

from conftest import resized, run_cli
from urst_cli.engine import Runner
from urst_cli.job import Job, conditioning, load_model, run
from urst_cli.writer import OutputSpec

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def photo_1mp(tmp_path_factory, photo) -> Path:
    return resized(photo, tmp_path_factory.mktemp("cuda") / "photo.png", 1200, 800)


def _stylize(src: Path, dest: Path, painting: Path, **options) -> np.ndarray:
    run(Job(input=src, output=OutputSpec(dest), styles=[painting], overwrite=True, **options))
    return pyvips.Image.new_from_file(str(dest)).numpy().astype(np.int16)


def _difference(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    d = np.abs(a - b)
    print(f"mean |diff| {d.mean():.3f} levels, p99 {np.percentile(d, 99):.0f}, max {d.max()}")
    return float(d.mean()), float(np.percentile(d, 99))


@pytest.mark.parametrize("stats", ["auto", "sampled", "exact", "thumbnail"])
def test_float32_on_cuda_matches_cpu(tmp_path, photo_1mp, painting, stats):
    """Same tiling, same statistics estimator: only the device differs (cuDNN may use TF32)."""
    same = {"stats": stats, "patch_size": 512, "batch_size": 2, "precision": "float32"}
    cpu = _stylize(photo_1mp, tmp_path / "cpu.tif", painting, device="cpu", **same)
    gpu = _stylize(photo_1mp, tmp_path / "gpu.tif", painting, device="cuda", **same)
    mean, p99 = _difference(cpu, gpu)
    assert mean < 0.5 and p99 <= 3


def test_defaults_on_cuda_stay_close_to_cpu(tmp_path, photo_1mp, painting):
    """bf16 autocast, 1024 px patches and a batch sized from free memory: the CUDA defaults."""
    cpu = _stylize(photo_1mp, tmp_path / "cpu.tif", painting, device="cpu", precision="float32")
    gpu = _stylize(photo_1mp, tmp_path / "gpu.tif", painting, device="cuda")
    mean, p99 = _difference(cpu, gpu)
    assert mean < 1.5 and p99 <= 8


def test_staging_buffers_work_in_and_out_of_inference_mode(photo_1mp, painting):
    """The pinned buffers may first be made inside inference mode (statistics) and refilled outside it (tiles)."""
    job = Job(input=photo_1mp, output=OutputSpec(Path("unused.tif")), styles=[painting], device="cuda")
    model = load_model(job, torch.device("cuda"))
    runner = Runner(model, conditioning(job, model, torch.device("cuda")), torch.device("cuda"))
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, 256, (n, 64, 96, 3), dtype=np.uint8) for n in (4, 2, 3, 1, 4)]
    for k, pixels in enumerate(batches):
        if k % 2 == 0:
            with torch.inference_mode():
                x = runner.to_tensor(pixels)
        else:
            x = runner.to_tensor(pixels)
        expected = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255
        torch.testing.assert_close(x.cpu(), expected)


@pytest.mark.parametrize("megapixels", [4, 12])
def test_default_job_stays_under_2_gib_of_gpu_memory(tmp_path, photo, painting, megapixels):
    """Whole-image statistics are only chosen while that pass fits the same budget as the tiles."""
    side = (megapixels * 1e6 / 6) ** 0.5
    src = resized(photo, tmp_path / "photo.png", round(3 * side), round(2 * side))
    torch.cuda.reset_peak_memory_stats()
    result = run(Job(input=src, output=OutputSpec(tmp_path / "out.tif"), styles=[painting], device="cuda"))
    peak = torch.cuda.max_memory_allocated() / 2**20
    print(f"{megapixels} MP: stats {result.stats_mode}, peak GPU {peak:.0f} MiB")
    assert peak <= 2048


def test_info_measures_a_batchs_gpu_memory(photo_1mp):
    """`urst info` on CUDA says what one batch of patches takes on this GPU, measured, within the 1.5 GiB budget."""
    facts = json.loads(run_cli("info", photo_1mp, "--json", "--device", "cuda", check=True).stdout)["urst"]
    assert facts["device"] == "cuda" and facts["patch"] == 1024 and facts["batch"] >= 1
    assert 0 < facts["gpu_batch_mib"] <= 1536 and facts["peak_rss_mib_estimate"] > 1000
