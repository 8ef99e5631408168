"""The VGG-19 family: AdaIN (Huang & Belongie 2017) and WCT (Li et al. 2017), with CAP-VSTNet's cWCT.

Both encode to relu4_1 with the "normalised" VGG-19, transform the features to carry the
style, and decode with the mirror decoder. Layer for layer the modules are the
``nn.Sequential`` stacks of the widely used PyTorch files ``vgg_normalised.pth`` and
``decoder.pth`` (naoto0804/pytorch-AdaIN), so those state dicts load unchanged. Input and
output are RGB in [0, 1] (the encoder's first 1x1 convolution does the Caffe-style
channel swap and mean subtraction).

Under tiling the transform's content side is one norm layer (index 0, the relu4_1
features): AdaIN normalises by channel mean/variance, WCT whitens by the full channel
covariance, turned into a whitening matrix once per statistics by ``finish``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .base import Conditioning, Stages, Stylizer, run_layers

__all__ = ["AdaIN", "WCT", "encoder_layers", "decoder_layers", "vgg_layers", "VGGStylizer", "WhiteningColouring",
           "STYLE_SIDE", "adain_condition", "wct_condition", "style_features"]

STYLE_SIDE = 512  # style images are encoded at this long side (as in the AdaIN and WCT papers' code)

# (in, out) channels of the 3x3 convolutions up to relu4_1, "M" for 2x2 max pooling
ENCODER = ((3, 64), (64, 64), "M", (64, 128), (128, 128), "M", (128, 256), (256, 256), (256, 256), (256, 256), "M",
           (256, 512))
# the decoder mirrors it: "U" for 2x nearest upsampling; no ReLU after the last convolution
DECODER = ((512, 256), "U", (256, 256), (256, 256), (256, 256), (256, 128), "U", (128, 128), (128, 64), "U",
           (64, 64), (64, 3))


def vgg_layers(items: Sequence, colour_conv: bool = False, first_number: int | None = None,
               ceil_mode: bool = True) -> nn.Sequential:
    """A VGG-style layer list: (in, out) is a 3x3 convolution after 1 px of reflection padding, followed by a
    ReLU unless it makes the 3 output channels; "M" 2x2 max pooling, "U" 2x nearest upsampling. ``colour_conv``
    puts the 1x1 colour convolution (3 -> 3) first.

    The modules are numbered as the published files key them: by position (pytorch-AdaIN's and SANet's
    ``nn.Sequential``), or with ``first_number``, LinearStyleTransfer's ``conv{n}`` attributes, n counting
    the convolutions from it. Padding, ReLU and resampling hold no weights, so only the convolutions' names matter.
    """
    layers: list[tuple[str, nn.Module]] = [("conv", nn.Conv2d(3, 3, 1))] if colour_conv else []
    for item in items:
        if item == "M":
            layers.append(("pool", nn.MaxPool2d(2, 2, ceil_mode=ceil_mode)))
        elif item == "U":
            layers.append(("unpool", nn.Upsample(scale_factor=2, mode="nearest")))
        else:
            layers += [("pad", nn.ReflectionPad2d(1)), ("conv", nn.Conv2d(*item, 3))]
            if item[1] != 3:
                layers.append(("relu", nn.ReLU(inplace=True)))
    if first_number is None:
        return nn.Sequential(*(module for _, module in layers))
    convs = iter(range(first_number, first_number + len(layers)))
    return nn.Sequential(OrderedDict((f"conv{next(convs)}" if kind == "conv" else f"{kind}_{position}", module)
                                     for position, (kind, module) in enumerate(layers)))


def encoder_layers() -> nn.Sequential:
    """vgg_normalised up to relu4_1: module indices (hence state-dict keys) as in the published file."""
    return vgg_layers(ENCODER, colour_conv=True)


def decoder_layers() -> nn.Sequential:
    return vgg_layers(DECODER)


class VGGStylizer(Stylizer):
    # encoder: 2 at stride 1, 2 + pooling at 2, 4 + pooling at 4, 1 at 8: 31 px; decoder: 1 at 8, 4 at 4, 2 at 2,
    # 2 at 1: 30 px. Measured: outputs change up to 61 px in when the window's padding changes
    receptive_radius = 61
    pad_multiple = 8
    min_side = 32
    norm_channels = (512,)
    # 704 px windows (8 x overlap) took 1.03 GiB at 4000x3000: the heap keeps the freed half-resolution blocks
    # (<= 32 MiB) while the full-resolution ones (mmap'ed) are live
    max_cpu_patch = 512
    cpu_whole_pixels = 500_000  # a whole 0.75 MP pass peaked at 0.87 GiB alone, ~1 GiB in a job

    def __init__(self):
        super().__init__()
        self.encoder = encoder_layers()
        self.decoder = decoder_layers()
        self.reflect = True  # False only on a zero_padded_copy

    def encode(self, image: Tensor) -> Tensor:
        return run_layers(self.encoder, image, self.reflect)

    def decode(self, features: Tensor) -> Tensor:
        return run_layers(self.decoder, features, self.reflect)


class AdaIN(VGGStylizer):
    """Adaptive instance normalisation at relu4_1: the content's mean/std replaced by the style's.

    Conditioning: [(style std [1,512], style mean [1,512], alpha [1])]. With strength alpha the
    decoded features are alpha * AdaIN(f) + (1 - alpha) * f, as in the paper; the blend is
    folded into one per-channel scale and shift.
    """

    def stages(self, x: Tensor, cond: Conditioning) -> Stages:
        f = self.encode(x)
        mean, var = yield 0, f
        style_std, style_mean, alpha = cond[0]
        alpha = alpha.view(1, 1, 1, 1)
        inv_std = torch.rsqrt(var + self.eps)
        scale = alpha * style_std.float()[:, :, None, None] * inv_std + (1 - alpha)
        shift = alpha * (style_mean.float()[:, :, None, None] - style_std.float()[:, :, None, None] * mean * inv_std)
        return self.decode(f.mul_(scale.to(f.dtype)).add_(shift.to(f.dtype)))


class WhiteningColouring:
    """The whitening-colouring transform of a covariance layer (index 0), shared by WCT and CAP-VSTNet.

    By eigendecomposition ("svd") or by Cholesky factors ("cwct", CAP-VSTNet's: stable when eigenvalues
    repeat or vanish, and cheaper). The content side arrives as (mean, whitening matrix) from ``finish``,
    computed once per statistics; the style side is (colouring matrix, style mean, alpha).
    """

    covariance_layers = frozenset({0})
    ridge = 1e-6  # times the mean eigenvalue (trace / C): scale-free; covariance error ~1e-4 at condition 1e3
    transform = "svd"

    def finish(self, index: int, mean: Tensor, cov: Tensor) -> tuple[Tensor, Tensor]:
        return mean, self.whitening(cov)

    def _regularised(self, cov: Tensor) -> Tensor:
        cov = cov.double()
        scale = cov.diagonal(dim1=-2, dim2=-1).mean(-1).clamp_min(1e-12)[..., None, None]
        return cov + self.ridge * scale * torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)

    def whitening(self, cov: Tensor) -> Tensor:
        """W with W cov W^T = I (up to the ridge), float32."""
        cov = self._regularised(cov)
        if self.transform == "cwct":
            lower = torch.linalg.cholesky(cov)
            eye = torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device).expand_as(cov)
            return torch.linalg.solve_triangular(lower, eye, upper=False).float()
        values, vectors = torch.linalg.eigh(cov)
        return (vectors * values.clamp_min(1e-12).rsqrt()[..., None, :] @ vectors.transpose(-2, -1)).float()

    def colouring(self, cov: Tensor) -> Tensor:
        """C with C C^T = cov (up to the ridge), float32."""
        cov = self._regularised(cov)
        if self.transform == "cwct":
            return torch.linalg.cholesky(cov).float()
        values, vectors = torch.linalg.eigh(cov)
        return (vectors * values.clamp_min(0).sqrt()[..., None, :] @ vectors.transpose(-2, -1)).float()

    def style_conditions(self, features: Sequence[Tensor], alpha: float) -> list[Conditioning]:
        """One conditioning per style's features ([C, positions], float64): its colouring matrix and mean."""
        conds = []
        for f in features:
            mean = f.mean(dim=1)
            centred = f - mean[:, None]
            cov = centred @ centred.T / f.shape[1]
            conds.append([(self.colouring(cov), mean.float()[None], torch.tensor([alpha], device=f.device))])
        return conds

    @staticmethod
    def recolour(f: Tensor, mean: Tensor, whiten: Tensor, style: tuple[Tensor, ...]) -> Tensor:
        """alpha * (C W (f - m) + mu_s) + (1 - alpha) * f, as T f + shift with T = alpha C W + (1 - alpha) I.

        One matrix product per item, written straight into channels-last memory (the positions' rows of
        channels): no centred copy, no channels-first result to convert, nothing but the output allocated.
        """
        colour, style_mean, alpha = style
        n, c, h, w = f.shape
        with torch.autocast(f.device.type, enabled=False):  # T and the shift in float32, applied in f's dtype
            transform = alpha * (colour.float() @ whiten.float()) + (1 - alpha) * torch.eye(c, device=f.device)
            centre = mean.float().view(-1, 1, c)
            shift = alpha * style_mean.float().view(1, 1, c) + (1 - alpha) * centre - centre @ transform.mT
        transform = transform.expand(n, c, c).mT.to(f.dtype)
        rows = f.permute(0, 2, 3, 1).reshape(n, h * w, c)  # a view of channels-last features
        out = torch.empty(n, h, w, c, dtype=f.dtype, device=f.device)
        torch.baddbmm(shift.to(f.dtype), rows, transform, out=out.view(n, h * w, c))
        return out.permute(0, 3, 1, 2)  # [N,C,H,W] in channels-last memory


