"""``urst weights import|list``: a Typer sub-app."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import UrstError
from .common import fail

__all__ = ["app"]

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Import and list model weights.")


@app.command("import")
def weights_import(
    file: Path = typer.Argument(..., help="A .pth state dict (or .safetensors), e.g. vgg_normalised.pth."),
    model: str = typer.Option(..., "--model", "-m", help="The model it belongs to (see `urst models`)."),
    name: Optional[str] = typer.Option(None, "--name", help="Per-style models: the name to use with --weights "
                                       "(default: the file's stem); capvst: photorealistic or artistic."),
    weights_dir: Optional[Path] = typer.Option(None, "--weights-dir", help="Where to store it "
                                               "(default $URST_WEIGHTS, else ~/.cache/urst/weights)."),
) -> None:
    """Check a weights file against the model's layout and store it as safetensors (never runs pickled code)."""
    from ..weightstore import import_weights

    try:
        path = import_weights(file, model, name, weights_dir)
    except UrstError as exc:
        fail(exc)
    typer.echo(f"imported {file.name} as {path}")


@app.command("list")
def weights_list(weights_dir: Optional[Path] = typer.Option(None, "--weights-dir", help="Imported weights "
                                                             "directory.")) -> None:
    """Installed weights: name, size, sha256, the models that use them, and where they are."""
    from ..weightstore import list_weights

    for w in list_weights(weights_dir):
        typer.echo(f"{w.stem:<24} {w.size / 1e6:8.1f} MB  {w.sha256}  {','.join(w.models) or '-':<14} "
                   f"{'shipped' if w.shipped else w.path}")
