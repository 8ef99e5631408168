"""Linear style transfer (Li et al., CVPR 2019), the URST reference's LinearWCT.

Layouts as published in sunshineatnoon/LinearStyleTransfer (libs/models.py, libs/Matrix.py), so its files
load unchanged: an encoder of its own (``vgg_r41.pth``: VGG-19 to relu4_1; ``vgg_r31.pth``: to relu3_1),
the mirror decoder (``dec_r41.pth``/``dec_r31.pth``) and the transformation (``r41.pth``/``r31.pth``, the
``MulLayer``). Two small CNNs (``cnet``, ``snet``: three zero-padded 3x3 convolutions, the 32x32 second
moment of their outputs, a fully connected layer) turn the centred content and style features into 32x32
matrices; their product transforms the content features squeezed to 32 channels (``compress``), which
``unzip`` widens again before the style's mean is added and the decoder paints.

Under tiling the content side is two statistics layers: 0, the encoder's features, whose mean centres
them (their variance is unused); 1, the content CNN's 32 outputs, pooled over the whole image as a
covariance layer (``finish`` adds the mean's outer product to get the second moment the authors use, and
applies the fully connected layer once per statistics). The style side (its matrix and mean) is computed
once per style; a weighted sum of styles' matrices is a weighted sum of the transforms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Conditioning, Stages, Stylizer, run_layers
from .vgg import vgg_layers

__all__ = ["LinearTransfer", "linear_condition", "MATRIX_SIZE"]

MATRIX_SIZE = 32


@dataclass(frozen=True)
class _Variant:
    encoder: tuple
    decoder: tuple
    first_decoder_conv: int
    channels: int
    stride: int
    receptive_radius: int  # measured: the output's (r41: 61 px) or the content CNN's (r31: 23 px, output 21)
    # --stats sampled crops (interior, context): context as wide as the statistics layers see (r31: 23 px, r41: 55)
    # leaves the interior's statistics those of the whole image; 64 px would only add to the paused crops
    sample_crop: tuple[int, int]
    # r31: 16 crops paused at relu3_1 (11 MiB each at 432 px) took a 4000x3000 job to 958-1024 MiB; probed, 884
    probe_samples: bool


_ENCODER_R31 = ((3, 64), (64, 64), "M", (64, 128), (128, 128), "M", (128, 256))
VARIANTS = {
    "r41": _Variant(_ENCODER_R31 + ((256, 256), (256, 256), (256, 256), "M", (256, 512)),
                    ((512, 256), "U", (256, 256), (256, 256), (256, 256), (256, 128), "U", (128, 128), (128, 64), "U",
                     (64, 64), (64, 3)), 11, 512, 8, 61, (384, 56), False),
    "r31": _Variant(_ENCODER_R31, ((256, 128), "U", (128, 128), (128, 64), "U", (64, 64), (64, 3)), 7, 256, 4, 23,
                    (384, 24), True),
}


class _MatrixNet(nn.Module):
    """``CNN`` of libs/Matrix.py: features -> (three zero-padded 3x3 convolutions) -> 32x32 second moment -> fc."""

    def __init__(self, channels: int):
        super().__init__()
        self.convs = nn.Sequential(nn.Conv2d(channels, channels // 2, 3, 1, 1), nn.ReLU(inplace=True),
                                   nn.Conv2d(channels // 2, channels // 4, 3, 1, 1), nn.ReLU(inplace=True),
                                   nn.Conv2d(channels // 4, MATRIX_SIZE, 3, 1, 1))
        self.fc = nn.Linear(MATRIX_SIZE * MATRIX_SIZE, MATRIX_SIZE * MATRIX_SIZE)

    def matrix(self, second_moment: Tensor) -> Tensor:
        """[..., 32, 32] second moment of the conv outputs -> [..., 32, 32] matrix, in float32."""
        with torch.autocast(second_moment.device.type, enabled=False):
            flat = self.fc(second_moment.float().flatten(-2))
        return flat.view(*second_moment.shape[:-2], MATRIX_SIZE, MATRIX_SIZE)


class _MulLayer(nn.Module):
    """The parameters of libs/Matrix.py's ``MulLayer`` under its attribute names."""

    def __init__(self, channels: int):
        super().__init__()
        self.snet = _MatrixNet(channels)
        self.cnet = _MatrixNet(channels)
        self.compress = nn.Conv2d(channels, MATRIX_SIZE, 1)
        self.unzip = nn.Conv2d(MATRIX_SIZE, channels, 1)


