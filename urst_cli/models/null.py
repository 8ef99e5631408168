"""The null model: no network at all; every window passes through unchanged.

A job with it does everything urst does around a network (reading, cutting windows, the upload,
blending, the 8-bit conversion and download, writing), so ``urst bench --model null`` (or
``--baseline-host`` beside a real model) measures the host pipeline's ceiling on any machine.
Its output is the input, byte for byte, whatever the tiling: a test of the blend weights.
"""

from __future__ import annotations

from torch import Tensor

from .base import Conditioning, Stages, Stylizer

__all__ = ["Passthrough", "passthrough_condition"]


class Passthrough(Stylizer):
    """[N,3,H,W] in [0,1] -> a copy of it (a fresh tensor, as a network's output would be). No norm layers."""

    receptive_radius = 0
    norm_channels = ()

    def stages(self, x: Tensor, cond: Conditioning) -> Stages:
        yield from ()  # no norm layer to pause at
        return x.clone()


def passthrough_condition(net: Passthrough, styles: list, alpha: float, context) -> list[Conditioning]:
    """Nothing to condition: one empty conditioning per (absent) style."""
    return [[] for _ in styles]
