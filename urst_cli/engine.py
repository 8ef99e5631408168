"""The streaming engine: bands of the input in, blended rows of the stylized image out.

Memory is bounded by one band of windows (window height x image width), whatever the
image height; every pixel is read once and written once, top to bottom.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
from torch import Tensor

from .models import Box, Conditioning, NormStats, Replay, StatsPolicy, Stylizer, collect, pad_to_valid
from .reader import BandReader
from .tiling import Axis, plan_axis

__all__ = ["TilePlan", "Runner", "iter_batches", "window_patches", "blend_rows", "stylize_rows"]

OUTPUT_ROWS = 64  # rows per block handed to the writer


@dataclass(frozen=True)
class TilePlan:
    """How an image is cut: window side, context per side, blend width, windows per batch, window grid."""

    patch: int
    overlap: int
    feather: int
    batch: int
    multiple: int = 4  # the network's total stride: windows start on this grid so tiles match the whole image

    def axes(self, padded_width: int, padded_height: int) -> tuple[Axis, Axis]:
        """(columns, rows) window layouts of the padded frame."""
        return (plan_axis(padded_width, self.patch, self.overlap, self.feather, self.multiple),
                plan_axis(padded_height, self.patch, self.overlap, self.feather, self.multiple))


class Runner:
    """Runs one stylizer with one style on one device: uint8 patches in, float32 [0,1] tensors out."""

    def __init__(self, model: Stylizer, cond: Conditioning, device: torch.device):
        self.model, self.cond, self.device = model, cond, device
        self._autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext())

    def to_tensor(self, patches: np.ndarray) -> Tensor:
        """uint8 [B,H,W,>=3] -> float32 [B,3,H,W] in [0,1] on the device (copied as uint8: 4x less traffic)."""
        x = torch.from_numpy(np.ascontiguousarray(patches[..., :3])).to(self.device, non_blocking=True)
        return x.permute(0, 3, 1, 2).float().div_(255.0).contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def __call__(self, x: Tensor, stats: StatsPolicy) -> Tensor:
        with self._autocast:
            return self.model(x, self.cond, stats).float()

    @torch.inference_mode()
    def collect(self, inputs: Iterable[np.ndarray], boxes: list[list[Box] | None], full_height: int) -> NormStats:
        """Statistics pooled over uint8 inputs [N,H,W,>=3] run in lockstep (see models.norm.collect).

        Each input becomes a float tensor only when its pass starts, and the pass lets go of
        it after its first layer: the inputs never exist as float all at once.
        """
        def lazy_pass(pixels: np.ndarray):
            yield from self.model.stages(pad_to_valid(self.to_tensor(pixels), self.model), self.cond)

        with self._autocast:
            return collect([lazy_pass(p) for p in inputs], boxes, full_height, self.model)


def iter_batches(reader: BandReader, cols: Axis, rows: Axis, batch: int) -> Iterator[tuple[int, np.ndarray, list[int]]]:
    """(row index, the band's pixels, column indices of one batch), band by band, top to bottom."""
    for r, top in enumerate(rows.starts):
        band = reader.read(top, top + rows.window)
        for first in range(0, len(cols), batch):
            yield r, band, list(range(first, min(first + batch, len(cols))))


def window_patches(band: np.ndarray, cols: Axis, js: list[int]) -> np.ndarray:
    """The band's windows ``js`` stacked: uint8 [len(js), band rows, window, bands]."""
    return np.stack([band[:, cols.starts[j]: cols.starts[j] + cols.window] for j in js])


def blend_rows(
    reader: BandReader,
    runner: Runner,
    stats: NormStats,
    plan: TilePlan,
    on_patches: Callable[[int], None] = lambda n: None,
) -> Iterator[tuple[int, Tensor, np.ndarray]]:
    """Yield (first row, float32 [3, n, padded width] on the device, the same rows of the input band).

    Consecutive blocks tile the image's rows [0, height) exactly; values are in [0, 1] before rounding.
    A block is a view of a reused buffer: valid (and free to modify) until the next one is requested.
    """
    cols, rows = plan.axes(reader.padded_width, reader.padded_height)
    policy = Replay(stats.to(runner.device), runner.model)
    # one accumulator for every band row (allocated once: no churn of width-sized buffers)
    buffer = torch.empty(3, rows.window, cols.length, device=runner.device)
    acc = carry = None
    for r, band, js in iter_batches(reader, cols, rows, plan.batch):
        top = rows.starts[r]
        lo, hi = rows.support(r)
        if js[0] == 0:
            acc = buffer[:, : hi - lo].zero_()
        out = runner(runner.to_tensor(window_patches(band, cols, js)), policy)[:, :, lo - top: hi - top]
        for k, j in enumerate(js):
            c0, c1 = cols.support(j)
            left = cols.starts[j]
            wx = torch.from_numpy(cols.weights(j)[c0 - left: c1 - left]).to(runner.device)
            acc[:, :, c0:c1] += out[k, :, :, c0 - left: c1 - left] * wx
        on_patches(len(js))
        if js[-1] != len(cols) - 1:
            continue  # the band row is not complete yet
        acc *= torch.from_numpy(rows.weights(r)[lo - top: hi - top]).to(runner.device)[:, None]
        if carry is not None:
            acc[:, : carry.shape[1]] += carry
        last = r == len(rows) - 1
        # rows from the next boundary's ramp on still get a share from the next band row
        emit_end = hi if last else rows.bounds[r + 1] - rows.feather // 2
        carry = None if last else acc[:, emit_end - lo:].clone()
        emit_end = min(emit_end, reader.height)
        if emit_end > lo:
            yield lo, acc[:, : emit_end - lo], band[lo - top: emit_end - top]


def stylize_rows(
    reader: BandReader,
    runner: Runner,
    stats: NormStats,
    plan: TilePlan,
    on_patches: Callable[[int], None] = lambda n: None,
    preserve_color: bool = False,
) -> Iterator[np.ndarray]:
    """Yield the stylized image as consecutive blocks of rows: uint8 [n, width, 3 (+ alpha)]."""
    width = reader.width
    for _, block, source in blend_rows(reader, runner, stats, plan, on_patches):
        # a few rows at a time: the blocks queued for the writer stay small at any image width
        for top in range(0, block.shape[1], OUTPUT_ROWS):
            part = block[:, top: top + OUTPUT_ROWS, :width]
            rows = source[top: top + OUTPUT_ROWS, :width]
            if preserve_color:
                part = keep_colours(part, rows, runner.device)
            rgb = part.clamp_(0, 1).mul_(255).add_(0.5).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
            yield np.concatenate([rgb, rows[:, :, 3:]], axis=2) if rows.shape[2] > 3 else rgb


LUMA = (0.299, 0.587, 0.114)  # BT.601, as in JPEG's YCbCr


def keep_colours(stylized: Tensor, content: np.ndarray, device: torch.device) -> Tensor:
    """The stylized luminance with the content's chroma (Gatys et al.'s luminance-only transfer), in place.

    In YCbCr, replacing Y only is adding the same luminance change to R, G and B.
    """
    photo = torch.from_numpy(np.ascontiguousarray(content[:, :, :3])).to(device).permute(2, 0, 1).float().div_(255)
    luma = torch.tensor(LUMA, device=device).view(3, 1, 1)
    change = ((stylized - photo) * luma).sum(dim=0, keepdim=True)
    return stylized.copy_(photo).add_(change)
