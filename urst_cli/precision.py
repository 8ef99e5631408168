"""Which precision a job's network runs in: bf16 autocast where it is faster and the picture stays close.

On CUDA bf16 is the default (the tensor cores). On a CPU it is faster only where the CPU computes
bf16 in hardware (AVX512-BF16 or AMX on x86, the BF16 extension on Arm; elsewhere oneDNN emulates it,
slower than float32): measured 1.26x for ``magenta`` on a Zen 4 and 1.61x on an AMX Xeon (512 px
window). bf16 moves the output, though, by an amount that depends on the network and the style, so
on such a CPU one check window of the shipped photo runs both ways, and bf16 is taken only if its
output stays within the error the CUDA default is held to: mean |bf16 - float32| <= 1 level of 255
and 99th percentile <= 4 levels. The check costs ~0.5 s (a new shape's kernels are built for both
precisions), so its result is kept in the user's cache, per CPU, torch version, weights and style.
Statistics stay float32 either way.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .models import Conditioning, PerInstance, Stylizer, pad_to_valid, user_cache_dir
from .resume import tensor_digest

__all__ = ["MAX_MEAN_LEVELS", "MAX_P99_LEVELS", "CHECK_SIDE", "Closeness", "native_bfloat16", "bfloat16_closeness",
           "cached_closeness", "check_window"]

MAX_MEAN_LEVELS = 1.0  # mean |bf16 - float32| of the check window's output, in 8-bit levels
MAX_P99_LEVELS = 4.0   # its 99th percentile
CHECK_SIDE = 256       # the check window's side: ~8 ms for magenta, ~0.25 s for the VGG models, per precision
REFERENCE_PHOTO = Path(__file__).resolve().parent / "data" / "sunset_hills.jpg"


@dataclass(frozen=True)
class Closeness:
    """How far bf16 output is from float32 output, in 8-bit levels."""

    mean: float
    p99: float
    max: float

    @property
    def acceptable(self) -> bool:
        return self.mean <= MAX_MEAN_LEVELS and self.p99 <= MAX_P99_LEVELS


def native_bfloat16() -> bool:
    """Whether this CPU computes bf16 in hardware, where bf16 convolutions beat float32 ones."""
    if platform.machine().lower() in ("x86_64", "amd64", "x86", "i686"):
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())  # Arm: true only with the BF16 extension


@lru_cache(maxsize=1)
def check_window() -> np.ndarray:
    """The check window: a CHECK_SIDE crop from the middle of the shipped photo (hills, sky and the sun's
    flare), uint8 [CHECK_SIDE, CHECK_SIDE, 3]."""
    import pyvips

    photo = pyvips.Image.thumbnail(str(REFERENCE_PHOTO), 1024)  # shrink-on-load: a few ms
    return photo.crop((photo.width - CHECK_SIDE) // 2, (photo.height - CHECK_SIDE) // 2, CHECK_SIDE,
                      CHECK_SIDE).numpy()


@torch.inference_mode()
def bfloat16_closeness(model: Stylizer, cond: Conditioning, window: np.ndarray | None = None) -> Closeness:
    """The network's bf16 output against its float32 output on ``window`` (default: ``check_window``), each
    normalised by its own statistics, as a whole image would be."""
    pixels = check_window() if window is None else window
    x = pad_to_valid(torch.from_numpy(np.ascontiguousarray(pixels[..., :3])).permute(2, 0, 1)[None].float() / 255,
                     model).contiguous(memory_format=torch.channels_last)
    exact = model(x, cond, PerInstance(model)).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast = model(x, cond, PerInstance(model)).float()
    levels = (_to_levels(exact) - _to_levels(fast)).abs().flatten()
    return Closeness(float(levels.mean()), float(torch.quantile(levels, 0.99)), float(levels.max()))


def _to_levels(image: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> the 8-bit levels the job would write (rounded as the engine rounds), as float."""
    return (image * 255 + 0.5).clamp_(0, 255).floor_()


def cached_closeness(model: Stylizer, cond: Conditioning) -> Closeness:
    """``bfloat16_closeness`` on the check window, measured once per CPU, torch version, network, weights and style,
    and kept in the user's cache (best effort: an unwritable cache only means measuring again)."""
    cache = user_cache_dir() / "precision.json"
    key = hashlib.sha256(json.dumps([_cpu_name(), torch.__version__, type(model).__qualname__,
                                     tensor_digest(model.state_dict().values()),
                                     tensor_digest(t for layer in cond for t in layer)]).encode()).hexdigest()
    try:
        known = json.loads(cache.read_text())
        return Closeness(**known[key])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    closeness = bfloat16_closeness(model, cond)
    try:
        known = json.loads(cache.read_text()) if cache.is_file() else {}
    except (OSError, ValueError):
        known = {}
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        aside = cache.with_name(f".{cache.name}.{os.getpid()}")
        aside.write_text(json.dumps({**known, key: asdict(closeness)}, indent=1))
        os.replace(aside, cache)
    except OSError:
        pass
    return closeness


def _cpu_name() -> str:
    """The CPU's model name and its bf16 features (a VM may show only "AMD EPYC")."""
    name = platform.processor()
    try:
        name = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{name} {platform.machine()} native bf16 {native_bfloat16()}"
