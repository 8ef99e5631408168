"""Tile pyramids for viewers: DeepZoom (.dzi, .szi) and IIIF, cut by libvips' dzsave while rows stream in.

An output of this kind is more than one file, so it is written into a hidden staging folder
beside the output and moved into place only when complete:

- ``dzi``: ``NAME.dzi`` (an XML descriptor) and the folder ``NAME_files/LEVEL/COL_ROW.jpeg``; the folder is
  moved first, the descriptor last, so a ``.dzi`` is never there without all of its tiles.
- ``szi``: one zip file holding ``NAME/NAME.dzi`` and ``NAME/NAME_files/...`` (libvips' "szi" container).
- ``iiif``: a folder ``NAME/`` with ``info.json`` and IIIF Image API 3 level-0 tiles: any IIIF viewer reads it
  from a static web server once ``id`` in ``info.json`` names where it is published.

dzsave keeps one strip of tiles per pyramid level while it reads the image top to bottom, so the
image is never held whole.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pyvips

__all__ = ["KINDS", "TILE_SIZE", "Descriptor", "occupied", "replaceable", "save", "publish", "read_descriptor",
           "szi_descriptor_member"]

KINDS = ("dzi", "szi", "iiif")
TILE_SIZE = 512  # 4x fewer files than dzsave's 254, and still quick to fetch one at a time
_DZ_NAMESPACE = "{http://schemas.microsoft.com/deepzoom/2008}"


@dataclass(frozen=True)
class Descriptor:
    """What a viewer needs to know about a pyramid: the full-resolution size and how it is cut."""

    width: int
    height: int
    tile_size: int
    overlap: int
    format: str  # tile file suffix: jpeg, png (DeepZoom) or jpg, png (IIIF)


def _files_folder(path: Path) -> Path:
    return path.with_name(f"{path.stem}_files")


def occupied(path: Path, kind: str) -> list[Path]:
    """The paths an output of ``kind`` at ``path`` takes: a .dzi is a file and a folder."""
    return [path, _files_folder(path)] if kind == "dzi" else [path]


def replaceable(path: Path, kind: str) -> bool:
    """Whether ``--overwrite`` may remove this existing path: a file, or a folder urst's kind of output made.

    A folder is only ever replaced when it looks like a pyramid (IIIF: it has info.json; DeepZoom:
    nothing but level folders), so a mistyped ``-o ~/Pictures`` never deletes a folder of photos.
    """
    if path.is_symlink() or not path.is_dir():
        return True
    if kind == "iiif":
        return (path / "info.json").is_file()
    return all(entry.name.isdigit() and entry.is_dir() or entry.name == "vips-properties.xml"
               for entry in path.iterdir())


def save(image: pyvips.Image, staging: Path, name: str, kind: str, quality: int) -> None:
    """Cut ``image`` (read top to bottom once) into a pyramid named ``name`` inside ``staging``, a new folder."""
    staging.mkdir()
    jpeg = ".jpg" if kind == "iiif" else ".jpeg"  # what each layout's viewers ask for
    suffix = ".png" if image.hasalpha() else f"{jpeg}[Q={quality}]"  # JPEG has no alpha
    stem, options = Path(name).stem, {"tile_size": TILE_SIZE, "suffix": suffix}
    # dzsave reads options from [...] in its file name: the output's own name goes in as imagename
    if kind == "dzi":
        image.dzsave(str(staging / "pyramid"), imagename=stem, **options)
    elif kind == "szi":
        image.dzsave(str(staging / "pyramid.szi"), imagename=stem, container="szi", **options)
        (staging / "pyramid.szi").rename(staging / name)
    else:
        image.dzsave(str(staging / "pyramid"), imagename=name, layout="iiif3", **options)
        if image.hasalpha():  # IIIF's default tile format is jpg: say that these are PNG
            info_path = staging / name / "info.json"
            info = json.loads(info_path.read_text())
            info["extraFormats"] = info["preferredFormats"] = ["png"]
            info_path.write_text(json.dumps(info, indent=2))


def publish(staging: Path, path: Path, kind: str, width: int, height: int) -> None:
    """Check the staged pyramid, then move it to ``path`` (replacing what was there); ``staging`` is left empty
    of it. Raises ValueError if what dzsave wrote does not describe a ``width`` x ``height`` image."""
    staged = staging / path.name
    described = read_descriptor(staged)
    if (described.width, described.height) != (width, height):
        raise ValueError(f"the written pyramid is {described.width}x{described.height}, expected {width}x{height}")
    for target in occupied(path, kind):  # for .dzi the folder first, the descriptor last
        _replace(staging / target.name, target, staging)


def _replace(source: Path, target: Path, staging: Path) -> None:
    """Rename ``source`` to ``target``; an existing folder there is first moved aside into ``staging``."""
    if target.is_dir() and not target.is_symlink():
        aside = staging / f"replaced-{target.name}"
        target.rename(aside)
        os.replace(source, target)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(source, target)


def read_descriptor(path: Path) -> Descriptor:
    """The descriptor of a .dzi file, a .szi zip or an IIIF folder (or its info.json).

    Raises ValueError (and OSError, zipfile.BadZipFile) when ``path`` is not a readable pyramid.
    """
    if path.is_dir() or path.name == "info.json":
        info_path = path / "info.json" if path.is_dir() else path
        return _iiif_descriptor(json.loads(info_path.read_text()))
    if path.suffix.lower() == ".szi":
        with zipfile.ZipFile(path) as archive:
            return _dz_descriptor(archive.read(szi_descriptor_member(archive)))
    return _dz_descriptor(path.read_bytes())


def szi_descriptor_member(archive: zipfile.ZipFile) -> str:
    """The name of the .dzi inside a .szi: ``NAME/NAME.dzi``."""
    found = [n for n in archive.namelist() if re.fullmatch(r"[^/]+/[^/]+\.dzi", n)]
    if len(found) != 1:
        raise ValueError("not a .szi: no NAME/NAME.dzi inside")
    return found[0]


def _dz_descriptor(xml: bytes) -> Descriptor:
    try:
        root = ET.fromstring(xml)
        size = root.find(f"{_DZ_NAMESPACE}Size")
        return Descriptor(int(size.get("Width")), int(size.get("Height")), int(root.get("TileSize")),
                          int(root.get("Overlap")), root.get("Format"))
    except (ET.ParseError, AttributeError, TypeError, ValueError):
        raise ValueError("not a DeepZoom descriptor") from None


def _iiif_descriptor(info: dict) -> Descriptor:
    try:
        tiles = info["tiles"][0]
        return Descriptor(int(info["width"]), int(info["height"]), int(tiles["width"]), 0,
                          "png" if "png" in info.get("preferredFormats", ()) else "jpg")
    except (KeyError, IndexError, TypeError, ValueError):
        raise ValueError("not an IIIF info.json") from None
