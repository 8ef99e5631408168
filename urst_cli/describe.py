"""What a file is and what a job would do with it: the library behind ``urst info``.

``header`` reads headers only (libvips, and tifffile for TIFF's own structure); ``job_plan`` adds
what ``urst stylize`` with the given settings would do: tiling, the statistics ``auto`` picks,
estimates of the output size and of memory. Both return plain dicts (``urst info --json``).
"""

from __future__ import annotations

import struct
from pathlib import Path

import pyvips

from .errors import EXIT_INPUT, UrstError
from .job import Job, Prepared, whole_pass_limit
from .models import valid_size
from .multiscale import plan_levels
from .reader import probe

__all__ = ["header", "job_plan", "estimated_rss_mib"]

BITS = {"uchar": 8, "char": 8, "ushort": 16, "short": 16, "uint": 32, "int": 32, "float": 32, "double": 64,
        "complex": 64, "dpcomplex": 128}
# the default output (tiled BigTIFF, predictor + deflate) holds ~0.75 of the raw bytes of stylized pixels
# (measured on the writer's tiles, see writer._encode_tile)
DEFLATE_RATIO = 0.75


def header(path: Path) -> dict:
    """Size, bands, format, bit depth, colour space and ICC profile, tiling, pyramid levels, BigTIFF, file size."""
    try:
        img = pyvips.Image.new_from_file(str(path), access="sequential", fail=True)
    except pyvips.Error:
        probe(path)  # the reader's one-line reason: missing, a folder, empty, not an image
        raise UrstError(f"{path}: not an image urst can read", EXIT_INPUT) from None
    facts = {"path": str(path), "file_bytes": path.stat().st_size, "format": img.get("vips-loader").replace("load", ""),
             "width": img.width, "height": img.height, "bands": img.bands, "alpha": bool(img.hasalpha()),
             "bit_depth": BITS.get(img.format, 0), "sample_format": img.format, "colour_space": img.interpretation,
             "icc": _icc(img.get("icc-profile-data")) if img.get_typeof("icc-profile-data") else None,
             "pages": img.get("n-pages") if img.get_typeof("n-pages") else 1,
             "tile": [img.get("tile-width"), img.get("tile-height")] if img.get_typeof("tile-width") else None,
             "levels": [[img.width, img.height]], "bigtiff": None, "compression": None}
    if facts["format"] == "tiff":
        facts.update(_tiff(path))
    return facts


def _tiff(path: Path) -> dict:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series, page = tif.series[0], tif.pages[0]
            return {"bigtiff": tif.is_bigtiff, "compression": page.compression.name.lower(),
                    "levels": [[lvl.shape[lvl.axes.index("X")], lvl.shape[lvl.axes.index("Y")]]
                               for lvl in series.levels]}
    except (tifffile.TiffFileError, ValueError, IndexError, KeyError) as exc:
        return {"tiff_error": str(exc)}


def _icc(data: bytes) -> dict:
    """An ICC profile's size, colour space and description (its 'desc' tag, ICC v2 or v4)."""
    facts = {"bytes": len(data), "colour_space": data[16:20].decode("latin-1").strip() or None, "description": None}
    try:
        for i in range(struct.unpack(">I", data[128:132])[0]):
            sig, offset, size = struct.unpack(">4sII", data[132 + 12 * i: 144 + 12 * i])
            if sig != b"desc":
                continue
            tag = data[offset: offset + size]
            if tag[:4] == b"desc":  # v2 textDescriptionType: ASCII count, then the text
                n = struct.unpack(">I", tag[8:12])[0]
                facts["description"] = tag[12: 12 + n].rstrip(b"\0").decode("latin-1")
            elif tag[:4] == b"mluc":  # v4: the first record's UTF-16BE text
                length, start = struct.unpack(">II", tag[20:28])
                facts["description"] = tag[start: start + length].decode("utf-16-be")
    except (struct.error, UnicodeDecodeError):
        pass  # a damaged profile: its size and space are still worth showing
    return facts


def estimated_rss_mib(width: int, device: str) -> float:
    """Peak resident memory of a default job on an image ``width`` pixels wide (README, `urst bench`).

    CPU: `import torch` plus the statistics pass, ~830 MiB, until width-sized buffers (~5 KB per column)
    take over beyond ~20k px (923 MiB at 38,730 px). CUDA: the CUDA libraries add ~500 MiB (1342 MiB
    at 4 MP, 1738 MiB at 38,730 px wide).
    """
    if device == "cuda":
        return max(1340.0, 1360 + width * 10e3 / 2**20)
    return max(830.0, 730 + width * 5e3 / 2**20)


def job_plan(info_width: int, info_height: int, bands: int, job: Job, prepared: Prepared) -> dict:
    """What ``urst stylize`` with ``job``'s settings would do with an image of this size."""
    runner, plan = prepared.for_image(job)
    model = runner.model
    levels = plan_levels(info_width, info_height, job.stroke_scale)  # multi-scale: each level is a tiled pass
    patches = sum(len(cols) * len(rows) for cols, rows in
                  (plan.axes(valid_size(lv.width, model), valid_size(lv.height, model)) for lv in levels))
    pixels = info_width * info_height
    stats = job.stats
    if stats == "auto":
        stats = "whole" if valid_size(info_width, model) * valid_size(info_height, model) <= \
            (job.whole_limit or whole_pass_limit(runner, plan)) else "sampled"
    device = prepared.device.type
    facts = {"model": job.model, "device": device, "patch": plan.patch, "overlap": plan.overlap,
             "batch": plan.batch, "levels": [[lv.width, lv.height] for lv in levels], "patches": patches,
             "stats": stats,
             "output_bytes_estimate": int(pixels * bands * DEFLATE_RATIO),
             "peak_rss_mib_estimate": round(estimated_rss_mib(info_width, device)),
             "gpu_batch_mib": None}
    if device == "cuda":
        facts["gpu_batch_mib"] = round(runner.patch_bytes(plan.patch) * plan.batch / 2**20, 1)
    return facts
