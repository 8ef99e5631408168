"""Corrupted images for the fuzz test, and the worker that runs urst on them.

``corruptions`` makes seeded damaged copies of small valid JPEG/PNG/TIFF files (byte flips,
truncations, header edits, spliced bytes). The worker (``python fuzz.py CASES_DIR OUT_DIR``)
runs the real command line in one process per batch, so that hundreds of cases cost one
torch import; a watchdog kills it if any case hangs. It prints one JSON line per case.
"""

from __future__ import annotations

import contextlib
import faulthandler
import io
import json
import sys
from pathlib import Path

import numpy as np

KINDS = ("flip", "truncate", "header", "splice")
CASE_TIMEOUT_S = 60


def corruptions(sources: dict[str, bytes], per_kind: int, seed: int = 0) -> list[tuple[str, bytes]]:
    """``per_kind`` damaged copies of each source per kind of damage: [(name with the source's suffix, bytes)]."""
    rng = np.random.default_rng(seed)
    cases = []
    for source_name, data in sources.items():
        stem, suffix = source_name.rsplit(".", 1)
        for kind in KINDS:
            for i in range(per_kind):
                cases.append((f"{stem}-{kind}-{i:03d}.{suffix}", _damage(rng, bytearray(data), kind)))
    return cases


def _damage(rng: np.random.Generator, data: bytearray, kind: str) -> bytes:
    n = len(data)
    if kind == "flip":
        for pos in rng.integers(0, n, rng.integers(1, 17)):
            data[pos] ^= int(rng.integers(1, 256))
    elif kind == "truncate":
        del data[int(rng.integers(0, n)):]
    elif kind == "header":  # sizes, types, offsets: the first bytes, where every format keeps them
        for pos in rng.integers(0, min(n, 64), rng.integers(1, 5)):
            data[pos] = int(rng.integers(0, 256))
    else:
        pos = int(rng.integers(0, n))
        if rng.random() < 0.5:
            data[pos:pos] = rng.integers(0, 256, int(rng.integers(1, 257)), dtype=np.uint8).tobytes()
        else:
            del data[pos: pos + int(rng.integers(1, 257))]
    return bytes(data)


def _run_case(path: Path, out: Path) -> dict:
    from urst_cli.cli import entry

    stderr = io.StringIO()
    argv = ["urst", "stylize", str(path), "--preset", "3", "-o", str(out), "--quiet"]
    faulthandler.dump_traceback_later(CASE_TIMEOUT_S, exit=True)
    code = 0
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            sys.argv = argv
            entry()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        faulthandler.cancel_dump_traceback_later()
    return {"case": path.name, "code": code, "stderr": stderr.getvalue(),
            "left": sorted(p.name for p in out.parent.iterdir())}


def main(cases_dir: str, out_dir: str) -> None:
    import pyvips

    for i, path in enumerate(sorted(Path(cases_dir).iterdir())):
        out_folder = Path(out_dir) / f"{i:04d}"
        out_folder.mkdir()
        result = _run_case(path, out_folder / "out.tif")
        if result["code"] == 0:
            image = pyvips.Image.new_from_file(str(out_folder / "out.tif"))
            source = pyvips.Image.new_from_file(str(path))
            result["size_ok"] = (image.width, image.height) == (source.width, source.height)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
