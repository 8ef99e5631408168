"""The model registry: a name maps to a network, the weight files that fill it and how a style conditions it.

Adding a method is one module in this package and one ``ModelSpec`` entry below.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Protocol

import numpy as np
import torch
from torch import nn

from ..errors import EXIT_USAGE, UrstError
from .base import Conditioning, Stylizer, mix, pad_to_valid, valid_size, zero_padded_copy
from .capvst import CapVST, capvst_condition
from .johnson import TransformerNet, johnson_condition
from .linear import LinearTransfer, linear_condition
from .magenta import PREDICTOR_SIZE, StylePredictor, StyleTransformer, magenta_condition
from .msgnet import STYLE_SIZE as MSGNET_STYLE_SIZE, MSGNet, msgnet_condition
from .multistyle import NUM_PRESETS, MultiStyleTransformer, preset_condition
from .null import Passthrough, passthrough_condition
from .norm import Box, NormLayers, NormStats, PerInstance, Probe, ProbeDone, Replay, StatsPolicy, collect
from .sanet import SANet, sanet_condition
from .vgg import STYLE_SIDE, WCT, AdaIN, adain_condition, wct_condition

__all__ = [
    "ModelSpec", "REGISTRY", "AUXILIARY", "get_spec", "load_parts", "load_weights", "check_state", "part_module",
    "part_stems", "variant", "missing_parts", "packaged_weights_dir", "user_cache_dir", "user_weights_dir",
    "find_weights", "Stylizer", "Conditioning", "mix", "NormStats", "NormLayers", "StatsPolicy", "PerInstance",
    "Replay", "Probe", "ProbeDone", "collect", "Box", "pad_to_valid", "valid_size", "zero_padded_copy",
    "PREDICTOR_SIZE", "NUM_PRESETS", "NULL_MODEL",
]


class StyleContext(Protocol):
    """What a conditioner may ask of the job besides the style images."""

    def load_auxiliary(self, name: str) -> nn.Module: ...

    def content_square(self) -> np.ndarray: ...


@dataclass(frozen=True)
class ModelSpec:
    name: str
    summary: str
    style: Literal["image", "preset", "none"]  # what conditions it: --style images, --preset numbers, or nothing
    parts: dict[str, str]                       # weight file stem -> the submodule it fills ("" = the whole network)
    build: Callable[..., Stylizer]
    condition: Callable[..., list[Conditioning]]  # (network, styles, alpha, StyleContext) -> one per style
    style_side: int = 0                           # style images are read at this long side...
    style_square: bool = False                    # ...or as a centre square of that side
    strength: bool = True                         # --alpha means something for it
    source: str = "shipped with urst"             # where a user gets the weights
    named_weights: bool = False                   # one weight file per style: --weights NAME picks it
    # published variants of one network, each its own files ("{name}" in parts) and built as
    # build(variant=NAME): --weights NAME picks one, the first by default
    variants: tuple[str, ...] = ()
    mixable: bool = True                          # several styles mix as a weighted sum of conditionings


NULL_MODEL = "null"  # no network: measures the pipeline around one (see models/null.py)
_VGG_PARTS = {"vgg_normalised": "encoder", "vgg_decoder": "decoder"}
_VGG_SOURCE = "vgg_normalised.pth + decoder.pth of naoto0804/pytorch-AdaIN: urst weights import FILE --model adain"

REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("magenta", "Magenta arbitrary style (any painting as --style), conditional IN", "image",
                  {"magenta_transformer": ""}, StyleTransformer, magenta_condition, PREDICTOR_SIZE, True),
        ModelSpec("multistyle26", "26 built-in styles (--preset 0-25), conditional IN", "preset",
                  {"multistyle26": ""}, MultiStyleTransformer, preset_condition, strength=False),
        ModelSpec("adain", "AdaIN: VGG-19 relu4_1 encoder, adaptive IN, decoder (any painting as --style)", "image",
                  _VGG_PARTS, AdaIN, adain_condition, STYLE_SIDE, source=_VGG_SOURCE),
        ModelSpec("wct", "WCT at relu4_1 on the AdaIN encoder/decoder; --transform cwct: Cholesky (CAP-VSTNet)",
                  "image", _VGG_PARTS, WCT, wct_condition, STYLE_SIDE, source=_VGG_SOURCE),
        ModelSpec("johnson", "Johnson per-style network (PyTorch fast_neural_style .pth; --weights NAME)", "none",
                  {"johnson-{name}": ""}, TransformerNet, johnson_condition, strength=False,
                  source="a fast_neural_style .pth: urst weights import FILE --model johnson", named_weights=True),
        ModelSpec("capvst", "CAP-VSTNet: reversible network, cWCT on its latent (--weights photorealistic: urst's "
                  "first photorealistic option, keeps the photo's structure; --weights artistic)", "image",
                  {"capvst_{name}": ""}, CapVST, capvst_condition, STYLE_SIDE,
                  source="photo_image.pt / art_image.pt of linfengWen98/CAP-VSTNet: urst weights import "
                         "photo_image.pt --model capvst --name photorealistic (art_image.pt: --name artistic)",
                  variants=("photorealistic", "artistic")),
        ModelSpec("sanet", "SANet: style attention at relu4_1 and relu5_1 on the VGG-19 encoder (one --style)",
                  "image", {"vgg_normalised_relu5_1": "encoder", "sanet_decoder": "decoder",
                            "sanet_transformer": "transform"}, SANet, sanet_condition, STYLE_SIDE, strength=False,
                  source="vgg_normalised.pth + decoder_iter_500000.pth + transformer_iter_500000.pth of "
                         "GlebSBrykin/SANET: urst weights import FILE --model sanet", mixable=False),
        ModelSpec("linear", "Linear style transfer: learned transformation matrix at relu4_1 (--weights r41) or "
                  "relu3_1 (r31)", "image", {"linear_vgg_{name}": "encoder", "linear_decoder_{name}": "decoder",
                                              "linear_matrix_{name}": "matrix"}, LinearTransfer, linear_condition,
                  STYLE_SIDE, strength=False,
                  source="vgg_r41.pth + dec_r41.pth + r41.pth (or the r31 ones) of sunshineatnoon/"
                         "LinearStyleTransfer: urst weights import FILE --model linear", variants=("r41", "r31")),
        ModelSpec("msgnet", "MSG-Net: CoMatch layer with the style's Gram matrix (any painting as --style)", "image",
                  {"msgnet": ""}, MSGNet, msgnet_condition, MSGNET_STYLE_SIZE, True, strength=False,
                  source="21styles.model of zhanghang1989/PyTorch-Multi-Style-Transfer: urst weights import "
                         "21styles.model --model msgnet"),
        ModelSpec(NULL_MODEL, "no network: the input passes through unchanged (measures urst's own pipeline)",
                  "none", {}, Passthrough, passthrough_condition, strength=False, source="urst: none are needed"),
    )
}
# weight files of networks that are not part of a stylizer; each builds the module its file fills
AUXILIARY: dict[str, Callable[[], nn.Module]] = {"magenta_predictor": StylePredictor}


def get_spec(name: str) -> ModelSpec:
    if name not in REGISTRY:
        raise UrstError(f"unknown model '{name}'; choose one of: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def packaged_weights_dir() -> Path:
    """The weights shipped inside the package, else the repository's weights/ (editable installs)."""
    packaged = Path(__file__).resolve().parents[1] / "weights"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "weights"


