"""CAP-VSTNet, SANet, Linear style transfer and MSG-Net from files in their authors' published layouts.

The files are made by conftest's ``published_*`` helpers with the authors' key names and random values,
then go through the real path: ``urst weights import`` -> the model -> tiles against the whole image.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import pyvips
import torch

from urst_cli.engine import Runner, TilePlan
from urst_cli.job import Job, compute_stats, conditioning, load_model, make_plan
from urst_cli.models import PerInstance, Replay, mix, pad_to_valid, valid_size, zero_padded_copy
from urst_cli.models.capvst import CapVST, capvst_condition
from urst_cli.models.msgnet import msgnet_condition
from urst_cli.reader import BandReader, ImageSource, read_whole
from urst_cli.stats import SampleSpec, sampled_stats, whole_stats
from urst_cli.writer import OutputSpec

from conftest import (published_capvst_file, published_linear_files, published_msgnet_file, published_sanet_files,
                      resized, run_cli)
from test_fidelity import _tiled

CPU = torch.device("cpu")
# (model, --weights): every published variant
FAMILIES = [("capvst", "photorealistic"), ("capvst", "artistic"), ("sanet", None), ("linear", "r41"),
            ("linear", "r31"), ("msgnet", None)]


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    src, dest = tmp_path_factory.mktemp("published"), tmp_path_factory.mktemp("weights")
    imports = [(published_capvst_file(src / "photo_image.pt"), "capvst", "photorealistic"),
               (published_capvst_file(src / "art_image.pt", seed=1), "capvst", "artistic"),
               *((path, "sanet", None) for path in published_sanet_files(src)),
               *((path, "linear", None) for layer in ("r41", "r31") for path in published_linear_files(src, layer)),
               (published_msgnet_file(src / "21styles.model"), "msgnet", None)]
    for path, model, name in imports:
        run_cli("weights", "import", path, "--model", model, "--weights-dir", dest, *(("--name", name) if name else ()),
                check=True)
    return dest


def _runner(model, weights, painting, weights_dir, **options):
    job = Job(input=painting, output=OutputSpec(painting), model=model, weights=weights, weights_dir=weights_dir,
              styles=[painting], **options)
    net = load_model(job, CPU)
    return Runner(net, conditioning(job, net, CPU), CPU, bfloat16=False)


def test_models_lists_all_nine_families_and_where_their_weights_come_from(weights_dir):
    """Nine stylizers, and the null model (no network: bench --baseline-host) last."""
    out = run_cli("models", "--weights-dir", weights_dir, check=True).stdout
    families = [line.split()[0] for line in out.splitlines() if line and not line.startswith(" ")]
    assert families == ["magenta", "multistyle26", "adain", "wct", "johnson", "capvst", "sanet", "linear", "msgnet",
                        "null"]
    for family, source in (("capvst", "linfengWen98/CAP-VSTNet"), ("sanet", "GlebSBrykin/SANET"),
                           ("linear", "sunshineatnoon/LinearStyleTransfer"),
                           ("msgnet", "zhanghang1989/PyTorch-Multi-Style-Transfer")):
        entry = out[out.index(f"\n{family} "):].split("\n", 3)[2]
        assert source in entry and "MISSING" not in entry, entry
    assert "first photorealistic" in out


@pytest.mark.parametrize("model,make,key", [
    ("capvst", lambda folder: published_capvst_file(folder / "photo_image.pt"), "stack.10.conv.1.weight"),
    ("sanet", lambda folder: published_sanet_files(folder)[2], "sanet5_1.g.weight"),
    ("linear", lambda folder: published_linear_files(folder, "r31")[2], "compress.weight"),
    ("msgnet", lambda folder: published_msgnet_file(folder / "21styles.model"), "model.1.weight"),
])
def test_import_refuses_a_wrong_shape_naming_the_key(tmp_path, model, make, key):
    path = make(tmp_path)
    checkpoint = torch.load(path, weights_only=True)
    state = checkpoint.get("state_dict", checkpoint)
    expected = tuple(state[key].shape)
    state[key] = torch.zeros(expected[0] + 1, *expected[1:])
    torch.save(checkpoint, path)
    name = ("--name", "photorealistic") if model == "capvst" else ()
    proc = run_cli("weights", "import", path, "--model", model, "--weights-dir", tmp_path / "w", *name)
    assert proc.returncode == 3 and f"{key} {(expected[0] + 1, *expected[1:])} (expected {expected})" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "w").exists()


def test_capvst_checkpoints_need_a_name_and_linear_variants_are_told_apart(tmp_path, weights_dir):
    proc = run_cli("weights", "import", published_capvst_file(tmp_path / "photo_image.pt"), "--model", "capvst",
                   "--weights-dir", tmp_path / "w")
    assert proc.returncode == 2 and "--name photorealistic|artistic" in proc.stderr
    r31 = published_linear_files(tmp_path, "r31")[0]
    out = run_cli("weights", "import", r31, "--model", "linear", "--weights-dir", tmp_path / "w", check=True).stdout
    assert "linear_vgg_r31.safetensors" in out
    r41 = published_linear_files(tmp_path, "r41")[0]  # holds the relu3_1 encoder's keys too: it fills r41's
    out = run_cli("weights", "import", r41, "--model", "linear", "--weights-dir", tmp_path / "w", check=True).stdout
    assert "linear_vgg_r41.safetensors" in out


@pytest.mark.parametrize("model,weights", FAMILIES)
def test_tiled_equals_whole_with_the_same_statistics(tmp_path, small_photo, painting, weights_dir, model, weights):
    """Odd-sized images, several windows (capvst's windows are 1040 px wide: two across, one high)."""
    runner = _runner(model, weights, painting, weights_dir)
    net = runner.model
    m = net.pad_multiple
    overlap = -(-(net.receptive_radius + 8) // m) * m
    plan = TilePlan(patch=2 * overlap + 96, overlap=overlap, feather=16, batch=2, multiple=m)
    width, height = (plan.patch + 163, 203) if model == "capvst" else (331, 203)
    path = resized(small_photo, tmp_path / "p.png", width, height)
    image = read_whole(path)
    stats = whole_stats(runner, image)
    tiled = _tiled(runner, path, stats, plan)
    whole = runner(pad_to_valid(runner.to_tensor(image[None]), net), Replay(stats, net))[0, :, :height, :width]
    assert tiled.shape == whole.shape == (3, height, width)
    assert np.abs(tiled - whole.numpy()).max() <= 1e-4 * max(1.0, whole.abs().max())


@pytest.mark.parametrize("model,weights", [f for f in FAMILIES if f[0] != "capvst"])
def test_zero_padding_changes_nothing_beyond_the_receptive_radius(small_photo, painting, weights_dir, model, weights):
    """The measured radii: windows inside the image may pad with zeros, and blending keeps nothing it changes.
    Statistics layers count too (Linear's content CNN reaches further than its output at relu3_1)."""
    runner = _runner(model, weights, painting, weights_dir)
    net = runner.model
    img = read_whole(small_photo)[:256, :256]
    x = runner.to_tensor(img[None])
    policy = Replay(whole_stats(runner, img), net)
    change = torch.zeros(256, 256)
    for padded in (net, zero_padded_copy(net)):
        seen = []

        def record(index, h, seen=seen):
            seen.append(h.float().clone())
            return policy(index, h)

        seen.append(padded(x, runner.cond, record))
        if padded is net:
            reference = seen
            continue
        for a, b in zip(reference, seen):
            stride = 256 // a.shape[-1]
            diff = (a - b).abs().amax(dim=(0, 1))
            change = torch.maximum(change, diff.repeat_interleave(stride, 0).repeat_interleave(stride, 1))
    r = net.receptive_radius
    assert change.max() > 1e-2
    assert change[r + 1: -r - 1, r + 1: -r - 1].max() == 0
    assert change[r - 8: -r + 8, r - 8: -r + 8].max() > 0  # and the radius is not overstated by more than 8 px


def test_capvst_receptive_radius_measured_by_changing_one_column():
    """CAP-VSTNet's radius (464 px: too wide for the window above) measured on a 1024 px wide strip: one input column
    changed, at each offset on the squeeze grid; nothing beyond the radius may change, in the latent (the
    statistics layer's input, half of it) or the output, and the reach seen comes near it. He-scaled weights, like
    trained ones: the tests' smaller ones let changes fade below float precision ~40 px short of the radius."""
    torch.manual_seed(0)
    net = CapVST("photorealistic").eval().requires_grad_(False)
    for conv in (m for m in net.modules() if isinstance(m, torch.nn.Conv2d)):
        torch.nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
        torch.nn.init.zeros_(conv.bias)
    width, centre, offsets = 1024, 512, 4
    x = torch.rand(1, 3, 16, width).repeat(1 + offsets, 1, 1, 1)
    for k in range(offsets):
        x[1 + k, :, :, centre + k] = torch.rand(3, 16)
    with torch.inference_mode():
        latent = net.encode(x)
        statistics = PerInstance(net)(0, latent[:1])
        identity = [(torch.eye(latent.shape[1]), latent[:1].mean(dim=(2, 3)), torch.ones(1))]
        out = net(x, identity, lambda index, h: statistics)

    def reach(a):
        changed = [torch.nonzero((a[1 + k] - a[0]).abs().amax(dim=(0, 1)) > 0).flatten() for k in range(offsets)]
        return max(max(centre + k - int(c.min()), int(c.max()) - centre - k) for k, c in enumerate(changed))

    r = net.receptive_radius
    assert r // 2 - 8 <= reach(latent) <= r // 2  # measured 231
    assert r - 16 <= reach(out) <= r  # measured 452: the bound also counts squeeze offsets no column reaches


def test_capvst_inverts_exactly_and_cwct_of_the_content_itself_returns_it(weights_dir, small_photo, painting):
    for variant in ("photorealistic", "artistic"):
        net = load_model(Job(input=painting, output=OutputSpec(painting), model="capvst", weights=variant,
                             weights_dir=weights_dir), CPU)
        x = torch.from_numpy(read_whole(small_photo)[:128, :192]).permute(2, 0, 1)[None].float().div(255)
        with torch.inference_mode():
            z = net.encode(x)
            assert z.shape == ((1, 32, 128, 192) if variant == "photorealistic" else (1, 128, 64, 96))
            torch.testing.assert_close(net.decode(z.clone()), x, atol=2e-5, rtol=0)
            flat = z.flatten(2)[0].double()
            content = net.style_conditions([flat], alpha=1.0)[0][0]     # the content as its own style
            mean, whiten = PerInstance(net)(0, z)
            torch.testing.assert_close(net.recolour(z, mean, whiten, content), z, atol=2e-4, rtol=1e-4)


def test_capvst_whole_pass_equals_the_authors_forward_and_inverse_order(weights_dir, painting):
    """encode/decode against a direct transcription of RevResNet._forward/_inverse (split, blocks, merge)."""
    net = load_model(Job(input=painting, output=OutputSpec(painting), model="capvst", weights_dir=weights_dir), CPU)
    x = torch.rand(1, 3, 64, 96)

    def f(block, h):
        return block.conv(h)  # nn.ReflectionPad2d and nn.Conv2d in sequence, as published

    with torch.inference_mode():
        h = torch.cat([x, torch.zeros(1, 29, 64, 96)], dim=1)
        x1, x2 = h[:, :16], h[:, 16:]
        for block in (*net.stack, *net.channel_reduction.block_list):
            fx2 = f(block, x2)
            if block.stride == 2:
                x1, x2 = _squeeze(x1), _squeeze(x2)
            x1, x2 = x2, fx2 + x1
        z = torch.cat([x1, x2], dim=1)
        for _ in range(2):
            n, c, hh, ww = z.shape
            z = z.reshape(n, 2, 2, c // 4, hh, ww).permute(0, 3, 4, 1, 5, 2).reshape(n, c // 4, 2 * hh, 2 * ww)
        torch.testing.assert_close(net.encode(x), z, atol=1e-5, rtol=1e-5)


def _squeeze(x):
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).permute(0, 3, 5, 1, 2, 4).reshape(n, 4 * c, h // 2, w // 2)


def _stylize(tmp_path, photo, name, *args):
    out = tmp_path / f"{name}.png"
    run_cli("stylize", photo, "-o", out, "--quiet", *args, check=True)
    return pyvips.Image.new_from_file(str(out)).numpy().astype(np.float64)


@pytest.mark.parametrize("model,weights", FAMILIES)
def test_every_statistics_estimator_runs_and_the_streamed_exact_ones_are_the_whole_images(small_photo, painting,
                                                                                       weights_dir, model, weights):
    runner = _runner(model, weights, painting, weights_dir)
    net = runner.model
    job = Job(input=small_photo, output=OutputSpec(small_photo), model=model, weights=weights, stats="exact")
    plan = make_plan(job, runner)
    width, height = 384, 256
    pixels = valid_size(width, net) * valid_size(height, net)
    open_reader = lambda: BandReader(small_photo, valid_size(width, net), valid_size(height, net))  # noqa: E731
    exact, _ = compute_stats(job, runner, plan, ImageSource(small_photo), open_reader, pixels, job.sample)
    whole = whole_stats(runner, read_whole(small_photo))
    for a, b in zip(exact.means + exact.variances, whole.means + whole.variances):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    for mode in ("sampled", "thumbnail", "auto"):
        stats, _ = compute_stats(replace(job, stats=mode), runner, plan, ImageSource(small_photo), open_reader, pixels,
                                 job.sample)
        assert len(stats) == len(net.norm_channels)
        assert all(torch.isfinite(t).all() for t in stats.means + stats.variances)


def test_sampled_statistics_probed_crop_by_crop_equal_the_crops_run_in_lockstep(small_photo, painting, weights_dir):
    """probe_samples (each crop once per norm layer, one crop's memory) pools the same numbers as pausing them all."""
    runner = _runner("linear", "r31", painting, weights_dir)
    assert runner.model.probe_samples
    open_reader = lambda: BandReader(small_photo, valid_size(384, runner.model), valid_size(256, runner.model))  # noqa
    spec = SampleSpec(crops=6, size=64, context=32, seed=3)
    probed = sampled_stats(runner, open_reader, spec)
    runner.model.probe_samples = False  # this instance only: the lockstep estimator every other model uses
    lockstep = sampled_stats(runner, open_reader, spec)
    assert len(probed) == len(runner.model.norm_channels) == 2
    for a, b in zip(probed.means + probed.variances, lockstep.means + lockstep.variances):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_capvst_alpha_zero_returns_the_photo_and_styles_mix_as_colourings(small_photo, painting, weights_dir):
    x = pad_to_valid(torch.from_numpy(read_whole(small_photo)[None]).permute(0, 3, 1, 2).float().div(255),
                     CapVST())
    runner = _runner("capvst", None, painting, weights_dir, alpha=0.0)
    with torch.inference_mode():
        torch.testing.assert_close(runner(x, PerInstance(runner.model)), x, atol=1e-4, rtol=0)
    grey = read_whole(painting).mean(axis=2, keepdims=True).repeat(3, axis=2).astype(np.uint8)
    with torch.inference_mode():
        colour, grey_cond = capvst_condition(runner.model, [read_whole(painting), grey], 1.0)
    mixed = mix([colour, grey_cond], [0.8, 0.2])[0]
    torch.testing.assert_close(mixed[0], 0.8 * colour[0][0] + 0.2 * grey_cond[0][0])  # Cholesky factors, as
    torch.testing.assert_close(mixed[1], 0.8 * colour[0][1] + 0.2 * grey_cond[0][1])  # CAP-VSTNet interpolates


def test_sanet_refuses_to_mix_styles_in_one_line(tmp_path, small_photo, painting, weights_dir):
    proc = run_cli("stylize", small_photo, "-m", "sanet", "-s", painting, "-s", painting, "-o", tmp_path / "o.png",
                   "--weights-dir", weights_dir)
    assert proc.returncode == 2 and "one --style" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_every_family_stylizes_from_the_cli_at_two_stroke_scales_keeping_the_photos_colours(tmp_path, small_photo,
                                                                                             painting, weights_dir):
    photo = read_whole(small_photo).astype(np.float64)
    luma = np.array([0.299, 0.587, 0.114])
    for model, weights in FAMILIES:
        kept = _stylize(tmp_path, small_photo, f"{model}{weights}", "-m", model, "-s", painting, "--preserve-color",
                        "--stroke-scale", "2", "--weights-dir", weights_dir,
                        *(("--weights", weights) if weights else ()))
        chroma = (kept - (kept @ luma)[..., None]) - (photo - (photo @ luma)[..., None])
        unclipped = ((kept > 0) & (kept < 255)).all(axis=2)  # where the new luma plus the photo's chroma fits
        assert kept.shape == photo.shape and unclipped.sum() > 1000, model  # random weights saturate many
        assert np.abs(chroma[unclipped]).max() <= 1.5, model


def _unbiased_mvn(feat, eps=1e-5, correction=1):
    """calc_mean_std + mean_variance_norm of SANet's Eval.py (``correction=0``: the biased variance urst uses)."""
    var, mean = torch.var_mean(feat.flatten(2), dim=2, correction=correction)
    return (feat - mean[..., None, None]) / (var + eps).sqrt()[..., None, None]


def test_sanet_linear_and_msgnet_match_transcriptions_of_their_authors_forward(painting, weights_dir):
    """Each family, whole image and per-instance statistics, against the published forward written out with
    the module's weights (SANet's content normalised by the biased variance, see models/sanet.py)."""
    x = torch.rand(1, 3, 128, 160)
    style = torch.from_numpy(read_whole(painting)).permute(2, 0, 1)[None].float().div(255)[:, :, :200, :232]
    with torch.inference_mode():
        net = _runner("sanet", None, painting, weights_dir).model
        cond = net.transform.sanet4_1.style_side, net.transform.sanet5_1.style_side
        (c4, c5), (s4, s5) = net.encode(x), net.encode(style)

        def attention(module, content, style_features):
            f = module.f(_unbiased_mvn(content, correction=0)).flatten(2).transpose(1, 2)
            g, h = module.g(_unbiased_mvn(style_features)).flatten(2), module.h(style_features).flatten(2)
            return module.out_conv((h @ torch.softmax(f @ g, dim=-1).transpose(1, 2)).view_as(content)) + content

        t = net.transform
        merged = attention(t.sanet4_1, c4, s4) + torch.nn.functional.interpolate(attention(t.sanet5_1, c5, s5),
                                                                                  scale_factor=2.0)
        expected = net.decoder(t.merge_conv(torch.nn.functional.pad(merged, (1,) * 4, mode="reflect")))
        got = net(x, [cond[0](s4, net.eps), cond[1](s5, net.eps)], PerInstance(net))
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)

        for layer in ("r41", "r31"):
            net = _runner("linear", layer, painting, weights_dir).model
            mul = net.matrix

            def matrix(cnn, feat):
                out = cnn.convs(feat)
                flat = out.flatten(2)
                return cnn.fc((flat @ flat.transpose(1, 2) / flat.shape[2]).flatten(1)).view(-1, 32, 32)

            cf, sf = net.encoder(x), net.encoder(style)
            cf = cf - cf.mean(dim=(2, 3), keepdim=True)
            s_mean = sf.mean(dim=(2, 3), keepdim=True)
            transform = matrix(mul.snet, sf - s_mean) @ matrix(mul.cnet, cf)
            squeezed = mul.compress(cf)
            features = mul.unzip((transform @ squeezed.flatten(2)).view_as(squeezed)) + s_mean
            expected = net.decoder(features)
            cond = [(matrix(mul.snet, sf - s_mean), s_mean)]
            torch.testing.assert_close(net(x, cond, PerInstance(net)), expected, atol=1e-4, rtol=1e-4)

        net = _runner("msgnet", None, painting, weights_dir).model
        instance_norm = torch.nn.functional.instance_norm

        def sequential(layers, h):
            for layer in layers:
                h = instance_norm(h) if type(layer).__name__ == "_Norm" else bottleneck(layer, h) \
                    if type(layer).__name__ == "_Bottleneck" else layer(h)
            return h

        def bottleneck(block, h):
            residual = block.residual_layer(h) if hasattr(block, "residual_layer") else h
            return residual + sequential(block.conv_block, h)

        def author_forward(image, target):
            features = sequential(net.model[0], target)
            gram = features.flatten(2) @ features.flatten(2).transpose(1, 2) / features[0].numel()
            h = sequential(net.model[0], image)
            h = ((net.model[1].weight @ gram).transpose(1, 2) @ h.flatten(2)).view_as(h)
            return sequential(net.model[2:], h)

        bgr = lambda t: t.flip(1) * 255  # noqa: E731 - the authors' preprocess_batch, on 0-255 pixels
        expected = author_forward(bgr(x), bgr(style[:, :, :128, :128])).flip(1) / 255
        got = net(x, msgnet_condition(net, [(style[0, :, :128, :128] * 255).round().byte().permute(1, 2, 0)
                                            .numpy()], 1.0)[0], PerInstance(net))
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_bench_measures_the_weights_asked_for(tmp_path, weights_dir):
    """r31 only in the folder: the bench finds it only if --weights reaches the job (r41 is the default)."""
    only_r31 = tmp_path / "weights"
    only_r31.mkdir()
    for path in weights_dir.glob("linear_*_r31.safetensors"):
        (only_r31 / path.name).write_bytes(path.read_bytes())
    proc = run_cli("bench", "--sizes", "0.05", "--stroke-scales", "1", "--json", "-m", "linear", "--weights", "r31",
                   "--weights-dir", only_r31, "--device", "cpu", check=True)
    assert json.loads(proc.stdout)[0]["tiled"]["seconds"] > 0
    refused = run_cli("bench", "--sizes", "0.05", "--stroke-scales", "1", "-m", "linear", "--weights-dir", only_r31,
                      "--device", "cpu")
    assert refused.returncode != 0 and "r41" in refused.stderr
