"""CAP-VSTNet: content affinity preserved versatile style transfer (Wen et al., CVPR 2023).

Layout as published in linfengWen98/CAP-VSTNet (models/RevResNet.py, models/cWCT.py), so its checkpoints
load unchanged (``art_image.pt`` and ``photo_image.pt``, and the video ones: the ``state_dict`` inside).
``RevResNet(nBlocks=[10, 10, 10], nStrides=[1, 2, 2], nChannels=[16, 64, 256])``: injective padding (RGB
plus 29 zero channels, split into two halves of 16), 30 reversible residual blocks (y1 = x1 + F(x2), the
pair swapped; the stride-2 blocks squeeze both halves 2x2 into channels), then channel refinement (two
more blocks on the 512 channels at 1/4 size, spread back by ``sp_steps`` unsqueezes): the latent is 32
channels at full size ("photorealistic", hidden_dim 16, sp_steps 2) or 128 at half size ("artistic",
hidden_dim 64, sp_steps 1). The two checkpoints share every key and shape; which one a file is must be
said on import (``--name``).

Stylizing is cWCT on the latent (the content's covariance a statistics layer, the style's colouring
matrix the conditioning, as for ``wct --transform cwct``), then the exact inverse of the network: every
block undone by x1 = y1 - F(x2) with the same F. The photorealistic checkpoint keeps the photo's
structure (content affinity): urst's first photorealistic option.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .base import Conditioning, Stages, Stylizer, run_layers
from .vgg import WhiteningColouring

__all__ = ["CapVST", "capvst_condition", "squeeze", "unsqueeze"]

STYLE_SIDE = 512
VARIANTS = {"photorealistic": 2, "artistic": 1}  # unsqueezes after channel refinement (sp_steps)
STACK = ((16, 1), (64, 2), (256, 2))  # (channels, first block's stride) of the three groups of ten blocks
BLOCKS_PER_GROUP = 10
REFINEMENT_CHANNELS = 256
INPUT_CHANNELS = 16  # half of the injectively padded input: RGB and 13 zeros, then 16 zeros


def squeeze(x: Tensor) -> Tensor:
    """[N,C,H,W] -> [N,4C,H/2,W/2]: channel (2 * row offset + column offset) * C + c, as RevResNet's; one copy,
    channels-last (the convolutions' fast layout)."""
    n, c, h, w = x.shape
    blocks = x.view(n, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 3, 5, 1)   # [n, h/2, w/2, 2, 2, c]
    return blocks.reshape(n, h // 2, w // 2, 4 * c).permute(0, 3, 1, 2)


def unsqueeze(x: Tensor) -> Tensor:
    """The inverse of ``squeeze``, channels-last."""
    n, c, h, w = x.shape
    blocks = x.permute(0, 2, 3, 1).reshape(n, h, w, 2, 2, c // 4).permute(0, 1, 3, 2, 4, 5)  # [n, h, 2, w, 2, c/4]
    return blocks.reshape(n, 2 * h, 2 * w, c // 4).permute(0, 3, 1, 2)


class _Block(nn.Module):
    """``residual_block``: F is pad-conv(stride)-ReLU-pad-conv-ReLU-pad-conv, channels/4 wide inside."""

    def __init__(self, channels: int, stride: int = 1):
        super().__init__()
        self.stride = stride
        cin, hidden = (channels if stride == 1 else channels // 4), channels // 4
        self.conv = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(cin, hidden, 3, stride), nn.ReLU(),
                                  nn.ReflectionPad2d(1), nn.Conv2d(hidden, hidden, 3), nn.ReLU(),
                                  nn.ReflectionPad2d(1), nn.Conv2d(hidden, channels, 3))

    def forward_pair(self, x1: Tensor, x2: Tensor, reflect: bool) -> tuple[Tensor, Tensor]:
        """(x1, x2) -> (x2, x1 + F(x2)), both squeezed first in a stride-2 block."""
        fx2 = run_layers(self.conv, x2, reflect)
        if self.stride == 2:
            x1, x2 = squeeze(x1), squeeze(x2)
        return x2, fx2.add_(x1)

    def inverse_pair(self, x2: Tensor, y1: Tensor, reflect: bool) -> tuple[Tensor, Tensor]:
        """(x2, y1) -> (y1 - F(x2), x2), unsqueezed in a stride-2 block."""
        if self.stride == 2:
            x2 = unsqueeze(x2)
        x1 = y1.sub_(run_layers(self.conv, x2, reflect))
        return (unsqueeze(x1), x2) if self.stride == 2 else (x1, x2)


class _ChannelRefinement(nn.Module):
    def __init__(self):
        super().__init__()
        self.block_list = nn.ModuleList([_Block(REFINEMENT_CHANNELS) for _ in range(2)])


class CapVST(WhiteningColouring, Stylizer):
    """image [N,3,H,W] in [0,1], sides multiples of 4 -> stylized [N,3,H,W] (clamped by the caller).

    Conditioning: [(colouring matrix [C,C], style mean [1,C], alpha [1])] of the style's latent.
    """

    transform = "cwct"
    pad_multiple = 4
    min_side = 16
    receptive_radius = 464  # bound: 232 px each way (30 + 2 blocks); measured 452 (latent 231), see tests
    # covering 464 px of context costs ~25x the model's work in windows that fit 1 GiB; --overlap 472 for exact
    default_context = 64
    float32_only = True  # the inverse subtracts F(x2) from y1: bf16 rounding of every sum would stay in the image
    cpu_whole_pixels = 500_000  # a whole 1 MP pass (encoder to the latent) peaked at 1.00 GiB
    max_cpu_patch = 512  # 576 px windows (8 x the overlap) peaked at 1029 MiB on a 4000x3000 photo

    def __init__(self, variant: str = "photorealistic"):
        super().__init__()
        self.variant = variant
        self.unsqueezes = VARIANTS[variant]
        self.stack = nn.ModuleList([_Block(channels, stride if k == 0 else 1)
                                    for channels, stride in STACK for k in range(BLOCKS_PER_GROUP)])
        self.channel_reduction = _ChannelRefinement()
        self.norm_channels = (2 * REFINEMENT_CHANNELS // 4 ** self.unsqueezes,)
        self.reflect = True  # False only on a zero_padded_copy

    def encode(self, x: Tensor) -> Tensor:
        """RGB [N,3,H,W] -> latent [N,32,H,W] (photorealistic) or [N,128,H/2,W/2] (artistic)."""
        n, _, h, w = x.shape
        x1 = torch.cat([x, x.new_zeros(n, INPUT_CHANNELS - 3, h, w)], dim=1)
        x1 = x1.contiguous(memory_format=torch.channels_last)
        x2 = torch.zeros_like(x1)
        for block in (*self.stack, *self.channel_reduction.block_list):
            x1, x2 = block.forward_pair(x1, x2, self.reflect)
        z = torch.cat([x1, x2], dim=1)
        for _ in range(self.unsqueezes):
            z = unsqueeze(z)
        return z

    def decode(self, z: Tensor) -> Tensor:
        """The exact inverse of ``encode``."""
        for _ in range(self.unsqueezes):
            z = squeeze(z)
        x1, x2 = (half.contiguous(memory_format=torch.channels_last) for half in z.chunk(2, dim=1))
        for block in reversed((*self.stack, *self.channel_reduction.block_list)):
            x1, x2 = block.inverse_pair(x1, x2, self.reflect)
        return x1[:, :3]

    def stages(self, x: Tensor, cond: Conditioning) -> Stages:
        z = self.encode(x)
        mean, whiten = yield 0, z
        latent = self.recolour(z, mean, whiten, cond[0])
        del z  # not kept through the inverse
        return self.decode(latent)


def capvst_condition(net: CapVST, styles: Sequence[np.ndarray], alpha: float, context=None) -> list[Conditioning]:
    """One conditioning per style image (uint8 RGB, cropped to multiples of 4 as the authors resize it)."""
    device = next(net.parameters()).device
    latents = []
    for style in styles:
        style = style[: style.shape[0] // 4 * 4, : style.shape[1] // 4 * 4]
        x = torch.from_numpy(np.ascontiguousarray(style)).permute(2, 0, 1)[None].float().div(255).to(device)
        latents.append(net.encode(x).flatten(2)[0].double())
    return net.style_conditions(latents, alpha)