def user_cache_dir() -> Path:
    """urst's folder in the user's cache: $XDG_CACHE_HOME/urst (~/.cache/urst)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "urst"


def user_weights_dir() -> Path:
    """Where imported weights live: $URST_WEIGHTS, else $XDG_CACHE_HOME/urst/weights (~/.cache/urst/weights)."""
    if os.environ.get("URST_WEIGHTS"):
        return Path(os.environ["URST_WEIGHTS"])
    return user_cache_dir() / "weights"


def find_weights(stem: str, user_dir: Path | None = None) -> Path | None:
    """``stem``.safetensors in the user's weights directory, else among the shipped ones."""
    for folder in (user_dir or user_weights_dir(), packaged_weights_dir()):
        path = folder / f"{stem}.safetensors"
        if path.is_file():
            return path
    return None


def variant(spec: ModelSpec, name: str | None = None) -> str | None:
    """For a model with variants, the one ``name`` picks (the first if None), checked; otherwise ``name``."""
    if not spec.variants:
        return name
    if name is not None and name not in spec.variants:
        raise UrstError(f"--weights {name}: model '{spec.name}' has {' and '.join(spec.variants)}", EXIT_USAGE)
    return name or spec.variants[0]


def part_stems(spec: ModelSpec, name: str | None = None) -> dict[str, str]:
    """The weight file stems a model needs (a per-style model's stem includes the style's name, a variant's its own)."""
    name = variant(spec, name)
    return {stem.format(name=name or "NAME"): attr for stem, attr in spec.parts.items()}


