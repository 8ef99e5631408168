"""Instance-norm statistics as explicit values, and the ways a forward pass obtains them.

Every stylizer is written once as a generator (``Stylizer.stages``) that pauses at each
instance-norm layer, yields its activations and is sent the (mean, var) to normalise them
with (whitening layers, as in WCT, pool the channel covariance instead, and the network's
``finish`` turns moments into what it consumes, e.g. a whitening matrix, once per
statistics rather than once per patch). What answers decides the mode; nothing is stored
on the layers:

- ``PerInstance``: each image its own statistics (the network as trained);
- ``Replay``: fixed statistics for every layer, so any patch in any order is normalised
  as the whole image would be (URST's idea);
- ``Probe``: replay the first k layers, add layer k's activations inside given boxes to
  running moments, then stop the pass: one step of the exact streaming estimator;
- ``collect``: drive several passes in lockstep (crops, or chunks of crops) and answer
  each layer with moments pooled over all of them, recording them as a ``NormStats``.
  Each pass holds only its current activations between layers, so a large sample costs
  the memory of its paused activations plus one chunk's working set; passes end at the
  last norm layer, where none needs to wait for the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import torch
from torch import Tensor

__all__ = ["NormStats", "NormLayers", "StatsPolicy", "PerInstance", "Replay", "Probe", "ProbeDone", "Moments",
           "channel_var_mean", "channel_covariance", "collect", "Box"]

Box = tuple[int, int, int, int]  # (top, left, bottom, right) in full-resolution pixels of one batch item


@dataclass(frozen=True)
class NormStats:
    """Per-layer channel means [C] and (biased) variances [C], or covariances [C, C] for whitening layers; float32."""

    means: tuple[Tensor, ...]
    variances: tuple[Tensor, ...]

    def __len__(self) -> int:
        return len(self.means)

    def to(self, device: torch.device | str) -> "NormStats":
        return NormStats(tuple(m.to(device) for m in self.means), tuple(v.to(device) for v in self.variances))


class NormLayers(Protocol):
    """What a network tells the statistics code about its norm layers (``Stylizer`` implements it)."""

    norm_channels: tuple[int, ...]
    covariance_layers: frozenset[int]  # layers normalised by full channel covariance (whitening), not variance

    def finish(self, index: int, mean: Tensor, second: Tensor) -> tuple[Tensor, Tensor]:
        """Turn a layer's (mean, variance or covariance) into what its forward pass consumes."""


CHUNK_ELEMENTS = 2**19  # 2 MB of float32 deviations at a time: cache-sized, and no image-sized temporary


