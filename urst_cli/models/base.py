"""What every stylizer offers the engine, and the layers the IN-based families share."""

from __future__ import annotations

from copy import deepcopy
from typing import Generator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .norm import StatsPolicy

__all__ = ["Stylizer", "ResidualStylizer", "drive", "Conditioning", "Stages", "ReflectConv", "UpsampleConv",
           "padded_conv", "zero_padded_copy", "reflect_pad", "run_layers", "mix", "pad_to_valid", "valid_size"]

# Per norm layer, the tensors a style sets (for conditional IN: gamma and beta, each [1, C]). Every
# family applies them linearly, so a weighted sum of conditionings is an interpolation of styles.
Conditioning = Sequence[tuple[Tensor, ...]]
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
      covariance_layers: layers that whiten by the channel covariance (``finish`` turns it into a transform).
      eps:              the instance-norm epsilon.
      float32_only:     never bf16 by default, not even on CUDA (CAP-VSTNet's inverse undoes each block
                        exactly only in float32: bf16 rounding of y1 = x1 + F(x2) is not undone).
      max_cpu_patch:    cap on the default CPU window side, where wider windows would break the 1 GiB budget.
      default_context:  context per side the default overlap covers where covering the receptive radius
                        would multiply the work (capvst); tiled output then only approximates the whole image's.
      sample_crop:      sampled-statistics crops (interior, context) other than 384 and 64: smaller for networks
                        whose activations at full resolution are so wide that 16 paused 512 px crops would break
                        1 GiB, or a context only as wide as the statistics layers see.
      probe_samples:    sampled statistics by one pass per norm layer over the crops, each stopping at its layer
                        (as --stats exact runs its windows), instead of all crops paused at every layer: for
                        networks with two norm layers whose 16 paused crops would break 1 GiB; costs one more
                        pass up to the first norm layer per crop, and keeps the crops' size.
      cpu_whole_pixels: the largest image whose whole-image statistics pass stays under 1 GiB (measured).
    """

    receptive_radius: int
    pad_multiple: int = 4
    min_side: int = 16
    norm_channels: tuple[int, ...]
    covariance_layers: frozenset[int] = frozenset()
    eps: float = 1e-5
    float32_only: bool = False  # --precision auto keeps float32 on CUDA too (bf16 would break the network)
    max_cpu_patch: int | None = None  # the largest default CPU window that keeps a job under 1 GiB (measured)
    default_context: int | None = None  # what the default overlap covers, if not the whole receptive radius
    sample_crop: tuple[int, int] | None = None  # (interior, context) of --stats sampled crops, if not 384 and 64
    probe_samples: bool = False  # --stats sampled: each crop run once per norm layer, not paused at each layer
    cpu_whole_pixels: int = 1_000_000  # --stats auto: one whole-image statistics pass on CPU up to this size

    def stages(self, x: Tensor, cond: Conditioning) -> Stages:  # pragma: no cover
        """The network, written once, pausing at each norm layer for its statistics."""
        raise NotImplementedError

    def finish(self, index: int, mean: Tensor, second: Tensor) -> tuple[Tensor, Tensor]:
        """What layer ``index`` is sent, from its mean and variance: for instance norm, those themselves."""
        return mean, second

    def forward(self, x: Tensor, cond: Conditioning, stats: StatsPolicy) -> Tensor:
        """Run the whole network, each norm layer normalised with what ``stats`` says."""
        return drive(self.stages(x, cond), stats)

    def normalise(self, x: Tensor, stats: tuple[Tensor, Tensor]) -> Tensor:
        """Instance norm without affine parameters, by the given (mean, var) (float32), in place."""
        mean, var = stats
        scale = torch.rsqrt(var + self.eps)
        return x.mul_(scale.to(x.dtype)).sub_((mean * scale).to(x.dtype))

    def affine(self, x: Tensor, index: int, cond: Conditioning, stats: tuple[Tensor, Tensor]) -> Tensor:
        """Normalise with the given (mean, var) (float32, any broadcastable shape), then the style's scale/shift.

        In place: the pre-norm activations are not needed once their statistics are known.
        """
        mean, var = stats
        gamma, beta = cond[index]
        scale = gamma.float()[:, :, None, None] * torch.rsqrt(var + self.eps)
        shift = beta.float()[:, :, None, None] - mean * scale
        return x.mul_(scale.to(x.dtype)).add_(shift.to(x.dtype))


def drive(stages: Stages, stats: StatsPolicy):
    """Run a stages generator to its end, answering each norm layer with ``stats``; its return value."""
    try:
        index, h = next(stages)
        while True:
            answer = stats(index, h)
            del h  # the rest of the pass may free the activations (a whitening layer replaces them)
            index, h = stages.send(answer)
    except StopIteration as done:
        return done.value


class ResidualStylizer(Stylizer):
    """Stages shared by the conditional-IN transformers (Magenta's and the 26-style one)."""

    def residual_block(self, x: Tensor, first_conv: nn.Module, second_conv: nn.Module, first: int,
                       cond: Conditioning) -> Stages:
        """x + IN(conv(relu(IN(conv(x))))), norm layers ``first`` and ``first + 1``; updates x in place."""
        y = first_conv(x)
        y = F.relu_(self.affine(y, first, cond, (yield first, y)))
        y = second_conv(y)
        x += self.affine(y, first + 1, cond, (yield first + 1, y))
        return x

    def upsampling_stages(self, x: Tensor, convs: Sequence[nn.Module], first: int, cond: Conditioning) -> Stages:
        """2x nearest upsampling before every convolution but the last; ReLU between, sigmoid at the end."""
        for i, conv in enumerate(convs):
            last = i == len(convs) - 1
            if not last:
                x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            x = conv(x)
            x = self.affine(x, first + i, cond, (yield first + i, x))
            x = torch.sigmoid_(x) if last else F.relu_(x)
        return x


class ReflectConv(nn.Module):
    """Reflect-pad by k//2, then convolve: the convolution every layer of these networks uses."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, bias: bool = True):
        super().__init__()
        self.pad = kernel // 2
        self.conv = nn.Conv2d(cin, cout, kernel, stride, bias=bias)
        self.reflect = True  # False only on a zero_padded_copy

    def forward(self, x: Tensor) -> Tensor:
        return padded_conv(self.conv, x, self.pad, self.reflect)


class UpsampleConv(nn.Module):
    """``ConvLayer``/``UpsampleConvLayer`` of PyTorch's fast_neural_style and MSG-Net: optional nearest upsampling,
    reflect pad, convolution (weights under ``conv2d``, as they key them)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, upsample: int = 1):
        super().__init__()
        self.upsample = upsample
        self.conv2d = nn.Conv2d(cin, cout, kernel, stride)
        self.pad = kernel // 2
        self.reflect = True  # False only on a zero_padded_copy

    def forward(self, x: Tensor) -> Tensor:
        if self.upsample > 1:
            x = F.interpolate(x, scale_factor=float(self.upsample), mode="nearest")
        return padded_conv(self.conv2d, x, self.pad, self.reflect)


