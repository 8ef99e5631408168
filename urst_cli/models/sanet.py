"""SANet: style-attentional networks (Park & Lee, CVPR 2019).

Layouts as published with the trained weights (GlebSBrykin/SANET, Eval.py; dypark86/SANET): the
normalised VGG-19 (``vgg_normalised.pth``, the AdaIN file, used here to relu5_1), the ``Transform`` with
style-attentional modules at relu4_1 and relu5_1 and a 3x3 merge convolution
(``transformer_iter_500000.pth``), and a decoder of AdaIN's layout (``decoder_iter_500000.pth``).

Each module maps the mean-variance normalised content features to queries (1x1 ``f``), the normalised
style features to keys (``g``) and the raw style features to values (``h``); every content position
takes the softmax-weighted sum of the values over all style positions, through ``out_conv``, plus its own
features. So a content position needs only its own features, its layer's statistics and the style's keys
and values: the keys and values (with ``f``'s and ``out_conv``'s weights folded into them) are computed
once per style, and the content's mean and variance at relu4_1 and relu5_1 are the two statistics layers
replayed under tiling. The authors normalise by the unbiased variance; urst's statistics are the biased
one, a factor n/(n-1) that is below 1 + 1e-4 for the 10^4 relu5_1 positions of a 2.6 MP image.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Conditioning, Stages, Stylizer, padded_conv, run_layers
from .vgg import DECODER, ENCODER, vgg_layers

__all__ = ["SANet", "sanet_condition"]

# vgg_normalised beyond relu4_1: relu4_2-4_4, pooling, relu5_1 (module indices 31-43 of the published file)
TO_RELU5_1 = ENCODER + ((512, 512), (512, 512), (512, 512), "M", (512, 512))
RELU4_1 = 31  # modules [0, 31) of the encoder end at relu4_1
ROWS_PER_CHUNK = 2**22  # attention logits (content positions x style positions) computed 16 MB at a time


class _Attention(nn.Module):
    """One style-attentional module's 1x1 convolutions, as the published ``SANet`` class names them."""

    def __init__(self, channels: int = 512):
        super().__init__()
        self.f = nn.Conv2d(channels, channels, 1)
        self.g = nn.Conv2d(channels, channels, 1)
        self.h = nn.Conv2d(channels, channels, 1)
        self.out_conv = nn.Conv2d(channels, channels, 1)

    def style_side(self, style: Tensor, eps: float) -> tuple[Tensor, ...]:
        """Style features [1,C,h,w] -> (keys [C,S], key bias [S], values [C,S], output bias [C]).

        keys = f^T g(mvn(s)) and key bias = f's bias . g(mvn(s)), so that a content query's logits are
        mvn(c) . keys + key bias; values = out_conv(h(s)), so the output is softmax . values + bias.
        """
        flat = style.flatten(2)[0].double()
        mean, var = flat.mean(dim=1, keepdim=True), flat.var(dim=1, keepdim=True)  # unbiased, as the authors
        keys = _matrix(self.g).double() @ ((flat - mean) / (var + eps).sqrt()) + self.g.bias.double()[:, None]
        values = _matrix(self.h).double() @ flat + self.h.bias.double()[:, None]
        return ((_matrix(self.f).double().T @ keys).float(), (self.f.bias.double() @ keys).float(),
                (_matrix(self.out_conv).double() @ values).float(), self.out_conv.bias.float())


def _matrix(conv: nn.Conv2d) -> Tensor:
    return conv.weight.flatten(1)


class _Transform(nn.Module):
    def __init__(self, channels: int = 512):
        super().__init__()
        self.sanet4_1 = _Attention(channels)
        self.sanet5_1 = _Attention(channels)
        self.merge_conv = nn.Conv2d(channels, channels, 3)


class SANet(Stylizer):
    """image [N,3,H,W] in [0,1], sides multiples of 16 -> stylized [N,3,H,W] in [0,1].

    Conditioning: [(keys, key bias, values, output bias) at relu4_1, the same at relu5_1] (see
    ``_Attention.style_side``). Styles do not mix: each attends over its own set of positions.
    """

    receptive_radius = 117  # measured: relu4_1 31 px, relu5_1 79, output 117
    pad_multiple = 16
    min_side = 32
    norm_channels = (512, 512)
    max_cpu_patch = 512
    cpu_whole_pixels = 500_000  # a whole 1 MP pass peaked at 1.02 GiB

    def __init__(self):
        super().__init__()
        self.encoder = vgg_layers(TO_RELU5_1, colour_conv=True)
        self.decoder = vgg_layers(DECODER)
        self.transform = _Transform()
        self.reflect = True  # False only on a zero_padded_copy

    def encode(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """(relu4_1, relu5_1) features."""
        f4 = run_layers(self.encoder[:RELU4_1], image, self.reflect)
        return f4, run_layers(self.encoder[RELU4_1:], f4, self.reflect)

    def stages(self, x: Tensor, cond: Conditioning) -> Stages:
        f4 = run_layers(self.encoder[:RELU4_1], x, self.reflect)             # [N,512,H/8,W/8]
        stats4 = yield 0, f4
        f5 = run_layers(self.encoder[RELU4_1:], f4, self.reflect)           # [N,512,H/16,W/16]
        stats5 = yield 1, f5
        merged = self.attend(f4, stats4, cond[0])
        merged += F.interpolate(self.attend(f5, stats5, cond[1]), scale_factor=2.0, mode="nearest")
        merged = padded_conv(self.transform.merge_conv, merged, 1, self.reflect)
        return run_layers(self.decoder, merged, self.reflect)

    def attend(self, content: Tensor, stats: tuple[Tensor, Tensor], style: tuple[Tensor, ...]) -> Tensor:
        """content + softmax(mvn(content) . keys + key bias) . values + bias, position by position.

        The normalisation is folded into the keys (scaled by 1/std) and the key bias (minus mean/std . keys).
        """
        keys, key_bias, values, out_bias = style
        mean, var = stats
        inv_std = torch.rsqrt(var.float() + self.eps).flatten(1)                # [N or 1, C]
        centre = mean.float().flatten(1) * inv_std
        n, c, h, w = content.shape
        rows = content.permute(0, 2, 3, 1).reshape(n, h * w, c)               # a view for channels-last input
        out = torch.empty_like(rows)
        chunk = max(1, ROWS_PER_CHUNK // keys.shape[1])
        for k in range(n):
            scaled = (keys * inv_std[min(k, len(inv_std) - 1), :, None]).to(content.dtype)
            bias = key_bias - centre[min(k, len(centre) - 1)] @ keys
            for start in range(0, h * w, chunk):
                part = rows[k, start: start + chunk]
                weights = torch.softmax(torch.addmm(bias, part, scaled), dim=1)
                out[k, start: start + chunk] = torch.addmm(out_bias, weights.to(values.dtype), values.T) + part
        return out.view(n, h, w, c).permute(0, 3, 1, 2)                       # channels-last [N,C,h,w]


def sanet_condition(net: SANet, styles: Sequence[np.ndarray], alpha: float, context=None) -> list[Conditioning]:
    """One conditioning per style image (uint8 RGB): its keys and values at relu4_1 and relu5_1."""
    device = next(net.parameters()).device
    conds = []
    for style in styles:
        f4, f5 = net.encode(torch.from_numpy(style).permute(2, 0, 1)[None].float().div(255).to(device))
        conds.append([net.transform.sanet4_1.style_side(f4, net.eps), net.transform.sanet5_1.style_side(f5, net.eps)])
    return conds
