"""The model registry: a name maps to a network, its weight files and the kind of style it takes.

Adding a method is one module in this package and one ``ModelSpec`` line below.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch
from torch import nn

from ..errors import UrstError
from .base import Conditioning, Stylizer, pad_to_valid, valid_size
from .magenta import PREDICTOR_SIZE, StylePredictor, StyleTransformer
from .multistyle import NUM_PRESETS, MultiStyleTransformer
from .norm import Box, NormStats, PerInstance, Probe, ProbeDone, Replay, StatsPolicy, collect

__all__ = [
    "ModelSpec", "REGISTRY", "get_spec", "load_module", "load_state_into", "weights_dir", "Stylizer",
    "Conditioning", "NormStats", "StatsPolicy", "PerInstance", "Replay", "Probe", "ProbeDone", "collect",
    "Box", "pad_to_valid", "valid_size", "PREDICTOR_SIZE", "NUM_PRESETS",
]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    summary: str
    style: Literal["image", "preset"]  # what --style means for this model
    weights: str                        # safetensors file (stem) in the weights directory
    build: Callable[[], Stylizer]


REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("magenta", "Magenta arbitrary style (any painting as --style), conditional IN",
                  "image", "magenta_transformer", StyleTransformer),
        ModelSpec("multistyle26", "26 built-in styles (--preset 0-25), conditional IN",
                  "preset", "multistyle26", MultiStyleTransformer),
    )
}
# networks that are not stylizers but ship weights too
AUXILIARY: dict[str, Callable[[], nn.Module]] = {"magenta_predictor": StylePredictor}


def get_spec(name: str) -> ModelSpec:
    if name not in REGISTRY:
        raise UrstError(f"unknown model '{name}'; choose one of: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def weights_dir() -> Path:
    """$URST_WEIGHTS, else the weights shipped inside the package, else the repository's weights/."""
    if os.environ.get("URST_WEIGHTS"):
        return Path(os.environ["URST_WEIGHTS"])
    packaged = Path(__file__).resolve().parents[1] / "weights"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "weights"


def _builder(weights_name: str) -> Callable[[], nn.Module]:
    for spec in REGISTRY.values():
        if spec.weights == weights_name:
            return spec.build
    return AUXILIARY[weights_name]


def load_state_into(weights_name: str, state: dict[str, np.ndarray | torch.Tensor]) -> nn.Module:
    """Build the module that owns ``weights_name`` and load ``state``, checking every key and shape."""
    module = _builder(weights_name)()
    expected = module.state_dict()
    missing, unexpected = sorted(expected.keys() - state.keys()), sorted(state.keys() - expected.keys())
    wrong = [f"{k}: {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
             if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or wrong:
        raise UrstError(f"weights '{weights_name}' do not fit the network: missing {missing[:3]}, "
                        f"unexpected {unexpected[:3]}, wrong shapes {wrong[:3]}")
    module.load_state_dict({k: torch.as_tensor(np.array(v)) for k, v in state.items()})
    return module.eval().requires_grad_(False)


def load_module(weights_name: str, device: torch.device) -> nn.Module:
    """Load a network's weights from the weights directory onto ``device``."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = weights_dir() / f"{weights_name}.safetensors"
    if not path.is_file():
        raise UrstError(f"weights file missing: {path} (run `make weights`, or set URST_WEIGHTS)")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise UrstError(f"weights file {path} is unreadable: {exc}") from None
    return load_state_into(weights_name, state).to(device)
