"""Estimating the instance-norm statistics of a whole (possibly gigapixel) image.

Each estimator returns a ``NormStats`` that the engine replays on every patch:

  exact      the true full-resolution statistics: one streaming pass over the image per norm
             layer, each pass replaying the layers already known and summing the next one
             over the cores of all patches (each pixel counted once). Tiled output then equals
             whole-image output. Cost: about (number of norm layers / 2) forward passes.
  whole      the same numbers from one forward pass over the whole image held in memory
             (small images).
  sampled    full-resolution statistics pooled over a stratified sample of crops: the image
             is split into equal cells, one crop per cell at a seeded random position, each
             crop run with context around it and pooled only over its interior, all crops in
             one batch so every layer pools over all of them together.
  thumbnail  URST's Thumbnail Instance Normalization: statistics of a downsampled view.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, Iterable

import numpy as np
from torch import Tensor

from .engine import Runner, TilePlan, inside_image, iter_batches, window_patches
from .heap import trim_heap
from .models import Box, NormStats, Probe, ProbeDone, pad_to_valid
from .reader import BandReader, read_crops

__all__ = ["whole_stats", "exact_stats", "sampled_stats", "SampleSpec", "sample_boxes"]


def whole_stats(runner: Runner, image: np.ndarray) -> NormStats:
    """Statistics of one image held in memory (uint8 [H,W,3]), padded as the network pads it."""
    return runner.collect([image[None]], [None], 1)


def exact_stats(runner: Runner, open_reader: Callable[[], BandReader], plan: TilePlan,
                on_pass: Callable[[int, int], None] = lambda k, n: None) -> NormStats:
    """True full-resolution statistics by streaming passes, one per norm layer."""
    def windows():
        reader = open_reader()
        cols, rows = plan.axes(reader.padded_width, reader.padded_height)
        for r, band, js in iter_batches(reader, cols, rows, plan.batch):
            boxes = []
            for j in js:
                (t, b), (l, rr) = rows.core(r), cols.core(j)
                top, left = rows.starts[r], cols.starts[j]
                boxes.append((t - top, l - left, b - top, rr - left))
            inside = inside_image(plan, runner.model.receptive_radius, cols, rows, r, js)  # cores lie further in
            yield runner.to_tensor(window_patches(band, cols, js)), boxes, rows.window, inside

    return _probed_stats(runner, windows, on_pass)


def _probed_stats(runner: Runner, batches: Callable[[], Iterable[tuple[Tensor, list[Box], int, bool]]],
                  on_pass: Callable[[int, int], None] = lambda k, n: None) -> NormStats:
    """Statistics pooled inside the boxes of every batch, one norm layer per sweep over ``batches()``: each
    batch (x, per-item boxes, full height, inside) runs up to the layer, replaying the layers already known."""
    means, variances = [], []
    for layer in range(len(runner.model.norm_channels)):
        known = NormStats(tuple(means), tuple(variances)).to(runner.device)
        probe = Probe(known, layer, runner.model, runner.device)
        for x, boxes, full_height, inside in batches():
            try:
                runner(x, probe.at(boxes, full_height), inside)
            except ProbeDone:
                pass
        mean, second = probe.moments.result()
        means.append(mean.flatten().cpu())
        variances.append(second.cpu() if probe.moments.covariance else second.flatten().cpu())
        on_pass(layer + 1, len(runner.model.norm_channels))
    return NormStats(tuple(means), tuple(variances))


@dataclass(frozen=True)
class SampleSpec:
    """A stratified sample: ``crops`` cells, each with one ``size``-pixel crop plus ``context`` around it."""

    crops: int = 16
    size: int = 384
    context: int = 64
    seed: int = 0


def sample_boxes(width: int, height: int, spec: SampleSpec, multiple: int = 4):
    """(input box, interior box within the input) per crop, all on the padded frame's 4-pixel grid.

    Cells split the frame into a near-square grid of equal areas; a crop's interior lies inside
    its cell, so crops never overlap and every region of the image is equally represented.
    Every input box has the same size (interior plus context, shifted inwards at the image
    edges, where the network's own padding is what the whole image gets), so all crops run
    as one batch.
    """
    rng = np.random.default_rng(spec.seed)
    grid_rows = max(1, round(math.sqrt(spec.crops * height / width)))
    grid_cols = max(1, round(spec.crops / grid_rows))
    out = []
    for gr in range(grid_rows):
        for gc in range(grid_cols):
            it, ib = _place(rng, gr * height // grid_rows, (gr + 1) * height // grid_rows, spec.size, multiple)
            il, ir = _place(rng, gc * width // grid_cols, (gc + 1) * width // grid_cols, spec.size, multiple)
            ot, ob = _surround(it, ib, spec.size + 2 * spec.context, height)
            ol, orr = _surround(il, ir, spec.size + 2 * spec.context, width)
            out.append(((ot, ol, ob, orr), (it - ot, il - ol, ib - ot, ir - ol)))
    return out


def _surround(start: int, end: int, size: int, length: int) -> tuple[int, int]:
    """A span of ``size`` (at most ``length``) centred on [start, end), shifted to stay inside [0, length)."""
    size = min(size, length)
    lo = min(max((start - (size - (end - start)) // 2) // 4 * 4, 0), length - size)
    return lo, lo + size


def _place(rng: np.random.Generator, lo: int, hi: int, size: int, multiple: int) -> tuple[int, int]:
    """A [start, end) of ``size`` (or the whole cell, if smaller) at a random grid position in [lo, hi)."""
    lo_m, hi_m = -(-lo // multiple) * multiple, hi // multiple * multiple
    size = min(size, hi_m - lo_m)
    start = lo_m + int(rng.integers(0, (hi_m - lo_m - size) // multiple + 1)) * multiple
    return start, start + size


def sampled_stats(runner: Runner, open_reader: Callable[[], BandReader], spec: SampleSpec) -> NormStats:
    """Statistics pooled over a stratified sample of full-resolution crops.

    Every crop is its own forward pass; the passes advance layer by layer together, so each
    layer pools over all crops while memory holds only their paused activations and one
    crop's working set. A network with ``probe_samples`` runs each crop again for each norm
    layer instead (as the exact estimator runs its windows): one crop's activations at a time.
    """
    if runner.model.sample_crop is not None:  # wide full-resolution activations: 16 paused crops must stay small
        size, context = runner.model.sample_crop
        spec = replace(spec, size=min(spec.size, size), context=context)
    reader = open_reader()
    boxes = sample_boxes(reader.padded_width, reader.padded_height, spec)
    crops = read_crops(reader, [outer for outer, _ in boxes])
    del reader  # its band buffer and libvips' decoding state are as wide as the image
    trim_heap()
    if runner.model.probe_samples:  # one crop's activations at a time, each crop run once per norm layer
        stats = _probed_stats(runner, lambda: ((pad_to_valid(runner.to_tensor(crop[None]), runner.model), [inner],
                                                crop.shape[0], False) for crop, (_, inner) in zip(crops, boxes)))
    else:
        stats = runner.collect((crop[None] for crop in crops), [[inner] for _, inner in boxes], crops[0].shape[0])
    trim_heap()
    return stats
