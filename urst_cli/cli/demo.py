"""``urst demo``: the shipped photo, enlarged, painted with the shipped painting."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import EventView, err, run_batch_command

__all__ = ["demo"]

def demo(
    size: int = typer.Option(8000, "--size", min=256, help="Long side, in pixels, to enlarge the shipped photo to."),
    out_dir: Path = typer.Option(Path("urst-demo"), "--out-dir", help="Where the enlarged photo and the result go."),
) -> None:
    """Stylize the shipped photo, enlarged to --size pixels, with the shipped painting (Van Gogh)."""
    import pyvips

    from ..batch import BatchOptions, Item, Source
    from ..bench import DATA
    from ..job import Job
    from ..writer import OutputSpec

    out_dir.mkdir(parents=True, exist_ok=True)
    photo = pyvips.Image.new_from_file(str(DATA / "sunset_hills.jpg"), access="sequential")
    scale = size / max(photo.width, photo.height)
    big = out_dir / f"sunset_hills_{round(photo.width * scale)}x{round(photo.height * scale)}.tif"
    if not big.exists():
        err.print(f"making the demo input {big} (the shipped photo enlarged x{scale:.2f})")
        partial = big.with_name(f".{big.name}.partial")
        photo.resize(scale).tiffsave(str(partial), tile=True, bigtiff=True, compression="jpeg", Q=92)
        partial.replace(big)
    result_path = out_dir / "sunset_hills_starry_night.tif"
    job = Job(input=big, output=OutputSpec(result_path, pyramid=True), styles=[DATA / "starry_night.jpg"],
              overwrite=True)
    items = [Item(Source(big, str(big), Path(".")), result_path)]
    run_batch_command(job, items, BatchOptions(), EventView())
    typer.echo(f"result: {result_path.resolve()}")