class LinearTransfer(Stylizer):
    """image [N,3,H,W] in [0,1], sides multiples of the encoder's stride -> stylized [N,3,H,W] in [0,1].

    Conditioning: [(style matrix [1,32,32], style mean [1,C,1,1])].
    """

    min_side = 32
    covariance_layers = frozenset({1})
    max_cpu_patch = 512
    cpu_whole_pixels = 500_000  # as the VGG models

    def __init__(self, variant: str = "r41"):
        super().__init__()
        layout = VARIANTS[variant]
        self.variant = variant
        self.encoder = vgg_layers(layout.encoder, colour_conv=True, first_number=1, ceil_mode=False)
        self.decoder = vgg_layers(layout.decoder, first_number=layout.first_decoder_conv)
        self.matrix = _MulLayer(layout.channels)
        self.norm_channels = (layout.channels, MATRIX_SIZE)
        self.pad_multiple = layout.stride
        self.receptive_radius = layout.receptive_radius
        self.sample_crop, self.probe_samples = layout.sample_crop, layout.probe_samples
        self.reflect = True  # False only on a zero_padded_copy

    def encode(self, image: Tensor) -> Tensor:
        return run_layers(self.encoder, image, self.reflect)

    def finish(self, index: int, mean: Tensor, second: Tensor) -> tuple[Tensor, Tensor]:
        if index == 0:
            return mean, second
        centre = mean.flatten(1)  # [N or 1, 32]
        return mean, self.matrix.cnet.matrix(second + centre[:, :, None] * centre[:, None, :])

    def stages(self, x: Tensor, cond: Conditioning) -> Stages:
        f = self.encode(x)                                             # [N,C,H/s,W/s]
        mean, _ = yield 0, f
        f = f.sub_(mean.to(f.dtype))
        _, content_matrix = yield 1, self.matrix.cnet.convs(f)        # [N,32,32] from [N,32,H/s,W/s]
        style_matrix, style_mean = cond[0]
        squeezed = self.matrix.compress(f)
        del f
        # unzip(T squeezed) + style mean, T = style matrix @ content matrix, as one 1x1 convolution per item
        unzip = self.matrix.unzip.weight.flatten(1).float() @ (style_matrix.float() @ content_matrix)  # [N or 1,C,32]
        unzip = unzip.expand(len(squeezed), -1, -1)
        bias = self.matrix.unzip.bias.float() + style_mean.float().flatten()
        features = torch.cat([F.conv2d(squeezed[k: k + 1], unzip[k, :, :, None, None].to(squeezed.dtype),
                                       bias.to(squeezed.dtype)) for k in range(len(squeezed))])
        return run_layers(self.decoder, features, self.reflect)


def linear_condition(net: LinearTransfer, styles: Sequence[np.ndarray], alpha: float,
                     context=None) -> list[Conditioning]:
    """One conditioning per style image (uint8 RGB): the style CNN's matrix of its centred features, and their mean."""
    device = next(net.parameters()).device
    conds = []
    for style in styles:
        f = net.encode(torch.from_numpy(style).permute(2, 0, 1)[None].float().div(255).to(device))
        mean = f.mean(dim=(2, 3), keepdim=True)
        out = net.matrix.snet.convs(f - mean).flatten(2)               # [1,32,positions]
        conds.append([(net.matrix.snet.matrix(out @ out.transpose(1, 2) / out.shape[2]), mean)])
    return conds
