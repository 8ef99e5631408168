"""MSG-Net: the multi-style generative network with CoMatch layer (Zhang & Dana, 2017).

Layout as published in zhanghang1989/PyTorch-Multi-Style-Transfer (experiments/net.py, ``Net(ngf=128)``)
and used by the URST reference (Zhang2017MultiStyle), so ``21styles.model`` loads unchanged: its keys
under ``model.*`` (the file also holds the same encoder under ``model1.*`` and the old instance norms'
running statistics, which are dropped on import). Pixels are BGR, 0-255, inside the network.

A siamese encoder (``model.0``: 7x7 convolution and two down-sampling bottlenecks) turns the style
image into the Gram matrix G of its 512 features, once per style; the CoMatch ("Inspiration") layer
multiplies every content feature vector by (W G)^T, a 512x512 matrix, so a style is that matrix, and
mixing styles is mixing their Gram matrices. All 32 instance norms (no affine parameters) are
statistics layers, replayed under tiling.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Conditioning, Stages, Stylizer, UpsampleConv, drive
from .norm import PerInstance

__all__ = ["MSGNet", "msgnet_condition", "STYLE_SIZE"]

STYLE_SIZE = 512  # style images: 512x512 (the authors' evaluate squashes to it; urst takes the centre square)
EXPANSION = 4


class _Norm(nn.Module):
    """An ``nn.InstanceNorm2d`` slot (no affine parameters); the normalisation is ``Stylizer.normalise``."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels


class _Bottleneck(nn.Module):
    """Pre-activation bottleneck: IN, ReLU, 1x1; IN, ReLU, 3x3 (stride); IN, ReLU, 1x1 (x4), plus a residual.

    ``upsample``: MSG-Net's ``UpBottleneck``, whose 3x3 and residual 1x1 work after 2x nearest upsampling.
    """

    def __init__(self, cin: int, planes: int, stride: int = 1, projected: bool = False, upsample: bool = False):
        super().__init__()
        self.upsample = upsample
        if upsample:
            self.residual_layer = UpsampleConv(cin, planes * EXPANSION, 1, upsample=2)
        elif projected:
            self.residual_layer = nn.Conv2d(cin, planes * EXPANSION, 1, stride)
        self.conv_block = nn.Sequential(
            _Norm(cin), nn.ReLU(), nn.Conv2d(cin, planes, 1),
            _Norm(planes), nn.ReLU(), UpsampleConv(planes, planes, 3, stride, upsample=2 if upsample else 1),
            _Norm(planes), nn.ReLU(), nn.Conv2d(planes, planes * EXPANSION, 1))

    def residual(self, x: Tensor) -> Tensor:
        """The residual branch, before upsampling in an up-bottleneck: a 1x1 convolution commutes with nearest
        upsampling, and a quarter of the pixels is what a paused sampled-statistics crop holds."""
        layer = getattr(self, "residual_layer", None)
        if layer is None:
            return x
        return layer.conv2d(x) if self.upsample else layer(x)

    def add_residual(self, y: Tensor, residual: Tensor) -> Tensor:
        return y.add_(F.interpolate(residual, scale_factor=2.0, mode="nearest") if self.upsample else residual)


class _Inspiration(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, channels, channels))


class MSGNet(Stylizer):
    """image [N,3,H,W] in [0,1], sides multiples of 4 -> stylized [N,3,H,W] in [0,1] (clamped by the caller).

    Conditioning: [((W G)^T as a 1x1 convolution weight [512,512,1,1],)].
    """

    receptive_radius = 37  # measured: the last IN's input 34 px, output 37
    pad_multiple = 4
    cpu_whole_pixels = 500_000  # a whole 1 MP pass peaked at 1.18 GiB
    sample_crop = (112, 40)  # paused at a full-resolution layer a crop holds ~380 bytes per pixel (float32)
    # model.0: conv IN, bottleneck 64->128 (3), bottleneck 128->512 (3); six bottlenecks at 1/4 (3 each);
    # two up-bottlenecks (3 each); the last IN
    norm_channels = (64, 64, 32, 32, 128, 128, 128) + (512, 128, 128) * 6 + (512, 32, 32, 128, 16, 16, 64)

    def __init__(self, ngf: int = 128):
        super().__init__()
        width = ngf * EXPANSION
        encoder = nn.Sequential(UpsampleConv(3, 64, 7), _Norm(64), nn.ReLU(),
                                _Bottleneck(64, 32, 2, projected=True),
                                _Bottleneck(32 * EXPANSION, ngf, 2, projected=True))
        self.model = nn.Sequential(
            encoder, _Inspiration(width), *(_Bottleneck(width, ngf) for _ in range(6)),
            _Bottleneck(width, 32, upsample=True), _Bottleneck(32 * EXPANSION, 16, upsample=True),
            _Norm(16 * EXPANSION), nn.ReLU(), UpsampleConv(16 * EXPANSION, 3, 7))

    def layer_stages(self, x: Tensor, modules: Sequence[nn.Module], cond: Conditioning = ()) -> Stages:
        """``modules`` (a prefix of ``model``, flattened: its first item's layers, then the rest) on BGR 0-255
        pixels; each IN is a norm layer, numbered in order. One frame holds the activations, each name
        rebound as soon as its tensor is spent: a paused pass keeps only what the rest of the network needs."""
        layer = 0
        for module in modules:
            if isinstance(module, _Norm):
                x = F.relu_(self.normalise(x, (yield layer, x)))
                layer += 1
            elif isinstance(module, _Bottleneck):
                residual = module.residual(x)
                y = x.clone(memory_format=torch.channels_last) if residual is x else x
                del x
                for norm in range(3):
                    y = F.relu_(self.normalise(y, (yield layer, y)))
                    y = module.conv_block[3 * norm + 2](y)
                    layer += 1
                x = module.add_residual(y, residual)
                del y, residual
            elif isinstance(module, _Inspiration):
                x = F.conv2d(x, cond[0][0].to(x.dtype))                 # CoMatch: (W G)^T at every position
            elif not isinstance(module, nn.ReLU):                       # ReLUs follow the norms
                x = module(x)
        return x

    def encoder(self) -> list[nn.Module]:
        """``model.0``, the siamese encoder (norm layers 0-6)."""
        return list(self.model[0])

    def stages(self, x: Tensor, cond: Conditioning) -> Stages:
        x = x.flip(1).mul_(255.0).contiguous(memory_format=torch.channels_last)  # BGR, 0-255
        x = yield from self.layer_stages(x, [*self.model[0], *self.model[1:]], cond)
        return x.flip(1).div_(255.0)


def msgnet_condition(net: MSGNet, styles: Sequence[np.ndarray], alpha: float, context=None) -> list[Conditioning]:
    """One conditioning per style image (uint8 RGB squares): (W G)^T, G the Gram matrix of its encoder features."""
    device = next(net.parameters()).device
    conds = []
    for style in styles:
        x = torch.from_numpy(style).permute(2, 0, 1)[None].float().flip(1).to(device)    # BGR 0-255
        features = drive(net.layer_stages(x, net.encoder()), PerInstance(net)).flatten(2)[0].double()  # [512, n]
        gram = features @ features.T / features.numel()
        matrix = net.model[1].weight[0].double() @ gram
        conds.append([(matrix.T.float()[:, :, None, None],)])
    return conds
