"""What every stylizer offers the engine, and the layers the IN-based families share."""

from __future__ import annotations

from typing import Generator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .norm import StatsPolicy

__all__ = ["Stylizer", "Conditioning", "Stages", "ReflectConv", "pad_to_valid", "valid_size"]

# One (gamma, beta) pair per instance-norm layer, each [1, C]: what a style means to the network.
Conditioning = Sequence[tuple[Tensor, Tensor]]
# A forward pass that stops at every norm layer: it yields (layer index, activations) and is
# sent back the (mean, var) to normalise them with; it returns the output image.
Stages = Generator[tuple[int, Tensor], tuple[Tensor, Tensor], Tensor]


class Stylizer(nn.Module):
    """A feed-forward, instance-normalised stylization network.

    Subclasses set:
      receptive_radius: how far (full-resolution pixels) an output pixel sees; patches need
                        at least this much context for tiled output to equal whole-image output.
      pad_multiple:     input sides must be multiples of this (the network's total stride).
      min_side:         smallest side the network's own reflect padding accepts.
      norm_channels:    channels of each instance-norm layer, in order.
      eps:              the instance-norm epsilon.
    """

    receptive_radius: int
    pad_multiple: int = 4
    min_side: int = 16
    norm_channels: tuple[int, ...]
    eps: float = 1e-5

    def stages(self, x: Tensor, cond: Conditioning) -> Stages:  # pragma: no cover
        """The network, written once, pausing at each norm layer for its statistics."""
        raise NotImplementedError

    def forward(self, x: Tensor, cond: Conditioning, stats: StatsPolicy) -> Tensor:
        """Run the whole network, each norm layer normalised with what ``stats`` says."""
        stages = self.stages(x, cond)
        index, h = next(stages)
        while True:
            try:
                index, h = stages.send(stats(index, h))
            except StopIteration as done:
                return done.value

    def affine(self, x: Tensor, index: int, cond: Conditioning, stats: tuple[Tensor, Tensor]) -> Tensor:
        """Normalise with the given (mean, var) (float32, any broadcastable shape), then the style's scale/shift.

        In place: the pre-norm activations are not needed once their statistics are known.
        """
        mean, var = stats
        gamma, beta = cond[index]
        scale = gamma.float()[:, :, None, None] * torch.rsqrt(var + self.eps)
        shift = beta.float()[:, :, None, None] - mean * scale
        return x.mul_(scale.to(x.dtype)).add_(shift.to(x.dtype))


class ReflectConv(nn.Module):
    """Reflect-pad by k//2, then convolve: the convolution every layer of these networks uses."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, bias: bool = True):
        super().__init__()
        self.pad = kernel // 2
        self.conv = nn.Conv2d(cin, cout, kernel, stride, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (self.pad,) * 4, mode="reflect"))


def pad_to_valid(x: Tensor, model: Stylizer) -> Tensor:
    """Pad [N,C,H,W] at the bottom/right to sides the network accepts, as the whole-image reference does.

    Reflect where the image is large enough, edge replication otherwise (tiny images).
    """
    h, w = x.shape[-2:]
    ph, pw = valid_size(h, model) - h, valid_size(w, model) - w
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def valid_size(n: int, model: Stylizer) -> int:
    m = model.pad_multiple
    return max(-(-n // m) * m, model.min_side)
