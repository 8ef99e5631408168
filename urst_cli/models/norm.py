"""Instance normalisation whose statistics are explicit values.

Every instance-norm layer of a stylizer asks a *statistics policy* for the
(mean, variance) to normalise with. The policy is an argument of ``forward``,
never a flag stored on the layers, so one network serves all of URST's modes:

- ``PerInstance``: plain IN, each image its own statistics (the network as trained);
- ``Collect``: statistics pooled over the whole batch (and, optionally, only over
  each item's interior box), used at once and recorded, so a batch of crops or a
  whole image yields one ``NormStats`` value;
- ``Replay``: given statistics for every layer, so any patch in any order is
  normalised exactly as the whole image would be;
- ``Probe``: replays the first k layers and sums layer k's activations over
  given boxes, then stops the pass: the step of the exact streaming estimator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

__all__ = ["NormStats", "StatsPolicy", "PerInstance", "Collect", "Replay", "Probe", "ProbeDone", "Box"]

Box = tuple[int, int, int, int]  # (top, left, bottom, right) in full-resolution pixels of one batch item


@dataclass(frozen=True)
class NormStats:
    """Per-layer channel means and (biased) variances, in network order, float32 on CPU."""

    means: tuple[Tensor, ...]
    variances: tuple[Tensor, ...]

    def __len__(self) -> int:
        return len(self.means)

    def to(self, device: torch.device | str) -> "NormStats":
        return NormStats(tuple(m.to(device) for m in self.means), tuple(v.to(device) for v in self.variances))

    def as_dict(self) -> dict[str, Tensor]:
        """Flat tensors for safetensors files (job state, caches)."""
        out = {}
        for i, (m, v) in enumerate(zip(self.means, self.variances)):
            out[f"{i}.mean"], out[f"{i}.var"] = m.contiguous(), v.contiguous()
        return out

    @classmethod
    def from_dict(cls, tensors: dict[str, Tensor]) -> "NormStats":
        n = len(tensors) // 2
        return cls(tuple(tensors[f"{i}.mean"] for i in range(n)), tuple(tensors[f"{i}.var"] for i in range(n)))


class StatsPolicy:
    """Decides the (mean, var) each norm layer uses; shapes broadcast against [N, C, H, W]."""

    def __call__(self, index: int, x: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError


def _scaled_box(box: Box, x: Tensor, full_height: int) -> Box:
    """Map a full-resolution box to the resolution of activation ``x`` (a power-of-two stride)."""
    stride = max(1, full_height // x.shape[-2])
    top, left, bottom, right = box
    return top // stride, left // stride, bottom // stride, right // stride


def _box_sums(x: Tensor, boxes: Sequence[Box], full_height: int) -> tuple[Tensor, Tensor, int]:
    """Per-channel sum and sum of squares (float64) of each item's box, and the pixel count."""
    total = torch.zeros(x.shape[1], dtype=torch.float64, device=x.device)
    total_sq = torch.zeros_like(total)
    count = 0
    for item, box in zip(x, boxes):
        t, l, b, r = _scaled_box(box, x, full_height)
        region = item[:, t:b, l:r].double()
        total += region.sum(dim=(1, 2))
        total_sq += (region * region).sum(dim=(1, 2))
        count += (b - t) * (r - l)
    return total, total_sq, count


def _moments(total: Tensor, total_sq: Tensor, count: int) -> tuple[Tensor, Tensor]:
    mean = total / count
    var = (total_sq / count - mean * mean).clamp_min(0)
    return mean.float(), var.float()


class PerInstance(StatsPolicy):
    """Standard instance normalisation: every batch item normalised by its own statistics."""

    def __call__(self, index: int, x: Tensor) -> tuple[Tensor, Tensor]:
        xf = x.float()
        var, mean = torch.var_mean(xf, dim=(2, 3), keepdim=True, correction=0)
        return mean, var


class Collect(StatsPolicy):
    """Pool statistics over every item of the batch (optionally only inside ``boxes``) and record them.

    ``full_height`` is the height of the network input, so boxes can be mapped to the
    stride of each layer.
    """

    def __init__(self, boxes: Sequence[Box] | None = None, full_height: int | None = None):
        self.boxes, self.full_height = boxes, full_height
        self.means: list[Tensor] = []
        self.variances: list[Tensor] = []

    def __call__(self, index: int, x: Tensor) -> tuple[Tensor, Tensor]:
        xf = x.float()
        if self.boxes is None:
            var, mean = torch.var_mean(xf, dim=(0, 2, 3), correction=0)
        else:
            mean, var = _moments(*_box_sums(xf, self.boxes, self.full_height))
        assert index == len(self.means), "norm layers must run in order"
        self.means.append(mean.cpu())
        self.variances.append(var.cpu())
        return mean.view(1, -1, 1, 1), var.view(1, -1, 1, 1)

    def result(self) -> NormStats:
        return NormStats(tuple(self.means), tuple(self.variances))


class Replay(StatsPolicy):
    """Use fixed statistics for every layer (statistics already on the activations' device)."""

    def __init__(self, stats: NormStats):
        self.stats = stats

    def __call__(self, index: int, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.stats.means[index].view(1, -1, 1, 1), self.stats.variances[index].view(1, -1, 1, 1)


class ProbeDone(Exception):
    """Raised by ``Probe`` to end a forward pass once the probed layer is summed."""


class Probe(StatsPolicy):
    """Replay ``known`` for the layers before ``layer``; sum layer ``layer`` over ``boxes`` and stop.

    Sums accumulate in float64 across calls, so one Probe can visit every patch of an image.
    """

    def __init__(self, known: NormStats, layer: int, channels: int, device: torch.device):
        self.known, self.layer = known, layer
        self.total = torch.zeros(channels, dtype=torch.float64, device=device)
        self.total_sq = torch.zeros_like(self.total)
        self.count = 0
        self.boxes: Sequence[Box] = ()
        self.full_height = 1

    def at(self, boxes: Sequence[Box], full_height: int) -> "Probe":
        """Set the boxes of the next batch (one per item, full-resolution pixels)."""
        self.boxes, self.full_height = boxes, full_height
        return self

    def __call__(self, index: int, x: Tensor) -> tuple[Tensor, Tensor]:
        if index < self.layer:
            return self.known.means[index].view(1, -1, 1, 1), self.known.variances[index].view(1, -1, 1, 1)
        total, total_sq, count = _box_sums(x, self.boxes, self.full_height)
        self.total += total
        self.total_sq += total_sq
        self.count += count
        raise ProbeDone

    def result(self) -> tuple[Tensor, Tensor]:
        mean, var = _moments(self.total, self.total_sq, self.count)
        return mean.cpu(), var.cpu()


def instance_norm(x: Tensor, index: int, gamma: Tensor, beta: Tensor, policy: StatsPolicy, eps: float) -> Tensor:
    """Normalise ``x`` with the statistics ``policy`` gives layer ``index``, then scale and shift.

    gamma/beta: [N or 1, C]. The statistics are float32 whatever the activations' dtype.
    """
    mean, var = policy(index, x)
    scale = gamma.float()[:, :, None, None] * torch.rsqrt(var + eps)
    shift = beta.float()[:, :, None, None] - mean * scale
    return (x * scale.to(x.dtype) + shift.to(x.dtype))
