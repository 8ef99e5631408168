"""``urst info``: what each image is (headers only) and what ``urst stylize`` would do with it."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Optional

import typer

from ..errors import EXIT_SOME_FAILED, UrstError
from .common import DeviceChoice, err, fail

__all__ = ["info"]


def info(
    files: list[str] = typer.Argument(..., help="Images to describe; - reads one from stdin."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per file on stdout (JSON Lines)."),
    model: str = typer.Option("magenta", "--model", "-m", help="The model whose tiling and memory to estimate."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Which weights (as for stylize)."),
    weights_dir: Optional[Path] = typer.Option(None, "--weights-dir", help="Imported weights directory."),
    device: DeviceChoice = typer.Option(DeviceChoice.auto, "--device", help="The device to plan for (on CUDA the "
                                        "GPU memory of a batch is measured)."),
    patch_size: Optional[int] = typer.Option(None, "--patch-size", min=64, help="As in stylize."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="As in stylize."),
) -> None:
    """Size, bands, format, bit depth, colour space/ICC, tiling, pyramid levels, BigTIFF and file size of each
    image, and what `urst stylize` would do: patches, the statistics auto picks, output size, memory.

    Exit status as stylize: 3 when the one file cannot be read, 5 when some of several could not.
    """
    from ..batch import spool
    from ..bench import DATA
    from ..describe import header, job_plan
    from ..job import Job, prepare
    from ..models import get_spec
    from ..writer import OutputSpec

    try:
        spec = get_spec(model)
        job = Job(input=Path(), output=OutputSpec(Path("out.tif")), model=model, weights=weights,
                  weights_dir=weights_dir, styles=[DATA / "starry_night.jpg"] if spec.style == "image" else [],
                  presets=[0] if spec.style == "preset" else [], device=device.value, patch_size=patch_size,
                  batch_size=batch_size)
        prepared = prepare(job)
    except UrstError as exc:
        fail(exc)
    failures: list[UrstError] = []
    with tempfile.TemporaryDirectory(prefix="urst-") as workdir:
        for name in files:
            try:
                path = spool(sys.stdin.buffer, Path(workdir) / "stdin") if name == "-" else Path(name)
                facts = header(path)
                facts["path"] = name
                facts["urst"] = job_plan(facts["width"], facts["height"], 4 if facts["alpha"] else 3, job, prepared)
            except UrstError as exc:
                failures.append(exc)
                if as_json:
                    typer.echo(json.dumps({"path": name, "error": str(exc), "exit_code": exc.exit_code}))
                err.print(f"Error: {exc}", markup=False, soft_wrap=True)
                continue
            typer.echo(json.dumps(facts) if as_json else _text(facts))
    if failures:
        raise typer.Exit(failures[0].exit_code if len(files) == 1 else EXIT_SOME_FAILED)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _text(f: dict) -> str:
    icc = f["icc"]
    icc_text = f"ICC {icc['description'] or icc['colour_space']} ({icc['bytes']} B)" if icc else "no ICC profile"
    tiff = f", {'BigTIFF' if f['bigtiff'] else 'classic TIFF'}, {f['compression']}" if f["bigtiff"] is not None else ""
    tile = f"tiles {f['tile'][0]}x{f['tile'][1]}" if f["tile"] else "not tiled"
    levels = ", ".join(f"{w}x{h}" for w, h in f["levels"])
    u = f["urst"]
    gpu = f", GPU {u['gpu_batch_mib']:.0f} MiB a batch" if u["gpu_batch_mib"] is not None else ""
    painted = f" in {len(u['levels'])} levels ({', '.join(f'{w}x{h}' for w, h in u['levels'])})" \
        if len(u["levels"]) > 1 else ""
    return (f"{f['path']}: {f['width']}x{f['height']}, {f['bands']} bands{' with alpha' if f['alpha'] else ''}, "
            f"{f['format']}{tiff}, {f['bit_depth']}-bit {f['sample_format']}, {f['colour_space']}, {icc_text}, "
            f"{tile}, {len(f['levels'])} level{'s' if len(f['levels']) > 1 else ''} ({levels}), "
            f"{_mb(f['file_bytes'])}\n"
            f"  urst: {u['model']} on {u['device']}, {u['patch']} px patches ({u['overlap']} px context, batch "
            f"{u['batch']}): {u['patches']} patches{painted}, stats {u['stats']}, output ~{_mb(u['output_bytes_estimate'])} "
            f"(tif), peak RSS ~{u['peak_rss_mib_estimate']} MiB{gpu}")
