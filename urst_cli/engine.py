"""The streaming engine: bands of the input in, blended rows of the stylized image out.

Memory is bounded by one band of windows (window height x image width), whatever the
image height; every pixel is read once and written once, top to bottom.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from .errors import raise_if_stopped
from .heap import TrimOnGrowth
from .models import (Box, Conditioning, NormStats, PerInstance, Replay, StatsPolicy, Stylizer, collect, pad_to_valid,
                     zero_padded_copy)
from .reader import BandReader, prefetched
from .tiling import Axis, plan_axis
from .timing import Stopwatch

__all__ = ["TilePlan", "Runner", "batch_for_memory", "inside_image", "iter_batches", "batch_columns", "window_patches",
           "Finish", "row_ends", "support_weights", "blend_rows", "stylize_rows", "stylize_span"]


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

    def __init__(self, model: Stylizer, cond: Conditioning, device: torch.device, bfloat16: bool | None = None):
        """``bfloat16``: run convolutions under bf16 autocast (statistics stay float32); None: on CUDA only."""
        self.model, self.cond, self.device = model, cond, device
        if bfloat16 is None:
            bfloat16 = device.type == "cuda"
        self.bfloat16 = bfloat16
        self._autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bfloat16 else nullcontext()
        self._staging = _PinnedBuffers(2) if device.type == "cuda" else None
        self._patch_bytes: dict[int, int] = {}
        self._zero_padded = zero_padded_copy(model)

    @torch.inference_mode()
    def to_tensor(self, windows: Sequence[np.ndarray]) -> Tensor:
        """uint8 windows [H,W,>=3] of one size (views of a band, or an array [B,H,W,>=3]) -> float32 [B,3,H,W]
        in [0,1] on the device, in channels-last memory (the HWC layout of the pixels).

        On the CPU each window is converted and scaled straight from the band into the network's input:
        one pass, no stacked copy. On CUDA the windows are cut straight into a page-locked buffer (two
        take turns), copied to the device as uint8 (4x less traffic) asynchronously, and converted there.
        Always in inference mode: the reused buffers are then inference tensors whichever caller made
        them, and refilling one in place is allowed.
        """
        pixels = [torch.from_numpy(w[..., :3]) for w in windows]
        shape = (len(pixels), *pixels[0].shape)
        if self._staging is None:
            x = torch.empty(shape, dtype=torch.float32)
            for k, p in enumerate(pixels):
                torch.mul(p, 1 / 255, out=x[k])
            return x.permute(0, 3, 1, 2)
        staged = self._staging.take(shape, torch.uint8)
        for k, p in enumerate(pixels):
            staged[k].copy_(p)
        x = staged.to(self.device, non_blocking=True)
        self._staging.record()
        return (x.permute(0, 3, 1, 2) * (1 / 255)).contiguous(memory_format=torch.channels_last)

    def patch_bytes(self, patch: int) -> int:
        """Peak device memory one more patch of ``patch`` pixels a side adds to a batch (CUDA; measured once)."""
        if patch not in self._patch_bytes:
            self._patch_bytes[patch] = self._measure_patch_bytes(patch)
        return self._patch_bytes[patch]

    @torch.inference_mode()
    def _measure_patch_bytes(self, patch: int) -> int:
        x = self.to_tensor(np.zeros((2, patch, patch, 3), np.uint8))
        torch.cuda.synchronize(self.device)
        peaks = []
        for n in (1, 2):
            torch.cuda.reset_peak_memory_stats(self.device)
            base = torch.cuda.memory_allocated(self.device)
            self(x[:n], PerInstance(self.model))
            peaks.append(torch.cuda.max_memory_allocated(self.device) - base)
        return max(peaks[1] - peaks[0], peaks[0] // 2, 1)

    @torch.inference_mode()
    def __call__(self, x: Tensor, stats: StatsPolicy, inside: bool = False) -> Tensor:
        """The stylized batch; ``inside``: every window edge is a cut edge that blending discards (see
        ``inside_image``), so the network may pad with zeros there."""
        model = self._zero_padded if inside and self._zero_padded is not None else self.model
        with self._autocast:
            return model(x, self.cond, stats).float()

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


class _PinnedBuffers:
    """Page-locked host buffers taking turns (CUDA): one is handed out again only once the transfer last queued
    on it is complete, so a copy can be in flight while the next buffer is filled or read."""

    def __init__(self, count: int):
        self.count = count
        self._buffers: list[Tensor | None] = [None] * count
        self._done: list[torch.cuda.Event | None] = [None] * count
        self._turn = 0

    def take(self, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        """The buffer whose turn it is, as a tensor of ``shape`` (grown if too small)."""
        turn = self._turn
        if self._done[turn] is not None:
            self._done[turn].synchronize()
        size = math.prod(shape) * dtype.itemsize
        if self._buffers[turn] is None or self._buffers[turn].numel() < size:
            self._buffers[turn] = torch.empty(size, dtype=torch.uint8, pin_memory=True)
        return self._buffers[turn][:size].view(dtype).view(shape)

    def record(self) -> torch.cuda.Event:
        """Mark the transfer just queued on the buffer last taken; the next ``take`` moves on to the next one."""
        done = self._done[self._turn] = torch.cuda.Event()
        done.record()
        self._turn = (self._turn + 1) % self.count
        return done


def batch_for_memory(patch_bytes: int, budget: int, free: int, cap: int = 32) -> int:
    """Windows per batch: as many as fit in ``budget`` bytes of device memory, or in 80% of what is free
    if that is less (other processes), at least 1, at most ``cap``."""
    return max(1, min(cap, min(budget, int(free * 0.8)) // max(patch_bytes, 1)))


def inside_image(plan: TilePlan, radius: int, cols: Axis, rows: Axis, r: int, js: list[int]) -> bool:
    """Whether every edge of windows ``js`` in band row ``r`` is a cut edge (none on the padded frame's border)
    whose blend weights start beyond the network's receptive ``radius``: padding there reaches ``radius``
    pixels in (measured), so nothing it touches is kept and the network may pad with zeros."""
    return (plan.overlap - plan.feather // 2 > radius and 0 < r < len(rows) - 1
            and js[0] > 0 and js[-1] < len(cols) - 1)


def iter_batches(reader: BandReader, cols: Axis, rows: Axis, batch: int, clock: Stopwatch = Stopwatch(),
                 first_row: int = 0) -> Iterator[tuple[int, np.ndarray, list[int]]]:
    """(row index, the band's pixels, column indices of one batch), band by band from ``first_row`` down.

    The next band is decoded while this one's batches run (a band stays valid until the next is requested).
    """
    bands = prefetched(reader, [(rows.starts[r], rows.starts[r] + rows.window) for r in range(first_row, len(rows))])
    for r in range(first_row, len(rows)):
        with clock("read"):
            band = next(bands)
        for js in batch_columns(len(cols), batch):
            raise_if_stopped()
            yield r, band, js


def batch_columns(columns: int, batch: int) -> list[list[int]]:
    """The column indices of each batch of a band row, left to right."""
    return [list(range(first, min(first + batch, columns))) for first in range(0, columns, batch)]


def window_patches(band: np.ndarray, cols: Axis, js: list[int]) -> list[np.ndarray]:
    """The band's windows ``js``: views uint8 [band rows, window, bands] (``Runner.to_tensor`` cuts them out)."""
    return [band[:, cols.starts[j]: cols.starts[j] + cols.window] for j in js]


Finish = Callable[[Tensor, np.ndarray], Tensor]
"""Turns blended float32 [n, w, 3] (device, in the units ``blend_rows`` was given) and the same input pixels
uint8 [n, w, bands] into output [n, w, 3] (device, any dtype); input bands beyond 3 (alpha) are carried over."""


class _Downloads:
    """Finished pieces of a band row, copied from the device into its output buffer one batch late.

    The host waits for a piece only once the next batch's forward pass is queued, so the device is
    never idle while the host copies. On CUDA the pieces go through page-locked buffers taking turns,
    asynchronously; on the CPU a piece is already host memory, and the same order is kept.
    """

    def __init__(self, device: torch.device):
        self._pinned = _PinnedBuffers(3) if device.type == "cuda" else None
        self._pending: list[tuple[Tensor, torch.cuda.Event | None, np.ndarray, np.ndarray]] = []

    def start(self, piece: Tensor, dest: np.ndarray, source: np.ndarray) -> None:
        """Copy ``piece`` [n, w, 3] into ``dest`` [n, w, c], with ``source``'s bands beyond 3 after it."""
        if self._pinned is None:
            host, done = piece, None
        else:
            if len(self._pending) == self._pinned.count:
                self._land_oldest()  # its buffer is the one whose turn it is
            host = self._pinned.take(tuple(piece.shape), piece.dtype)
            host.copy_(piece, non_blocking=True)
            done = self._pinned.record()
        self._pending.append((host, done, dest, source))

    def land(self) -> None:
        """Wait for every piece started and put it in place."""
        while self._pending:
            self._land_oldest()

    def _land_oldest(self) -> None:
        host, done, dest, source = self._pending.pop(0)
        if done is not None:
            done.synchronize()
        dest[:, :, :3] = host.numpy()
        dest[:, :, 3:] = source[:, :, 3:]


def _open_from(rows: Axis, r: int) -> int:
    """The first padded-frame row that band row ``r`` leaves open: from the next boundary's ramp on, the
    next band row still adds its share (the last band row leaves none)."""
    return rows.length if r == len(rows) - 1 else rows.bounds[r + 1] - rows.feather // 2


def row_ends(rows: Axis, height: int) -> list[int]:
    """Per band row, the output row up to which it completes the image (exclusive)."""
    return [min(_open_from(rows, r), height) for r in range(len(rows))]


def support_weights(axis: Axis, device: torch.device, scale: float = 1.0) -> list[Tensor]:
    """Per window of ``axis``, ``scale`` x its blend weights over its support, on the device. Made once per
    job: copied per window, each host-to-device copy would also wait for the device to finish its queue."""
    weights = []
    for i in range(len(axis)):
        lo, hi = axis.support(i)
        start = axis.starts[i]
        weights.append(torch.from_numpy(axis.weights(i)[lo - start: hi - start] * np.float32(scale)).to(device))
    return weights


def blend_rows(
    reader: BandReader,
    runner: Runner,
    stats: NormStats,
    plan: TilePlan,
    finish: Finish,
    on_patches: Callable[[int], None] = lambda n: None,
    clock: Stopwatch = Stopwatch(),
    start_row: int = 0,
    scale: float = 1.0,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (first row, finished rows [n, width, c]) band row by band row, tiling rows [start_row, height).

    Any ``start_row`` gives the rows a whole pass gives there, byte for byte: the pass starts at the first
    band row whose support reaches below ``start_row`` (those above it add nothing to these rows), and
    rows above ``start_row`` are not yielded (the first band row's may lack the share of the one above).
    ``scale`` multiplies the blend weights, so the blended values arrive in the units
    ``finish`` wants (255: 8-bit levels) at no extra pass over the pixels.

    Blending stays in float32 only where it is still open: a strip of columns as wide as one
    batch of windows, and the rows the next band row will add to (the carry). Columns are
    finished (``finish``, e.g. rounding to uint8) as soon as no later window reaches them, and
    copied to the host one batch late (see ``_Downloads``), so the only buffers as large as a
    band row hold finished values: 4x less memory than a float accumulator at any image width.
    Everything is rows x columns x channels, the layout of the network's channels-last output
    and of the image, so no step transposes.

    A yielded block is a view of one of two buffers taking turns, valid until the block after
    the next one is requested: a consumer may work on one block while the next is computed.
    """
    cols, rows = plan.axes(reader.padded_width, reader.padded_height)
    width, dev = reader.width, runner.device
    policy = Replay(stats.to(dev), runner.model)
    row_ramps, col_ramps = support_weights(rows, dev, scale), support_weights(cols, dev)
    strip = torch.zeros(rows.window, min(cols.length, plan.batch * cols.window), 3, device=dev)
    carry_rows = max((rows.support(r)[1] - _open_from(rows, r) for r in range(len(rows))), default=0)
    carry = torch.zeros(carry_rows, width, 3, device=dev)  # rows [0, carried) are added to the next band row
    carried = 0
    ends = row_ends(rows, reader.height)
    finished: list[np.ndarray | None] = [None, None]  # taking turns, band row by band row
    # the most rows a band row of each turn finishes (the first band row finishes its context rows too)
    finished_rows = [max([end - rows.support(r)[0] for r, end in enumerate(ends) if r % 2 == turn], default=0)
                     for turn in (0, 1)]
    downloads = _Downloads(dev)
    strip_left = 0  # image column of the strip's first column
    trim = TrimOnGrowth()
    first_row = next(r for r in range(len(rows)) if rows.support(r)[1] > start_row)
    on_patches(first_row * len(cols))
    for r, band, js in iter_batches(reader, cols, rows, plan.batch, clock, first_row):
        top = rows.starts[r]
        lo, hi = rows.support(r)
        emit_end = _open_from(rows, r)
        skipped = max(start_row - lo, 0)  # rows of this band row above start_row
        emitted = max(ends[r] - lo - skipped, 0)
        row_weights = row_ramps[r][:, None, None]

        def settle(a: int, b: int) -> None:
            """Columns [a, b) of this band row are complete: add and save the carry, finish."""
            b = min(b, width)
            if a >= b:
                return
            part = strip[: hi - lo, a - strip_left: b - strip_left]
            part[:carried] += carry[:carried, a:b]
            carry[: hi - emit_end, a:b] = part[emit_end - lo:]  # nothing in the last band row
            if emitted > 0:
                source = band[lo + skipped - top: lo + skipped - top + emitted, a:b]
                piece = finish(part[skipped: skipped + emitted], source)
                if finished[r % 2] is None:
                    dtype = torch.empty(0, dtype=piece.dtype).numpy().dtype
                    finished[r % 2] = np.empty((finished_rows[r % 2], width, band.shape[2]), dtype)
                downloads.start(piece, finished[r % 2][:emitted, a:b], source)

        with clock("model"):  # staged before the previous batch is settled: on CUDA that waits for the device
            x = runner.to_tensor(window_patches(band, cols, js))
        first = cols.support(js[0])[0]
        if js[0] > 0:  # columns left of this batch's first window are complete
            settle(strip_left, first)
        with clock("model"):
            out = runner(x, policy, inside_image(plan, runner.model.receptive_radius, cols, rows, r, js))
        downloads.land()  # while the device runs this batch
        if js[0] == 0:
            strip_left = 0
            strip.zero_()
        else:  # slide the strip to the batch's first window: what is open moves to its start, the rest is cleared
            shift = first - strip_left
            kept = strip.shape[1] - shift
            strip[:, :kept] = strip[:, shift:] if shift >= kept else strip[:, shift:].clone()
            strip[:, kept:].zero_()
            strip_left = first
        out = out.permute(0, 2, 3, 1)[:, lo - top: hi - top]  # a view: channels-last memory is already HWC
        for k, j in enumerate(js):
            c0, c1 = cols.support(j)
            left = cols.starts[j]
            strip[: hi - lo, c0 - strip_left: c1 - strip_left].addcmul_(out[k, :, c0 - left: c1 - left],
                                                                        row_weights * col_ramps[j][:, None])
        on_patches(len(js))
        if js[-1] != len(cols) - 1:
            continue  # the band row is not complete yet
        settle(strip_left, cols.length)
        downloads.land()
        carried = hi - emit_end
        trim()
        if emitted > 0:
            yield lo + skipped, finished[r % 2][:emitted]


def stylize_rows(
    reader: BandReader,
    runner: Runner,
    stats: NormStats,
    plan: TilePlan,
    on_patches: Callable[[int], None] = lambda n: None,
    preserve_color: bool = False,
    clock: Stopwatch = Stopwatch(),
    start_row: int = 0,
    on_band: Callable[[int], None] = lambda rows_done: None,
) -> Iterator[np.ndarray]:
    """Yield the stylized image from ``start_row`` (see ``blend_rows``) as consecutive blocks of rows:
    uint8 [n, width, 3 (+ alpha)], each a view valid until the block after the next one is requested
    (``writer.write_rows`` takes them so). ``on_band(rows done)`` runs after each band row's block.
    """
    if start_row >= reader.height:
        return
    def to_uint8(levels: Tensor, source: np.ndarray) -> Tensor:
        if preserve_color:
            levels = keep_colours(levels, source, runner.device)
        return levels.add_(0.5).clamp_(0, 255).to(torch.uint8)  # + 0.5, truncated: rounded

    for first, block in blend_rows(reader, runner, stats, plan, to_uint8, on_patches, clock, start_row, scale=255.0):
        yield block
        on_band(first + block.shape[0])


def stylize_span(
    reader: BandReader,
    runner: Runner,
    stats: NormStats,
    plan: TilePlan,
    top: int,
    bottom: int,
    preserve_color: bool = False,
    clock: Stopwatch = Stopwatch(),
) -> Iterator[np.ndarray]:
    """Output rows [top, bottom) as ``stylize_rows`` yields them for the whole image, byte for byte: blocks
    uint8 [n, width, 3 (+ alpha)], each valid until the block after the next one is requested.

    The pass starts at the first band row that reaches below ``top`` (see ``blend_rows``) and stops at the
    band row that completes ``bottom``, so any span of rows can be computed on its own: one machine after
    another, or bands of one image on many, each band row run by no more than the two spans it straddles.
    """
    first = top
    for block in stylize_rows(reader, runner, stats, plan, preserve_color=preserve_color, clock=clock,
                              start_row=top):
        last = first + block.shape[0]
        yield block[: min(bottom, last) - first]
        if last >= bottom:
            return
        first = last


LUMA = (0.299, 0.587, 0.114)  # BT.601, as in JPEG's YCbCr


def keep_colours(stylized: Tensor, content: np.ndarray, device: torch.device) -> Tensor:
    """The stylized luminance with the content's chroma (Gatys et al.'s luminance-only transfer), in place.

    ``stylized`` is [n, w, 3] in 8-bit levels (0-255), like ``content``. In YCbCr, replacing Y
    only is adding the same luminance change to R, G and B.
    """
    photo = torch.from_numpy(np.ascontiguousarray(content[:, :, :3])).to(device).float()
    change = ((stylized - photo) * torch.tensor(LUMA, device=device)).sum(dim=2, keepdim=True)
    return stylized.copy_(photo).add_(change)
