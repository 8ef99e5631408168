"""``urst bench``: a sweep of image sizes measured in fresh processes (``urst_cli.bench``), as a table or JSON."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from ..errors import EXIT_FAILURE, EXIT_INPUT, EXIT_USAGE, UrstError
from .common import DeviceChoice, StatsChoice, err, fail

__all__ = ["bench"]


class InputFormat(str, Enum):
    tif = "tif"
    jpg = "jpg"
    png = "png"


def bench(
    sizes: str = typer.Option("1,4,16,64,256", "--sizes", help="Input sizes in megapixels, comma-separated."),
    input: Optional[Path] = typer.Option(None, "--input", help="Photo to resize to each size (default: the shipped one)."),
    input_format: InputFormat = typer.Option(InputFormat.tif, "--input-format", help="How each input is stored: "
                                             "tif (tiled JPEG BigTIFF, like scans and the demo), jpg or png."),
    style: list[Path] = typer.Option([], "--style", "-s", help="Painting (default: the shipped Starry Night)."),
    model: str = typer.Option("magenta", "--model", "-m", help="Network to measure."),
    preset: list[int] = typer.Option([], "--preset", help="Built-in style (multistyle26)."),
    stats: StatsChoice = typer.Option(StatsChoice.auto, "--stats", help="As in stylize."),
    patch_size: Optional[int] = typer.Option(None, "--patch-size", min=64, help="As in stylize."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="As in stylize."),
    device: DeviceChoice = typer.Option(DeviceChoice.auto, "--device", help="As in stylize."),
    weights: Optional[str] = typer.Option(None, "--weights", help="As in stylize (johnson's name, capvst's "
                                          "photorealistic|artistic, linear's r41|r31)."),
    weights_dir: Optional[Path] = typer.Option(None, "--weights-dir", help="Imported weights directory."),
    baseline: bool = typer.Option(False, "--baseline-whole", help="Also run each image whole, without tiling, "
                                  "until it runs out of memory (as in the URST paper's memory figure)."),
    copy_baseline: bool = typer.Option(False, "--baseline-copy", help="Also time libvips copying each input to "
                                       "a tiled deflate BigTIFF (decode + encode only): the I/O floor."),
    host_baseline: bool = typer.Option(False, "--baseline-host", help="Also run each input with the network "
                                       "replaced by the null model (same windows, batches, transfers, blending and "
                                       "writing): the host pipeline's ceiling."),
    memory_limit: float = typer.Option(16.0, "--memory-limit", min=0.5, help="GiB a whole-image baseline may "
                                       "allocate before it counts as out of memory."),
    stroke_scales: str = typer.Option("auto,1", "--stroke-scales", help="Stroke scales to run each size with, "
                                      "comma-separated, side by side (default: multi-scale auto and single-scale 1)."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON (for scripts)."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write a chart of memory and time against "
                                        "megapixels to this PNG (needs matplotlib: pip install urst[plot])."),
) -> None:
    """Measure time, throughput, peak memory and where the time goes, for a sweep of image sizes.

    Each size runs in a fresh process, so its peak memory is its own.
    """
    from ..bench import DATA, run_sweep
    from ..models import get_spec

    try:
        size_list = [float(v) for v in sizes.split(",") if v.strip()]
        if not size_list or min(size_list) <= 0:
            raise ValueError
        spec = get_spec(model)
    except ValueError:
        fail(UrstError(f"--sizes {sizes}: give positive megapixels separated by commas", EXIT_USAGE))
    except UrstError as exc:
        fail(exc)
    if plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            fail(UrstError("--plot needs matplotlib: pip install 'urst[plot]'", EXIT_USAGE))
    if input is not None and not input.is_file():
        fail(UrstError(f"{input}: no such file", EXIT_INPUT))
    styles = [str(p) for p in style] or ([str(DATA / "starry_night.jpg")] if spec.style == "image" else [])
    options = {"source_path": str(input or DATA / "sunset_hills.jpg"), "input_format": input_format.value,
               "styles": styles, "presets": preset or ([0] if spec.style == "preset" else []), "model": model,
               "stats": stats.value, "patch_size": patch_size, "batch_size": batch_size, "device": device.value,
               "weights": weights, "weights_dir": str(weights_dir) if weights_dir else None,
               "memory_limit": int(memory_limit * 2**30)}
    table = _BenchTable(enabled=not as_json)
    rows = run_sweep(size_list, options, baseline, table.add, copy_baseline, host_baseline,
                     tuple(v.strip() for v in stroke_scales.split(",") if v.strip()))
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    if plot is not None:
        _plot(rows, plot)
        err.print(f"chart: {plot}")
    errors = [m["error"] for row in rows for m in (row["tiled"], row.get("host", {})) if "error" in m]
    if errors:  # a script must not take a sweep with holes in it for a measurement
        fail(UrstError(f"{len(errors)} measurement(s) failed, the first: {errors[0]}", EXIT_FAILURE))


class _BenchTable:
    """Prints one row per size as soon as it is measured."""

    STAGES = ("pyramid", "read", "stats", "model", "blend", "write")

    def __init__(self, enabled: bool):
        from rich.console import Console

        self.out = Console(highlight=False) if enabled else None
        self.started = False

    def add(self, row: dict) -> None:
        if self.out is None:
            return
        if not self.started:
            self.out.print(f"{'size':>15} {'MP':>7} {'strokes':>7} {'time s':>8} {'MP/s':>6} {'RSS MiB':>8} "
                           f"{'GPU MiB':>8} "
                           f"{'÷model':>7} {'÷copy':>6}  " + " ".join(f"{s:>6}" for s in self.STAGES) +
                           "  whole image", soft_wrap=True)
            self.started = True
        size = f"{row['width']}x{row['height']}"
        whole = row.get("whole")
        whole_text = ("" if whole is None else "out of memory" if whole.get("oom") else
                      f"failed: {whole['error']}" if "error" in whole else
                      f"{whole['seconds']:.1f} s, {whole['peak_rss_mib']:.0f} MiB")
        self._line(size, row["megapixels"], row["stroke_scale"], row["tiled"], row.get("copy", {}), whole_text)
        if "host" in row:  # the same job with the null model: the pipeline without the network
            self._line("host only", row["megapixels"], row["stroke_scale"], row["host"], row.get("copy", {}), "")

    def _line(self, label: str, megapixels: float, strokes: str, t: dict, copy: dict, whole_text: str) -> None:
        if "error" in t:
            self.out.print(f"{label:>15} {megapixels:7.1f} {strokes:>7}  failed: {t['error']}", markup=False,
                           soft_wrap=True)
            return
        per_copy = f"{t['seconds'] / copy['seconds']:6.1f}" if "seconds" in copy else f"{'-':>6}"
        per_model = f"{t['seconds'] / t['model_alone_seconds']:7.2f}" if "model_alone_seconds" in t else f"{'-':>7}"
        stages = " ".join(f"{t['stages'].get(s, 0):6.1f}" for s in self.STAGES)
        gpu = f"{t['peak_gpu_mib']:8.0f}" if "peak_gpu_mib" in t else f"{'-':>8}"
        self.out.print(f"{label:>15} {megapixels:7.1f} {strokes:>7} {t['seconds']:8.1f} "
                       f"{megapixels / t['seconds']:6.2f} "
                       f"{t['peak_rss_mib']:8.0f} {gpu} {per_model} {per_copy}  {stages}  {whole_text}",
                       markup=False, soft_wrap=True)


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (mem, secs) = plt.subplots(1, 2, figsize=(10, 4))
    for strokes in dict.fromkeys(r["stroke_scale"] for r in rows):
        ok = [r for r in rows if "error" not in r["tiled"] and r["stroke_scale"] == strokes]
        mp = [r["megapixels"] for r in ok]
        label = f"urst (tiled, --stroke-scale {strokes})"
        mem.plot(mp, [r["tiled"]["peak_rss_mib"] for r in ok], "o-", label=label)
        secs.plot(mp, [r["tiled"]["seconds"] for r in ok], "o-", label=label)
    whole = [r for r in rows if r.get("whole") and not r["whole"].get("oom") and "error" not in r["whole"]]
    if whole:
        mem.plot([r["megapixels"] for r in whole], [r["whole"]["peak_rss_mib"] for r in whole], "s--",
                 label="whole image")
        secs.plot([r["megapixels"] for r in whole], [r["whole"]["seconds"] for r in whole], "s--",
                  label="whole image")
    for axis, label in ((mem, "peak RSS (MiB)"), (secs, "time (s)")):
        axis.set_xscale("log")
        axis.set_xlabel("megapixels")
        axis.set_ylabel(label)
        axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