def missing_parts(spec: ModelSpec, name: str | None = None, user_dir: Path | None = None) -> list[str]:
    """The weight files a model (variant) needs that are installed nowhere."""
    return [f"{stem}.safetensors" for stem in part_stems(spec, name) if find_weights(stem, user_dir) is None]


def _build(spec: ModelSpec, name: str | None, options: dict | None = None) -> Stylizer:
    return spec.build(**(options or {}), **({"variant": name} if spec.variants else {}))


def part_module(stem: str) -> nn.Module:
    """An empty module of the layout that weight file ``stem`` fills."""
    if stem in AUXILIARY:
        return AUXILIARY[stem]()
    for spec in REGISTRY.values():
        for name in spec.variants or (None,):
            for pattern, attr in spec.parts.items():
                fits = pattern.format(name=name) == stem if spec.variants else \
                    pattern == stem or "{name}" in pattern and stem.startswith(pattern.split("{")[0])
                if fits:
                    net = _build(spec, name)
                    return net.get_submodule(attr) if attr else net
    raise KeyError(stem)


def check_state(module: nn.Module, state: dict, what: str) -> None:
    """Refuse, in one line naming the expected layout, a state dict whose keys or shapes differ from ``module``'s."""
    expected = module.state_dict()
    missing, unexpected = sorted(expected.keys() - state.keys()), sorted(state.keys() - expected.keys())
    wrong = [f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})" for k, v in expected.items()
             if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or wrong:
        layout = ", ".join(f"{k} {tuple(v.shape)}" for k, v in list(expected.items())[:3])
        problems = "; ".join(p for p in (
            f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}" if missing else "",
            f"unexpected {', '.join(unexpected[:3])}{' ...' if len(unexpected) > 3 else ''}" if unexpected else "",
            f"wrong shape {', '.join(wrong[:2])}" if wrong else "") if p)
        raise UrstError(f"{what} does not fit the network ({problems}); expected {len(expected)} tensors "
                        f"starting {layout}")


def _load_file(stem: str, user_dir: Path | None, hint: str) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = find_weights(stem, user_dir)
    if path is None:
        raise UrstError(f"weights '{stem}' are not installed: {hint}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise UrstError(f"weights file {path} is unreadable ({exc}); import it again") from None


def load_parts(spec: ModelSpec, device: torch.device, name: str | None = None, user_dir: Path | None = None,
               options: dict | None = None) -> Stylizer:
    """Build ``spec``'s network (variant ``name``) and fill it from its weight files (user directory first, then
    shipped)."""
    net = _build(spec, variant(spec, name), options)
    for stem, attr in part_stems(spec, name).items():
        state = _load_file(stem, user_dir, f"needs {stem}.safetensors, from {spec.source}")
        target = net.get_submodule(attr) if attr else net
        check_state(target, state, f"weights '{stem}'")
        target.load_state_dict(state)
    return net.eval().requires_grad_(False).to(device)


def load_weights(stem: str, device: torch.device, user_dir: Path | None = None) -> nn.Module:
    """The module that weight file ``stem`` fills, filled (e.g. the style predictor, or one stylizer's file)."""
    module = part_module(stem)
    state = _load_file(stem, user_dir, "reinstall urst, or import it (urst weights import)")
    check_state(module, state, f"weights '{stem}'")
    module.load_state_dict(state)
    return module.eval().requires_grad_(False).to(device)
