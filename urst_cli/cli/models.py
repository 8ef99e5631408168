"""``urst models``: what each model needs and whether it is installed."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

__all__ = ["list_models"]


def list_models(weights_dir: Optional[Path] = typer.Option(None, "--weights-dir", help="Imported weights directory.")
                ) -> None:
    """List the models, what style each takes, the weights each needs and whether they are installed."""
    from ..models import REGISTRY, missing_parts
    from ..weightstore import list_weights

    installed = {w.stem for w in list_weights(weights_dir)}
    for spec in REGISTRY.values():
        if spec.named_weights:
            names = sorted(s for s in installed if s.startswith(next(iter(spec.parts)).split("{name}")[0]))
            state = f"installed: {', '.join(names)}" if names else "MISSING"
        else:
            states = []
            for name in spec.variants or (None,):
                missing = missing_parts(spec, name, weights_dir)
                found = "installed" if not missing else f"MISSING {', '.join(missing)}"
                states.append(f"{name} {found}" if name else found)
            state = "; ".join(states)
        typer.echo(f"{spec.name:<13} {spec.summary}\n{'':<13} weights: {state} (from {spec.source})")
