"""The VGG family (AdaIN, WCT, cWCT) and Johnson networks from user-supplied files, and the style controls.

Weight files are made here with the exact published layouts and random values, then go
through the real path: ``urst weights import`` -> ``urst weights list`` -> ``urst stylize``.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import pyvips
import torch

from urst_cli.engine import Runner, TilePlan
from urst_cli.job import Job, conditioning, load_model
from urst_cli.models import PerInstance, collect, mix, pad_to_valid
from urst_cli.models.base import run_layers
from urst_cli.models.vgg import WCT, AdaIN, encoder_layers
from urst_cli.precision import bfloat16_closeness
from urst_cli.reader import read_whole
from urst_cli.stats import whole_stats
from urst_cli.writer import OutputSpec

from conftest import published_johnson_file, published_vgg_files, resized, run_cli
from test_fidelity import _tiled, _whole

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    src, dest = tmp_path_factory.mktemp("pth"), tmp_path_factory.mktemp("weights")
    encoder, decoder = published_vgg_files(src)
    for path, model in ((encoder, "adain"), (decoder, "wct"), (published_johnson_file(src / "mosaic.pth"), "johnson")):
        proc = run_cli("weights", "import", path, "--model", model, "--weights-dir", dest, check=True)
        assert "imported" in proc.stdout
    return dest


def _runner(model, painting, weights_dir, **options):
    job = Job(input=painting, output=OutputSpec(painting), model=model, weights_dir=weights_dir,
              styles=[painting] if model in ("adain", "wct") else [], **options)
    net = load_model(job, CPU)
    return Runner(net, conditioning(job, net, CPU), CPU), job


def test_import_lists_every_file_with_size_and_hash(weights_dir):
    out = run_cli("weights", "list", "--weights-dir", weights_dir, check=True).stdout
    for stem in ("vgg_normalised", "vgg_decoder", "johnson-mosaic"):
        line = next(line for line in out.splitlines() if line.startswith(stem))
        sha = [w for w in line.split() if len(w) == 64]
        assert sha and (weights_dir / f"{stem}.safetensors").is_file()
    models = run_cli("models", "--weights-dir", weights_dir, check=True).stdout.split("\n")
    for family in ("adain", "wct", "johnson"):
        entry = models[next(i for i, line in enumerate(models) if line.startswith(family + " ")) + 1]
        assert "installed" in entry and "MISSING" not in entry, entry


@pytest.mark.parametrize("model,options", [("adain", {}), ("wct", {}), ("wct", {"transform": "cwct"}),
                                           ("johnson", {"weights": "mosaic"})])
def test_tiled_equals_whole_with_replayed_stats(tmp_path, small_photo, painting, weights_dir, model, options):
    runner, _ = _runner(model, painting, weights_dir, **options)
    net = runner.model
    path = resized(small_photo, tmp_path / "p.png", 331, 203)
    m = net.pad_multiple
    overlap = -(-(net.receptive_radius + 8) // m) * m
    plan = TilePlan(patch=2 * overlap + 96, overlap=overlap, feather=16, batch=2, multiple=m)
    stats = whole_stats(runner, read_whole(path))
    tiled, whole = _tiled(runner, path, stats, plan), _whole(runner, path)
    scale = np.abs(whole).max()
    assert np.abs(tiled - whole).max() <= 1e-4 * max(1.0, scale)


def _covariance(f):
    flat = f.double().flatten(2)[0]
    centred = flat - flat.mean(1, keepdim=True)
    return centred @ centred.T / flat.shape[1]


@pytest.mark.parametrize("transform", ["svd", "cwct"])
def test_wct_colours_to_the_style_covariance_and_survives_singular_content(transform):
    gen = torch.Generator().manual_seed(1)
    c = 32
    net = WCT(transform)
    mixing = torch.randn(c, c, generator=gen)
    content = (mixing @ torch.randn(c, 64 * 64, generator=gen)).view(1, c, 64, 64)
    style = (torch.randn(c, c, generator=gen) @ torch.randn(c, 96 * 96, generator=gen)).view(1, c, 96, 96) + 3
    style_cov = _covariance(style)
    cond = (net.colouring(style_cov), style.mean(dim=(2, 3)), torch.tensor([1.0]))
    mean, whiten = net.finish(0, content.mean(dim=(2, 3), keepdim=True), _covariance(content).float())
    out = net.recolour(content, mean, whiten, cond)
    error = torch.linalg.matrix_norm(_covariance(out) - style_cov) / torch.linalg.matrix_norm(style_cov)
    assert error <= 1e-3, error
    torch.testing.assert_close(out.mean(dim=(2, 3)), cond[1], atol=1e-3, rtol=1e-4)
    # singular content: a rank-4 signal in 32 channels, plus a constant channel
    low_rank = (torch.randn(c, 4, generator=gen) @ torch.randn(4, 64 * 64, generator=gen)).view(1, c, 64, 64)
    low_rank[:, 0] = 5.0
    mean, whiten = net.finish(0, low_rank.mean(dim=(2, 3), keepdim=True), _covariance(low_rank).float())
    assert torch.isfinite(net.recolour(low_rank, mean, whiten, cond)).all()


@pytest.mark.parametrize("model", ["adain", "wct"])
def test_alpha_zero_decodes_the_unchanged_content_features(small_photo, painting, weights_dir, model):
    runner, _ = _runner(model, painting, weights_dir, alpha=0.0)
    net = runner.model
    x = pad_to_valid(runner.to_tensor(read_whole(small_photo)[None]), net)
    with torch.inference_mode():
        expected = net.decode(net.encode(x))
    torch.testing.assert_close(runner(x, PerInstance(net)), expected, atol=1e-4, rtol=1e-4)


def _stylize(tmp_path, photo, name, *args):
    out = tmp_path / f"{name}.png"
    run_cli("stylize", photo, "-o", out, "--quiet", *args, check=True)
    return pyvips.Image.new_from_file(str(out)).numpy().astype(np.float64)


def test_alpha_moves_the_output_from_the_photo_to_the_style(tmp_path, small_photo, painting, weights_dir):
    args = ("-m", "adain", "-s", painting, "--weights-dir", weights_dir)
    outs = {a: _stylize(tmp_path, small_photo, f"a{a}", *args, "--alpha", str(a)) for a in (0.0, 0.5, 1.0)}
    far = np.abs(outs[0.0] - outs[1.0]).mean()
    assert np.abs(outs[0.5] - outs[1.0]).mean() < far and np.abs(outs[0.5] - outs[0.0]).mean() < far
    magenta = {a: _stylize(tmp_path, small_photo, f"m{a}", "-s", painting, "--alpha", str(a)) for a in (0.0, 1.0)}
    photo = read_whole(small_photo).astype(np.float64)
    assert np.abs(magenta[0.0] - photo).mean() < np.abs(magenta[1.0] - photo).mean()


def _chroma(rgb):
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    return np.array([(b - y).mean(), (r - y).mean()])


def test_preserve_color_keeps_the_photos_mean_chroma(tmp_path, small_photo, painting):
    photo = read_whole(small_photo).astype(np.float64)
    plain = _stylize(tmp_path, small_photo, "plain", "-s", painting)
    kept = _stylize(tmp_path, small_photo, "kept", "-s", painting, "--preserve-color")
    assert np.abs(_chroma(kept) - _chroma(photo)).max() < 1.0
    assert np.abs(_chroma(plain) - _chroma(photo)).max() > 3 * np.abs(_chroma(kept) - _chroma(photo)).max()


def test_style_weights_interpolate(tmp_path, small_photo, painting, weights_dir):
    other = resized(painting, tmp_path / "flipped.png", 300, 200)
    pyvips.Image.new_from_file(str(other)).flipver().colourspace("b-w").write_to_file(str(tmp_path / "grey.png"))
    other = tmp_path / "grey.png"
    base = ("-m", "adain", "--weights-dir", weights_dir)
    one = _stylize(tmp_path, small_photo, "one", *base, "-s", painting)
    twice = _stylize(tmp_path, small_photo, "twice", *base, "-s", painting, "-s", painting)
    assert np.abs(one - twice).max() <= 1  # the same style twice, equal weights, is that style
    b = _stylize(tmp_path, small_photo, "b", *base, "-s", other)
    mostly_a = _stylize(tmp_path, small_photo, "ab", *base, "-s", painting, "-s", other, "--style-weights", "0.8,0.2")
    assert np.abs(mostly_a - one).mean() < np.abs(mostly_a - b).mean()


def test_mixing_conditionings_is_linear():
    a = [(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 4.0]]))]
    b = [(torch.tensor([[3.0, 2.0]]), torch.tensor([[2.0, 0.0]]))]
    mixed = mix([a, b], [3, 1])
    torch.testing.assert_close(mixed[0][0], torch.tensor([[1.5, 2.0]]))
    torch.testing.assert_close(mixed[0][1], torch.tensor([[0.5, 3.0]]))


@pytest.mark.parametrize("transform", ["svd", "cwct"])
def test_whitening_statistics_stay_float32_under_bf16_autocast(painting, weights_dir, transform):
    """The precision check runs each window with its own statistics under autocast: a bf16 covariance
    would not even be positive definite (Cholesky fails)."""
    runner, _ = _runner("wct", painting, weights_dir, transform=transform)
    closeness = bfloat16_closeness(runner.model, runner.cond)
    assert 0 <= closeness.mean <= closeness.max


def test_johnson_and_wct_stylize_from_the_cli(tmp_path, small_photo, painting, weights_dir):
    johnson = _stylize(tmp_path, small_photo, "j", "-m", "johnson", "--weights", "mosaic", "--weights-dir", weights_dir)
    cwct = _stylize(tmp_path, small_photo, "c", "-m", "wct", "--transform", "cwct", "-s", painting,
                    "--weights-dir", weights_dir, "--stats", "thumbnail")
    assert johnson.shape == cwct.shape == (256, 384, 3)


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_import_refuses_pickled_code_truncated_files_and_wrong_layouts(tmp_path, weights_dir):
    evil = tmp_path / "evil.pth"
    torch.save({"0.weight": torch.zeros(1), "extra": _Payload()}, evil, pickle_module=pickle)
    proc = run_cli("weights", "import", evil, "--model", "adain", "--weights-dir", tmp_path / "w")
    assert proc.returncode != 0 and "this must never run" not in proc.stdout + proc.stderr
    assert "refused" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1

    encoder, decoder = published_vgg_files(tmp_path)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(encoder.read_bytes()[: encoder.stat().st_size // 2])
    proc = run_cli("weights", "import", truncated, "--model", "adain", "--weights-dir", tmp_path / "w")
    assert proc.returncode != 0 and "truncated or corrupt" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1

    proc = run_cli("weights", "import", decoder, "--model", "johnson", "--weights-dir", tmp_path / "w")
    assert proc.returncode != 0 and "expected" in proc.stderr and "conv1.conv2d.weight" in proc.stderr
    assert not (tmp_path / "w").exists() or not list((tmp_path / "w").iterdir())


def test_missing_weights_say_which_file_and_how_to_import(tmp_path, small_photo, painting):
    proc = run_cli("stylize", small_photo, "-m", "adain", "-s", painting, "-o", tmp_path / "o.tif",
                   "--weights-dir", tmp_path / "empty")
    assert proc.returncode != 0 and not (tmp_path / "o.tif").exists()
    assert "vgg_normalised.safetensors" in proc.stderr and "urst weights import" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_vgg_layer_lists_run_without_their_reflection_pad_modules():
    """Under CPU bf16 autocast nn.ReflectionPad2d pads in float32 (two extra copies of every activation: +260
    MiB in a 704 px VGG window); the layer lists are run with urst's padding, in the activations' dtype."""
    layers = encoder_layers()
    called = []
    for module in layers:
        if isinstance(module, torch.nn.ReflectionPad2d):
            module.register_forward_hook(lambda *args: called.append(args[0]))
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = run_layers(layers, torch.rand(1, 3, 32, 32))
        assert torch.nn.ReflectionPad2d(1)(out).dtype == torch.float32  # why the modules are not called
    assert out.dtype == torch.bfloat16 and not called


def test_statistics_passes_end_at_the_last_norm_layer():
    """Nothing after the last norm layer changes the statistics: sampled crops and whole-image passes are not
    decoded, and each is dropped once its moments are added."""
    net = AdaIN().eval()
    decoded = []
    net.decoder[-1].register_forward_hook(lambda *args: decoded.append(1))
    cond = [(torch.ones(1, 512), torch.zeros(1, 512), torch.ones(1))]
    with torch.inference_mode():
        stats = collect([net.stages(torch.rand(1, 3, 64, 64), cond) for _ in range(3)], [None] * 3, 64, net)
        assert len(stats) == 1 and not decoded
        net(torch.rand(1, 3, 64, 64), cond, PerInstance(net))
    assert decoded  # the hook does see the decoder when the network runs to its end