class WCT(WhiteningColouring, VGGStylizer):
    """Whitening and colouring at relu4_1, by eigendecomposition ("svd") or Cholesky factors ("cwct").

    Conditioning: [(colouring matrix [512,512], style mean [1,512], alpha [1])].
    """

    def __init__(self, transform: str = "svd"):
        super().__init__()
        if transform not in ("svd", "cwct"):
            raise ValueError(f"unknown transform {transform}")
        self.transform = transform

    def stages(self, x: Tensor, cond: Conditioning) -> Stages:
        f = self.encode(x)
        mean, whiten = yield 0, f
        features = self.recolour(f, mean, whiten, cond[0])
        del f  # not kept through the decoder
        return self.decode(features)


def style_features(net: VGGStylizer, styles: Sequence[np.ndarray]) -> list[Tensor]:
    """Each style image (uint8 RGB) encoded, as [C, positions] float64."""
    device = next(net.parameters()).device
    return [net.encode(torch.from_numpy(s).permute(2, 0, 1)[None].float().div(255).to(device)).flatten(2)[0].double()
            for s in styles]


def adain_condition(net: AdaIN, styles: Sequence[np.ndarray], alpha: float, context=None) -> list[Conditioning]:
    """One conditioning per style image (uint8 RGB at STYLE_SIDE)."""
    conds = []
    for f in style_features(net, styles):
        var, mean = torch.var_mean(f, dim=1, correction=0)
        std = (var + net.eps).sqrt().float()[None]
        conds.append([(std, mean.float()[None], torch.tensor([alpha], device=f.device))])
    return conds


def wct_condition(net: WCT, styles: Sequence[np.ndarray], alpha: float, context=None) -> list[Conditioning]:
    return net.style_conditions(style_features(net, styles), alpha)
