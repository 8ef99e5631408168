"""``urst sheet``: one photo, reduced, in many styles on one labelled contact sheet."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Optional

import typer

from ..errors import EXIT_USAGE, UrstError
from .common import DeviceChoice, err, fail

__all__ = ["sheet"]


def sheet(
    photo: Path = typer.Argument(..., help="The photograph to try the styles on."),
    style: list[Path] = typer.Option([], "--style", "-s", help="A painting to try; repeat for several."),
    presets: bool = typer.Option(False, "--presets", help="Also try each of the 26 built-in styles (multistyle26)."),
    model: str = typer.Option("magenta", "--model", "-m", help="The model for the paintings (see `urst models`)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="The sheet (.jpg .png .webp .tif). Default: "
                                          "<photo>_sheet.jpg beside the photo."),
    size: int = typer.Option(384, "--size", min=64, max=2048, help="Long side of the photo in each cell, in pixels."),
    device: DeviceChoice = typer.Option(DeviceChoice.auto, "--device", help="Where the network runs."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the sheet if it exists."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors."),
) -> None:
    """Try styles before a long job: the photo, reduced, in each painting and (--presets) each built-in style,
    labelled, on one sheet. Seconds, not minutes.

    Example:

      urst sheet photo.jpg -s monet.jpg -s hokusai.jpg --presets
    """
    from ..batch import numbered
    from ..job import Job
    from ..sheet import cells_for, contact_sheet
    from ..writer import OutputSpec

    if not style and not presets:
        fail(UrstError("give a painting (-s PAINTING) or --presets", EXIT_USAGE))
    dest = output or numbered(photo.with_name(f"{photo.stem}_sheet.jpg"))
    cells = cells_for(style, presets, model)
    template = Job(input=photo, output=OutputSpec(dest), device=device.value)
    show = (lambda label, seconds: err.print(f"{label}: {seconds:.1f} s", markup=False)) if not quiet else \
        (lambda label, seconds: None)
    with tempfile.TemporaryDirectory(prefix="urst-") as workdir:
        try:
            contact_sheet(photo, cells, dest, Path(workdir), template, size, overwrite, show)
        except UrstError as exc:
            fail(exc)
    if not quiet:
        err.print(f"wrote {dest}  ({len(cells) + 1} cells)")
