"""The torch port equals the shipped ONNX graphs with their activation quantizers removed."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from urst_cli.models import PerInstance, load_weights, pad_to_valid
from urst_cli.reader import read_style, read_whole

from conftest import ROOT, resized

ort = pytest.importorskip("onnxruntime")
sys.path.insert(0, str(ROOT / "weights"))
import convert  # noqa: E402


def _any_size(model):
    """Declare the image input's height and width symbolic: the graph itself is fully convolutional."""
    for dim, name in zip(model.graph.input[0].type.tensor_type.shape.dim[1:3], ("height", "width")):
        dim.dim_param = name
    return model


@pytest.fixture(scope="module")
def graphs(styletransfer_wheel):
    onnx_bytes = convert.read_onnx(styletransfer_wheel)
    sessions = {name: ort.InferenceSession(_any_size(convert.float_graph(data)).SerializeToString())
                for name, data in onnx_bytes.items() if name != "multistyle26"}
    sessions["multistyle26"] = ort.InferenceSession(onnx_bytes["multistyle26"])  # already float
    return sessions


@pytest.fixture(scope="module")
def nets():
    return {name: load_weights(name, torch.device("cpu"))
            for name in ("magenta_predictor", "magenta_transformer", "multistyle26")}


def _nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x).permute(0, 3, 1, 2)


def _style_vector(graphs, nets, image: np.ndarray):
    sess = graphs["arbitrary_predict"]
    ref = sess.run(None, {sess.get_inputs()[0].name: image})[0].reshape(1, -1)
    with torch.no_grad():
        ours = nets["magenta_predictor"](_nchw(image)).numpy()
    return ref, ours


def test_predictor_matches_graph_random_and_real(graphs, nets, painting):
    rng = np.random.default_rng(1)
    real = read_style(painting, 256, square=True)[None].astype(np.float32) / 255
    for image in (rng.random((1, 256, 256, 3), dtype=np.float32), real):
        ref, ours = _style_vector(graphs, nets, image)
        assert np.abs(ref - ours).max() <= 1e-4


@pytest.mark.parametrize("size", [(384, 384), (100, 260), (97, 131)])
def test_transformer_matches_graph_at_any_size(graphs, nets, painting, small_photo, size):
    h, w = size
    style = read_style(painting, 256, square=True)[None].astype(np.float32) / 255
    _, vector = _style_vector(graphs, nets, style)
    rng = np.random.default_rng(2)
    photo = read_whole(resized(small_photo, small_photo.with_name(f"t{h}x{w}.png"), w, h))
    for content in (rng.random((1, h, w, 3), dtype=np.float32), photo[None].astype(np.float32) / 255):
        x = pad_to_valid(_nchw(content), nets["magenta_transformer"])  # the graph runs on the padded image too
        sess = graphs["arbitrary_transform"]
        names = [i.name for i in sess.get_inputs()]
        ref = sess.run(None, {names[0]: x.permute(0, 2, 3, 1).numpy(), names[1]: vector.reshape(1, 1, 1, -1)})[0]
        net = nets["magenta_transformer"]
        with torch.no_grad():
            ours = net(x, net.condition(torch.from_numpy(vector)), PerInstance(net)).permute(0, 2, 3, 1).numpy()
        assert ours.shape == ref.shape
        assert np.abs(ref - ours).max() <= 1e-4


@pytest.mark.parametrize("preset", [0, 19])
def test_multistyle_matches_graph(graphs, nets, preset):
    rng = np.random.default_rng(3)
    x = rng.random((1, 3, 132, 200), dtype=np.float32)
    weights = np.zeros(26, np.float32)
    weights[preset] = 1
    ref = graphs["multistyle26"].run(None, {"image": x, "style_weights": weights})[0]
    net = nets["multistyle26"]
    with torch.no_grad():
        ours = net(torch.from_numpy(x), net.condition(torch.from_numpy(weights)), PerInstance(net)).numpy()
    assert np.abs(ref - ours).max() <= 1e-4


def test_committed_weights_are_the_conversion_of_the_wheel(styletransfer_wheel):
    from safetensors.numpy import load_file

    states = convert.build_states(convert.read_onnx(styletransfer_wheel))
    for name, state in states.items():
        committed = load_file(str(ROOT / "weights" / f"{name}.safetensors"))
        assert committed.keys() == state.keys()
        for key, value in state.items():
            np.testing.assert_array_equal(committed[key], value.astype(np.float32))


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("pad", [0, 1, 4])
def test_reflect_pad_is_torchs_reflection_in_the_same_memory_format(channels_last, pad):
    from urst_cli.models.base import reflect_pad

    x = torch.randn(2, 5, 13, 10)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    out = reflect_pad(x, pad)
    assert torch.equal(out, torch.nn.functional.pad(x, (pad,) * 4, mode="reflect"))
    assert out.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("channels, side", [(3, 9), (32, 200), (128, 70)])
def test_channel_var_mean_matches_float64_on_boxes(channels_last, channels, side, dtype):
    """Boxes of one item, as the statistics estimators cut them; 32 x 200 x 200 spans several row chunks.
    bf16: the activations of an autocast pass, whose statistics are taken in float32."""
    from urst_cli.models.norm import CHUNK_ELEMENTS, channel_var_mean

    x = (torch.randn(2, channels, side, side) * 3 + 5).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    item = x[1, :, 2: side - 3, 1: side - 4]
    var, mean = channel_var_mean(item)
    ref_var, ref_mean = torch.var_mean(item.double(), dim=(1, 2), correction=0)
    assert var.dtype == mean.dtype == torch.float32 and var.shape == mean.shape == (channels,)
    torch.testing.assert_close(mean.double(), ref_mean, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(var.double(), ref_var, rtol=1e-6, atol=1e-6)
    if channels == 32:
        assert item.shape[1] * item.shape[2] * channels > 2 * CHUNK_ELEMENTS