def channel_var_mean(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel (biased variance, mean) of one item [C, h, w], in float32.

    On channels-last memory (channels innermost) torch.var_mean is 4-12x slower than summing
    each row and then the row sums, two passes (mean, then squared deviations, in row chunks);
    measured on 2 CPU cores, 32 x 384 x 384: 10.7 vs 3.4 ms, results within 2e-6 of float64.
    bf16 activations (CUDA) become float32 a chunk at a time, never as a whole copy.
    """
    if x.stride(0) != 1:
        return torch.var_mean(x.float(), dim=(1, 2), correction=0)
    rows = x.permute(1, 2, 0)  # [h, w, C], a view
    n = rows.shape[0] * rows.shape[1]
    mean = rows.sum(dim=1, dtype=torch.float32).sum(dim=0) / n
    m2 = torch.zeros_like(mean)
    for part in rows.split(max(1, CHUNK_ELEMENTS // (rows.shape[1] * rows.shape[2]))):
        deviations = part.float() - mean
        m2 += (deviations * deviations).sum(dim=1).sum(dim=0)
    return m2 / n, mean


def channel_covariance(x: Tensor) -> tuple[Tensor, Tensor]:
    """(mean [C], sum of centred outer products [C, C]) of one item [C, h, w], in float64, the deviations
    made a chunk of positions at a time: a float64 copy of a full-resolution 32-channel layer would be
    256 bytes per pixel."""
    flat = x.reshape(x.shape[0], -1)  # a view, channels-last or not
    mean = flat.sum(dim=1, dtype=torch.float64) / flat.shape[1]
    m2 = torch.zeros(x.shape[0], x.shape[0], dtype=torch.float64, device=x.device)
    for part in flat.split(max(1, CHUNK_ELEMENTS // x.shape[0]), dim=1):
        deviations = part.double() - mean[:, None]
        m2 += deviations @ deviations.T
    return mean, m2


class Moments:
    """Running per-channel count, mean and sum of squared deviations (float64), merged exactly (Chan et al.).

    With ``covariance`` the squared deviations are the full [C, C] cross-product matrix.
    """

    def __init__(self, channels: int, device: torch.device, covariance: bool = False):
        self.count = 0
        self.covariance = covariance
        self.mean = torch.zeros(channels, dtype=torch.float64, device=device)
        self.m2 = torch.zeros((channels, channels) if covariance else channels, dtype=torch.float64, device=device)

    def add(self, x: Tensor, boxes: Sequence[Box] | None, full_height: int) -> None:
        """Add each item of [N,C,h,w] inside its box (mapped from full resolution to this layer's stride)."""
        stride = max(1, full_height // x.shape[-2])
        for k, item in enumerate(x):
            if boxes is not None:
                top, left, bottom, right = (v // stride for v in boxes[k])
                item = item[:, top:bottom, left:right]
            n = item.shape[1] * item.shape[2]
            if n == 0:
                continue
            if self.covariance:
                mean, m2 = channel_covariance(item)
            else:
                var, mean = channel_var_mean(item)
                mean, m2 = mean.double(), var.double() * n
            total = self.count + n
            delta = mean - self.mean
            self.mean += delta * (n / total)
            spread = torch.outer(delta, delta) if self.covariance else delta * delta
            self.m2 += m2 + spread * (self.count * n / total)
            self.count = total

    def result(self) -> tuple[Tensor, Tensor]:
        """(mean [1,C,1,1], variance [1,C,1,1] or covariance [C,C]), float32."""
        second = (self.m2 / self.count).float()
        return self.mean.float().view(1, -1, 1, 1), second if self.covariance else second.view(1, -1, 1, 1)


class StatsPolicy:
    """Answers a norm layer's (index, activations) with what the layer normalises by (see ``NormLayers.finish``)."""

    def __call__(self, index: int, x: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError


class PerInstance(StatsPolicy):
    """Standard instance normalisation: every batch item normalised by its own statistics."""

    def __init__(self, layers: NormLayers):
        self.layers = layers

    def __call__(self, index: int, x: Tensor) -> tuple[Tensor, Tensor]:
        if index in self.layers.covariance_layers:
            with torch.autocast(x.device.type, enabled=False):  # statistics stay float32 under bf16 autocast
                flat = x.float().flatten(2)
                mean = flat.mean(dim=2, keepdim=True)
                centred = flat - mean
                return self.layers.finish(index, mean[..., None], centred @ centred.transpose(1, 2) / flat.shape[2])
        moments = [channel_var_mean(item) for item in x]
        var = torch.stack([v for v, _ in moments])[..., None, None]
        mean = torch.stack([m for _, m in moments])[..., None, None]
        return self.layers.finish(index, mean, var)


class Replay(StatsPolicy):
    """Fixed statistics for every layer (already on the activations' device), finished once for all patches."""

    def __init__(self, stats: NormStats, layers: NormLayers):
        self.answers = [
            layers.finish(i, mean.view(1, -1, 1, 1), second if second.dim() == 2 else second.view(1, -1, 1, 1))
            for i, (mean, second) in enumerate(zip(stats.means, stats.variances))
        ]

    def __call__(self, index: int, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.answers[index]


class ProbeDone(Exception):
    """Raised by ``Probe`` to end a forward pass once the probed layer is summed."""


class Probe(StatsPolicy):
    """Replay ``known`` for the layers before ``layer``; add layer ``layer`` inside the boxes to moments; stop.

    One Probe visits every patch of an image; set each batch's boxes with ``at``.
    """

    def __init__(self, known: NormStats, layer: int, layers: NormLayers, device: torch.device):
        self.replay, self.layer = Replay(known, layers), layer
        self.moments = Moments(layers.norm_channels[layer], device, layer in layers.covariance_layers)
        self.boxes: Sequence[Box] | None = None
        self.full_height = 1

    def at(self, boxes: Sequence[Box], full_height: int) -> "Probe":
        self.boxes, self.full_height = boxes, full_height
        return self

    def __call__(self, index: int, x: Tensor) -> tuple[Tensor, Tensor]:
        if index < self.layer:
            return self.replay(index, x)
        self.moments.add(x, self.boxes, self.full_height)
        raise ProbeDone


def collect(passes: Sequence, boxes: Sequence[Sequence[Box] | None], full_height: int,
            layers: NormLayers) -> NormStats:
    """Run forward passes (``Stylizer.stages`` generators) in lockstep with statistics pooled over all of them.

    ``boxes[k]``: per-item boxes of pass k to pool over (None: whole items). Returns the
    statistics used. Passes advance one at a time to the next layer (their previous activations
    dropped first); at the last norm layer each pass is closed as soon as its moments are added:
    nothing after it changes the statistics, so at most one pass's activations of that layer
    exist at once and no pass computes the rest of the network.
    """
    passes = list(passes)
    last = len(layers.norm_channels) - 1
    live, answer = list(range(len(passes))), None
    means, seconds = [], []
    while live:
        moments, index, paused = None, -1, []
        for k in live:
            try:
                index, activations = next(passes[k]) if answer is None else passes[k].send(answer)
            except StopIteration:
                continue
            if moments is None:
                moments = Moments(activations.shape[1], activations.device, index in layers.covariance_layers)
            moments.add(activations, boxes[k], full_height)
            del activations
            if index == last:
                passes[k].close()
            else:
                paused.append(k)
        if moments is None:
            break
        mean, second = moments.result()
        means.append(mean.flatten().cpu())
        seconds.append(second.cpu() if moments.covariance else second.flatten().cpu())
        answer = layers.finish(index, mean, second)
        live = paused
    return NormStats(tuple(means), tuple(seconds))

