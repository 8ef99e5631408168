"""Johnson et al. (2016) per-style feed-forward networks, as trained by PyTorch's ``fast_neural_style`` example.

One network is one style. Its instance norms carry learned affine parameters, which is
exactly conditional IN with a single fixed style: the conditioning is the norms' own
(gamma, beta), and TIN replaces their per-patch statistics like any other model's.
Module and parameter names match the example's ``TransformerNet`` so its ``.pth`` files
(saved state dicts; old ``running_mean``/``running_var`` entries are dropped on import)
load unchanged. Pixels are 0-255 inside the network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Conditioning, Stages, Stylizer, UpsampleConv

__all__ = ["TransformerNet", "johnson_condition"]


class _Affine(nn.Module):
    """An InstanceNorm2d(affine=True)'s parameters; the normalisation itself is done by ``Stylizer.affine``."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))


class _Residual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1, self.in1 = UpsampleConv(channels, channels, 3), _Affine(channels)
        self.conv2, self.in2 = UpsampleConv(channels, channels, 3), _Affine(channels)


class TransformerNet(Stylizer):
    """image [N,3,H,W] in [0,1], H and W multiples of 4 -> stylized [N,3,H,W] in [0,1] (clamped by the caller)."""

    # 9x9: 4; stride-2 3x3s: 1 + 2; ten 3x3 at stride 4: 40; upsampled 3x3s: 2 + 1; 9x9: 4
    receptive_radius = 54
    norm_channels = (32, 64, 128) + (128,) * 10 + (64, 32)
    eps = 1e-5

    def __init__(self):
        super().__init__()
        self.conv1, self.in1 = UpsampleConv(3, 32, 9), _Affine(32)
        self.conv2, self.in2 = UpsampleConv(32, 64, 3, 2), _Affine(64)
        self.conv3, self.in3 = UpsampleConv(64, 128, 3, 2), _Affine(128)
        for i in range(1, 6):
            self.add_module(f"res{i}", _Residual(128))
        self.deconv1, self.in4 = UpsampleConv(128, 64, 3, upsample=2), _Affine(64)
        self.deconv2, self.in5 = UpsampleConv(64, 32, 3, upsample=2), _Affine(32)
        self.deconv3 = UpsampleConv(32, 3, 9)

    def norms(self) -> list[_Affine]:
        blocks = [getattr(self, f"res{i}") for i in range(1, 6)]
        return [self.in1, self.in2, self.in3] + [n for b in blocks for n in (b.in1, b.in2)] + [self.in4, self.in5]

    def stages(self, x: Tensor, cond: Conditioning) -> Stages:
        x = x * 255.0
        for i, conv in enumerate((self.conv1, self.conv2, self.conv3)):
            x = conv(x)
            x = F.relu_(self.affine(x, i, cond, (yield i, x)))
        for b in range(5):
            block = getattr(self, f"res{b + 1}")
            y = block.conv1(x)
            y = F.relu_(self.affine(y, 3 + 2 * b, cond, (yield 3 + 2 * b, y)))
            y = block.conv2(y)
            x = x + self.affine(y, 4 + 2 * b, cond, (yield 4 + 2 * b, y))
        for i, conv in enumerate((self.deconv1, self.deconv2)):
            x = conv(x)
            x = F.relu_(self.affine(x, 13 + i, cond, (yield 13 + i, x)))
        return self.deconv3(x).div_(255.0)


def johnson_condition(net: TransformerNet, styles: list, alpha: float, context) -> list[Conditioning]:
    """The network's own style (its only one): each norm's learned (gamma, beta), as [1, C]."""
    return [[(n.weight[None], n.bias[None]) for n in net.norms()]]