def padded_conv(conv: nn.Conv2d, x: Tensor, pad: int, reflect: bool) -> Tensor:
    """``conv`` over x padded by ``pad`` per side: mirrored (as trained), or zeros, which the convolution
    adds itself at no cost."""
    if reflect:
        return conv(reflect_pad(x, pad))
    return F.conv2d(x, conv.weight, conv.bias, conv.stride, pad)


def run_layers(layers: nn.Module, x: Tensor, reflect: bool = True) -> Tensor:
    """A published layer list (reflection pads, convolutions, ReLUs, pooling, upsampling: children in forward
    order) run with urst's padding: mirrored by slice copies in x's dtype, or, with ``reflect`` False, zeros
    that the convolution adds itself (windows inside the image, see ``zero_padded_copy``).

    Calling the list's own ``nn.ReflectionPad2d`` under bf16 autocast would pad in float32 (autocast lists
    reflection padding as a float32 op) and cast back for the convolution: two extra copies of every
    activation, +260 MiB in a 704 px VGG window.
    """
    pad = 0
    for layer in layers.children():
        if isinstance(layer, nn.ReflectionPad2d):
            pad = layer.padding[0]
        elif isinstance(layer, nn.Conv2d):
            if reflect:  # padded here, so the unpadded activations are gone before the convolution's output
                x, pad = reflect_pad(x, pad), 0  # exists: one full-resolution activation less (64 MiB, VGG)
            x = padded_conv(layer, x, pad, reflect)
            pad = 0
        elif isinstance(layer, nn.ReLU):
            x = F.relu_(x)
        else:
            x = layer(x)
    return x


def zero_padded_copy(model: Stylizer) -> Stylizer | None:
    """``model`` sharing its weights, with every module that has a ``reflect`` flag padding its convolutions
    with zeros instead; None if it has none.

    What a convolution pads with changes outputs only within the receptive radius of a window's edge. At a
    window edge inside the image, with at least that much context, blending keeps none of those pixels, so
    such a window may skip the mirroring copies: 29.1 instead of 31.7 ms per 512 px ``magenta`` window.
    """
    if not any(hasattr(m, "reflect") for m in model.modules()):
        return None
    shared = {id(t): t for t in (*model.parameters(), *model.buffers())}
    copy = deepcopy(model, shared)
    for module in copy.modules():
        if hasattr(module, "reflect"):
            module.reflect = False
    return copy


def reflect_pad(x: Tensor, p: int) -> Tensor:
    """``F.pad(x, (p,) * 4, mode="reflect")`` in x's memory format, as five slice copies.

    On channels-last tensors with few channels (the full-resolution layers), torch's reflection
    kernel is 2-4x slower than copying the interior and mirroring four thin borders: 1.4 vs
    2.2 ms of a 512 px patch's forward for ``magenta``.
    """
    if p == 0:
        return x
    n, c, h, w = x.shape
    memory_format = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else \
        torch.contiguous_format
    out = torch.empty((n, c, h + 2 * p, w + 2 * p), dtype=x.dtype, device=x.device, memory_format=memory_format)
    out[:, :, p: p + h, p: p + w] = x
    out[:, :, p: p + h, :p] = x[:, :, :, 1: p + 1].flip(3)  # the edge pixel itself is not repeated
    out[:, :, p: p + h, p + w:] = x[:, :, :, w - p - 1: w - 1].flip(3)
    out[:, :, :p] = out[:, :, p + 1: 2 * p + 1].flip(2)  # rows from the padded result: corners included
    out[:, :, p + h:] = out[:, :, h - 1: h + p - 1].flip(2)
    return out


def mix(conditionings: Sequence[Conditioning], weights: Sequence[float]) -> Conditioning:
    """The weighted sum, layer by layer, of several styles' conditionings (weights normalised to sum 1)."""
    total = float(sum(weights))
    if total <= 0 or any(w < 0 for w in weights):
        raise ValueError("style weights must be non-negative and not all zero")
    return [tuple(sum(c[layer][k] * (w / total) for c, w in zip(conditionings, weights))
                  for k in range(len(conditionings[0][layer])))
            for layer in range(len(conditionings[0]))]


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
