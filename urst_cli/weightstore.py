"""Importing and listing weight files: user-supplied ``.pth`` state dicts become checked safetensors.

``.pth`` files are pickles; they are opened with ``torch.load(weights_only=True)``, which
refuses anything but tensors and plain containers, so importing a file cannot run code.
A file is matched against every weight file the model needs by its keys and shapes, so
``urst weights import decoder.pth --model adain`` knows it is the decoder.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import EXIT_INPUT, EXIT_OUTPUT, EXIT_USAGE, UrstError
from .models import (REGISTRY, check_state, get_spec, packaged_weights_dir, part_module, part_stems, user_weights_dir,
                     variant)

__all__ = ["import_weights", "list_weights", "InstalledWeights"]


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise UrstError(f"{path}: no such file", EXIT_INPUT)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise UrstError(f"{path}: not a readable safetensors file ({exc})", EXIT_INPUT) from None
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UrstError(f"{path}: refused: it holds pickled objects other than tensors ({first})", EXIT_INPUT) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as exc:
        raise UrstError(f"{path}: not a readable PyTorch weights file (truncated or corrupt: "
                        f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__})",
                        EXIT_INPUT) from None
    for wrapper in ("state_dict", "model"):  # common checkpoint wrappers
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UrstError(f"{path}: not a state dict (a mapping of names to tensors)", EXIT_INPUT)
    return {k.removeprefix("module."): v for k, v in state.items()}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def import_weights(source: Path, model: str, name: str | None = None, dest_dir: Path | None = None) -> Path:
    """Convert ``source`` into the safetensors file of the ``model`` part it fits; return the written path.

    Of the files a source fits, the one it fills with the most tensors wins; variants of one network that
    share every key and shape (CAP-VSTNet's two checkpoints) cannot be told apart: then ``name`` says which.
    """
    from safetensors.torch import save_file

    spec = get_spec(model)
    if not spec.parts:
        raise UrstError(f"model '{model}' has no weights to import", EXIT_USAGE)
    if name is not None and not (spec.named_weights or spec.variants):
        raise UrstError(f"--name applies to per-style models and models with variants only, not '{model}'",
                        EXIT_USAGE)
    if spec.variants:
        names = (variant(spec, name),) if name is not None else spec.variants
    else:
        names = ((name or source.stem) if spec.named_weights else None,)
    state = _read_state(source)
    fits, failures = [], []
    for stem in (stem for each in names for stem in part_stems(spec, each)):
        expected = part_module(stem).state_dict()
        # published files may hold more (the VGG file goes on to relu5_4; old Johnson files keep running stats)
        kept = {k: v.detach().float().contiguous() for k, v in state.items() if k in expected}
        try:
            check_state(part_module(stem), kept, f"{source.name} as {stem}")
        except UrstError as exc:
            wrong = sum(tuple(kept[k].shape) != tuple(v.shape) for k, v in expected.items() if k in kept)
            failures.append((len(kept) - wrong, str(exc)))  # how many of the part's tensors the file has right
            continue
        fits.append((stem, kept))
    # a file that fits several (LinearStyleTransfer's relu4_1 encoder holds the relu3_1 one) is the one it fills most
    fits = [fit for fit in fits if len(fit[1]) == max((len(kept) for _, kept in fits), default=0)]
    if len(fits) > 1:
        raise UrstError(f"{source.name} fits {' and '.join(stem for stem, _ in fits)} alike: say which it is "
                        f"with --name {'|'.join(spec.variants)}", EXIT_USAGE)
    if not fits:
        stems = [stem for each in names for stem in part_stems(spec, each)]
        closest = max(failures, key=lambda failure: failure[0])[1]  # what the file was most likely meant to be
        raise UrstError(f"{source.name} fits none of the weight files model '{model}' needs: {closest}"
                        if len(failures) == 1 else
                        f"{source.name} fits none of the weight files model '{model}' needs "
                        f"({', '.join(stems)}); closest: {closest}", EXIT_INPUT)
    stem, kept = fits[0]
    dest_dir = dest_dir or user_weights_dir()
    dest = dest_dir / f"{stem}.safetensors"
    partial = dest.with_name(f".{dest.name}.{os.getpid()}.partial")
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
        save_file(kept, str(partial), metadata={"source": source.name, "source_sha256": _sha256(source)})
        os.replace(partial, dest)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise UrstError(f"cannot write to {dest_dir}: {exc.strerror or exc}", EXIT_OUTPUT) from None
    return dest


@dataclass(frozen=True)
class InstalledWeights:
    stem: str
    path: Path
    size: int
    sha256: str
    models: tuple[str, ...]
    shipped: bool


def _models_using(stem: str) -> tuple[str, ...]:
    users = []
    for spec in REGISTRY.values():
        for pattern in spec.parts:
            if spec.variants:
                used = any(pattern.format(name=variant) == stem for variant in spec.variants)
            else:
                used = pattern == stem or ("{name}" in pattern and stem.startswith(pattern.split("{name}")[0]))
            if used:
                users.append(spec.name)
    return tuple(users) or (("magenta",) if stem == "magenta_predictor" else ())


def list_weights(user_dir: Path | None = None) -> list[InstalledWeights]:
    found = []
    for folder, shipped in ((user_dir or user_weights_dir(), False), (packaged_weights_dir(), True)):
        for path in sorted(folder.glob("*.safetensors")) if folder.is_dir() else []:
            found.append(InstalledWeights(path.stem, path, path.stat().st_size, _sha256(path),
                                          _models_using(path.stem), shipped))
    return found
