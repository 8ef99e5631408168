"""Resumable jobs: finished rows are journaled on disk, so a killed run goes on where it stopped.

Beside the output, ``.NAME.urst-resume/`` holds

    state.json          what the rows depend on (input identity, model, style, statistics, tiling)
    stats.safetensors   the normalization statistics the rows were made with
    rows.raw            finished output rows, uint8 [rows, width, bands], top to bottom
    progress.json       how many rows of rows.raw are complete and on disk (a band-row boundary)

Every file is replaced atomically (written aside, synced, renamed) and rows.raw is synced
before progress.json names its new length, so whatever moment a run is killed at, even by
``kill -9``, the folder describes a consistent prefix of the image. A resumed run hands
the journaled rows to the writer, runs the band row before the first missing row again (for
its share of the blend) and goes on: the output is the same bytes as an uninterrupted run's.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .errors import EXIT_OUTPUT, EXIT_USAGE, UrstError
from .models import NormStats

__all__ = ["Journal", "journal_folder", "tensor_digest"]

REPLAY_ROWS = 64  # rows per block handed back to the writer


def journal_folder(output: Path) -> Path:
    return output.with_name(f".{output.name}.urst-resume")


def tensor_digest(tensors: Iterable[torch.Tensor]) -> str:
    """sha256 of the tensors' shapes, dtypes and values, in order."""
    digest = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        digest.update(f"{tuple(t.shape)}{t.dtype};".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    aside = path.with_name(path.name + ".new")
    with open(aside, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(aside, path)


class Journal:
    """The resume folder of one output. Use ``Journal.open``; ``rows_done`` rows are already journaled."""

    def __init__(self, folder: Path, width: int, bands: int, rows_done: int, stats: NormStats | None):
        self.folder, self.width, self.bands, self.rows_done, self.stats = folder, width, bands, rows_done, stats
        self.row_bytes = width * bands
        self._rows = open(folder / "rows.raw", "r+b")
        self._rows.truncate(rows_done * self.row_bytes)  # rows written after the last commit are not trusted
        self._rows.seek(0, os.SEEK_END)

    @classmethod
    def open(cls, output: Path, state: dict, width: int, height: int, bands: int) -> "Journal":
        """Continue the journal of ``output`` if its state equals ``state``, else start one.

        A journal made with other settings is refused, naming what differs.
        """
        folder = journal_folder(output)
        row_bytes = width * bands
        saved = _read_json(folder / "state.json")
        if saved is None:  # nothing to resume (or killed before the state was saved): start afresh
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            (folder / "rows.raw").touch()
            _write_atomic(folder / "state.json", json.dumps(state, indent=1).encode())
            rows_done, stats = 0, None
        else:
            differ = sorted(k for k in state.keys() | saved.keys() if state.get(k) != saved.get(k))
            if differ:
                raise UrstError(f"--resume: the interrupted job differs in {', '.join(differ)}; run without "
                                f"--resume to start over (or remove {folder})", EXIT_USAGE)
            rows_done = (_read_json(folder / "progress.json") or {}).get("rows", 0)
            on_disk = (folder / "rows.raw").stat().st_size // row_bytes
            if on_disk < rows_done:
                raise UrstError(f"--resume: {folder / 'rows.raw'} is shorter than its progress record; "
                                "run without --resume to start over", EXIT_USAGE)
            stats_file = folder / "stats.safetensors"
            stats = _load_stats(stats_file) if stats_file.is_file() else None
        needed = (height - rows_done) * row_bytes
        free = shutil.disk_usage(folder).free
        if needed > free:
            raise UrstError(f"--resume keeps the finished rows beside the output: {needed / 1e9:.1f} GB needed, "
                            f"{free / 1e9:.1f} GB free in {folder.parent}", EXIT_OUTPUT)
        return cls(folder, width, bands, rows_done, stats)

    def save_stats(self, stats: NormStats) -> None:
        tensors = {f"mean.{i}": m.contiguous() for i, m in enumerate(stats.means)}
        tensors.update({f"variance.{i}": v.contiguous() for i, v in enumerate(stats.variances)})
        aside = self.folder / "stats.safetensors.new"
        save_file(tensors, str(aside))
        with open(aside, "rb") as f:
            os.fsync(f.fileno())
        os.replace(aside, self.folder / "stats.safetensors")
        self.stats = stats

    def replay(self) -> Iterator[np.ndarray]:
        """The journaled rows, top to bottom, as uint8 [n, width, bands] blocks."""
        with open(self.folder / "rows.raw", "rb") as f:
            for top in range(0, self.rows_done, REPLAY_ROWS):
                n = min(REPLAY_ROWS, self.rows_done - top)
                yield np.frombuffer(f.read(n * self.row_bytes), np.uint8).reshape(n, self.width, self.bands)

    def record(self, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Pass ``blocks`` through, appending each to the journal first."""
        for block in blocks:
            self._rows.write(np.ascontiguousarray(block).data)
            yield block

    def commit(self, rows_done: int) -> None:
        """The first ``rows_done`` rows are complete: make them durable, then say so."""
        self._rows.flush()
        os.fsync(self._rows.fileno())
        _write_atomic(self.folder / "progress.json", json.dumps({"rows": rows_done}).encode())
        self.rows_done = rows_done

    def close(self) -> None:
        self._rows.close()

    def remove(self) -> None:
        self.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _load_stats(path: Path) -> NormStats:
    tensors = load_file(str(path))
    count = sum(1 for key in tensors if key.startswith("mean."))
    return NormStats(tuple(tensors[f"mean.{i}"] for i in range(count)),
                     tuple(tensors[f"variance.{i}"] for i in range(count)))
