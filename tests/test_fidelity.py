"""Replayed statistics make tiled output equal whole-image output."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from urst_cli.engine import Runner, TilePlan, blend_rows, stylize_rows, stylize_span
from urst_cli.job import Job, conditioning, load_model
from urst_cli.models import PerInstance, Replay, get_spec, pad_to_valid, valid_size, zero_padded_copy
from urst_cli.reader import BandReader, read_whole
from urst_cli.stats import exact_stats, whole_stats
from urst_cli.writer import OutputSpec

from conftest import resized

CPU = torch.device("cpu")


def _runner(painting, model="magenta", preset=None, **options):
    image_style = get_spec(model).style == "image"
    job = Job(input=painting, output=OutputSpec(painting), model=model, styles=[painting] if image_style else [],
              presets=[preset] if preset is not None else [], **options)
    net = load_model(job, CPU)
    return Runner(net, conditioning(job, net, CPU), CPU)


def _tiled(runner, path, stats, plan) -> np.ndarray:
    net = runner.model
    img = read_whole(path)
    reader = BandReader(path, valid_size(img.shape[1], net), valid_size(img.shape[0], net))
    def keep_float(blended, source):
        return blended

    blocks = [block.copy() for _, block in blend_rows(reader, runner, stats, plan, keep_float)]
    return np.concatenate(blocks).transpose(2, 0, 1)


def _whole(runner, path) -> np.ndarray:
    img = read_whole(path)
    x = pad_to_valid(runner.to_tensor(img[None]), runner.model)
    return runner(x, PerInstance(runner.model))[0, :, : img.shape[0], : img.shape[1]].numpy()


def test_exact_stats_tiled_equals_whole_image(tmp_path, photo, painting):
    """The issue's acceptance check: a real photo at 2048x1536, patches far smaller than the image."""
    path = resized(photo, tmp_path / "photo.png", 2048, 1536)
    runner = _runner(painting)
    plan = TilePlan(patch=768, overlap=64, feather=16, batch=1)  # 3 x 3 windows: the middle one pads with zeros
    net = runner.model
    stats = exact_stats(runner, lambda: BandReader(path, valid_size(2048, net), valid_size(1536, net)), plan)
    whole = _whole(runner, path)
    tiled = _tiled(runner, path, stats, plan)
    assert tiled.shape == whole.shape == (3, 1536, 2048)
    assert np.abs(tiled - whole).max() <= 1e-4
    # and the streamed statistics are the whole image's own
    reference = whole_stats(runner, read_whole(path))
    for a, b in zip(stats.means + stats.variances, reference.means + reference.variances):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("size", [(1001, 333), (37, 290), (130, 10), (515, 517)])
@pytest.mark.parametrize("model", ["magenta", "multistyle26"])
def test_whole_stats_tiled_equals_whole_at_odd_sizes(tmp_path, small_photo, painting, size, model):
    width, height = size
    path = resized(small_photo, tmp_path / "odd.png", width, height)
    runner = _runner(painting, model, preset=7 if model == "multistyle26" else None)
    net = runner.model
    overlap = -(-(net.receptive_radius + 8) // 4) * 4
    plan = TilePlan(patch=2 * overlap + 96, overlap=overlap, feather=16, batch=3)
    stats = whole_stats(runner, read_whole(path))
    tiled = _tiled(runner, path, stats, plan)
    whole = _whole(runner, path)
    assert tiled.shape == whole.shape == (3, height, width)
    assert np.abs(tiled - whole).max() <= 1e-4


@pytest.mark.parametrize("model", ["magenta", "multistyle26"])
def test_zero_padding_changes_nothing_beyond_the_receptive_radius(tmp_path, small_photo, painting, model):
    """Why windows inside the image may skip reflection: blending keeps nothing within the radius of a cut edge."""
    runner = _runner(painting, model, preset=7 if model == "multistyle26" else None)
    net = runner.model
    img = read_whole(resized(small_photo, tmp_path / "square.png", 256, 256))
    x = runner.to_tensor(img[None])
    policy = Replay(whole_stats(runner, img), net)
    change = (runner(x, policy) - runner(x, policy, inside=True)).abs().amax(dim=1)[0]
    r = net.receptive_radius
    assert change.max() > 1e-2  # the edges really were padded differently
    assert change[r + 1: -r - 1, r + 1: -r - 1].max() == 0  # inside_image keeps only pixels beyond r
    copy = zero_padded_copy(net)
    assert all(a.data_ptr() == b.data_ptr() for a, b in zip(net.parameters(), copy.parameters()))


class _Counted(Runner):
    """The runner, counting the windows it runs."""

    windows = 0

    def __call__(self, x, stats, inside=False):
        self.windows += len(x)
        return super().__call__(x, stats, inside)


def test_any_span_of_rows_equals_the_whole_pass_and_runs_only_the_window_rows_it_reaches(tmp_path, small_photo,
                                                                                        painting):
    """What a band on a cluster worker computes: rows [top, bottom) byte for byte, from the window rows whose
    blend support meets them and no others (tops in cores and on the blend ramps)."""
    width, height = 260, 600
    path = resized(small_photo, tmp_path / "tall.png", width, height)
    plain = _runner(painting)
    runner = _Counted(plain.model, plain.cond, CPU)
    overlap = -(-(runner.model.receptive_radius + 8) // 4) * 4
    plan = TilePlan(patch=2 * overlap + 96, overlap=overlap, feather=16, batch=1)
    stats = whole_stats(runner, read_whole(path))
    pw, ph = valid_size(width, runner.model), valid_size(height, runner.model)
    cols, rows = plan.axes(pw, ph)
    assert len(cols) == 2 and len(rows) >= 5
    whole = np.concatenate([b.copy() for b in stylize_rows(BandReader(path, pw, ph), runner, stats, plan)])
    half = plan.feather // 2  # tops in a core, on either side of each blend ramp's ends, on its middle
    for top in sorted({0, 100, *(b + d for b in rows.bounds[1:-1] for d in (-half - 1, -half, 0, half - 1, half))}):
        bottom = min(top + 90, height)
        runner.windows = 0
        span = np.concatenate([b.copy() for b in stylize_span(BandReader(path, pw, ph), runner, stats, plan, top,
                                                              bottom)])
        assert np.array_equal(span, whole[top:bottom]), top
        reached = [r for r in range(len(rows)) if rows.support(r)[1] > top and rows.support(r)[0] < bottom]
        assert runner.windows == len(reached) * len(cols), top
