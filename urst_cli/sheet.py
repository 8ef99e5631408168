"""A labelled contact sheet: one photo, reduced, in many styles side by side (the library behind ``urst sheet``).

Each cell is an ordinary job (``job.run``) on the reduced photo, so a cell looks as the full job
would at that size; the cells are labelled and joined by libvips and written by the writer
(atomically, any output format).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import pyvips

from .errors import EXIT_INPUT, UrstError
from .job import Job, run
from .models import NUM_PRESETS
from .reader import probe
from .writer import OutputSpec, check_output, write_rows

__all__ = ["Cell", "cells_for", "contact_sheet", "CELL_SIDE", "COLUMNS"]

CELL_SIDE = 384   # long side of the reduced photo in each cell
COLUMNS = 6
GAP = 8           # pixels between cells


@dataclass(frozen=True)
class Cell:
    label: str
    model: str = "magenta"
    styles: tuple[Path, ...] = ()
    presets: tuple[int, ...] = ()


def cells_for(paintings: list[Path], presets: bool, model: str = "magenta") -> list[Cell]:
    """One cell per painting (with ``model``), then, with ``presets``, one per built-in style of multistyle26."""
    cells = [Cell(p.stem, model, styles=(p,)) for p in paintings]
    if presets:
        cells += [Cell(f"preset {n}", "multistyle26", presets=(n,)) for n in range(NUM_PRESETS)]
    return cells


def _caption(image: pyvips.Image, text: str) -> pyvips.Image:
    """``image`` (8-bit RGB) with ``text`` in white on a dark strip below it."""
    label = pyvips.Image.text(text, width=image.width - 2 * GAP, dpi=96, font="sans 10")
    strip = label.embed(GAP, GAP // 2, image.width, label.height + GAP)
    return image.join(strip.ifthenelse([255, 255, 255], [32, 32, 32], blend=True).cast("uchar"), "vertical")


def contact_sheet(photo: Path, cells: list[Cell], dest: Path, workdir: Path, template: Job | None = None,
                  side: int = CELL_SIDE, overwrite: bool = False,
                  on_cell: Callable[[str, float], None] = lambda label, seconds: None) -> Path:
    """Write ``dest``: the photo reduced to ``side`` px long, first as it is, then in each cell's style.

    ``template``: settings every cell shares (statistics, device, ...); its input, output, model and
    style are replaced per cell. ``on_cell(label, seconds)`` follows each finished cell.
    """
    info = probe(photo)
    check_output(OutputSpec(dest), photo, info.width, info.height, overwrite)
    reduced = workdir / "photo.png"
    try:
        scale = side / max(info.width, info.height)
        pyvips.Image.thumbnail(str(photo), max(1, round(info.width * scale)), height=max(1, round(info.height * scale)),
                               size="force", fail_on="error").write_to_file(str(reduced))
    except pyvips.Error as exc:
        raise UrstError(f"{photo}: cannot reduce it ({str(exc).strip().splitlines()[0]})", EXIT_INPUT) from None
    template = template or Job(input=reduced, output=OutputSpec(workdir / "cell.png"))
    images = [_caption(_rgb(reduced), "original")]
    for i, cell in enumerate(cells):
        started = time.perf_counter()
        job = replace(template, input=reduced, output=OutputSpec(workdir / f"cell{i}.png"), model=cell.model,
                      styles=list(cell.styles), presets=list(cell.presets), overwrite=True, resume=False)
        result = run(job)
        images.append(_caption(_rgb(result.path), cell.label))
        on_cell(cell.label, time.perf_counter() - started)
    across = min(COLUMNS, len(images))
    sheet = pyvips.Image.arrayjoin(images, across=across, shim=GAP, background=[255, 255, 255])
    sheet = sheet.embed(GAP, GAP, sheet.width + 2 * GAP, sheet.height + 2 * GAP, extend="background",
                        background=[255, 255, 255])
    write_rows([sheet.numpy()], sheet.width, sheet.height, 3, OutputSpec(dest))
    return dest


def _rgb(path: Path) -> pyvips.Image:
    image = pyvips.Image.new_from_file(str(path))
    if image.hasalpha():
        image = image.flatten(background=[255, 255, 255])
    return image.colourspace("srgb").cast("uchar") if image.bands < 3 else image.extract_band(0, n=3).cast("uchar")
