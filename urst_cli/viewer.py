"""``urst view``: a page on 127.0.0.1 that shows results with OpenSeadragon, tiles cut on demand.

What can be viewed (``open_source``):

- any image libvips reads (BigTIFF, pyramidal or flat; PNG, JPEG, ...): DeepZoom tiles are cut
  on demand. Full-resolution tiles are region reads of the image (only the TIFF tiles under them
  are decoded). Zoomed-out levels would each need a large part of the image shrunk, so they come
  from an overview that libvips' ``thumbnail`` makes once, in the background, when the image is
  opened: shrink-on-load where the format has it (JPEG, pyramidal TIFF), one pass over the
  image otherwise. Tiles of those levels wait for it; full-resolution ones never do.
- a ``.dzi`` (with its ``_files`` folder) or a ``.szi`` zip: tiles served as stored;
- an IIIF folder (``info.json``): served as stored, ``id`` pointed at this server.

The server answers only on 127.0.0.1 and only these paths; anything else is 404:

    /  /view.js  /openseadragon.min.js  /images.json
    /image/N.dzi   /image/N_files/LEVEL/COL_ROW.(jpeg|png)                   DeepZoom
    /image/N/info.json   /image/N/REGION/SIZE/0/default.(jpg|png)             IIIF
"""

from __future__ import annotations

import json
import math
import re
import sys
import threading
import zipfile
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyvips

from .deepzoom import Descriptor, read_descriptor, szi_descriptor_member
from .errors import EXIT_INPUT, EXIT_USAGE, UrstError
from .reader import as_rgb, open_rgb

__all__ = ["LiveTiles", "DeepZoomFiles", "DeepZoomZip", "IIIFFolder", "Served", "open_source", "ViewServer",
           "TILE_SIZE", "OVERVIEW_SIDE"]

TILE_SIZE = 512           # tiles cut on demand: as dzsave writes them for urst
# and, as dzsave, with 1 px of overlap: OpenSeadragon stretches tiles without any by 1 px to hide seams,
# which would resample every pixel
TILE_OVERLAP = 1
OVERVIEW_SIDE = 4096      # the overview's long side is at most this (64 MiB with alpha), and more than half of it
TILE_QUALITY = 90
STATIC = Path(__file__).resolve().parent / "static"
PAGES = {"/": ("index.html", "text/html; charset=utf-8"),
         "/view.js": ("view.js", "text/javascript; charset=utf-8"),
         "/openseadragon.min.js": ("openseadragon.min.js", "text/javascript; charset=utf-8")}
CONTENT_TYPES = {"jpeg": "image/jpeg", "jpg": "image/jpeg", "png": "image/png"}
_DZ_DESCRIPTOR = re.compile(r"/image/(\d+)\.dzi")
_DZ_TILE = re.compile(r"/image/(\d+)_files/(\d+)/(\d+)_(\d+)\.(jpeg|png)")
_IIIF_INFO = re.compile(r"/image/(\d+)/info\.json")
_IIIF_TILE = re.compile(r"/image/(\d+)/((?:\d+,){3}\d+|full)/(\d*,\d*|max)/0/default\.(jpg|png)")


def _dzi_xml(d: Descriptor) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Image xmlns="http://schemas.microsoft.com/deepzoom/2008" '
            f'Format="{d.format}" Overlap="{d.overlap}" TileSize="{d.tile_size}"><Size Width="{d.width}" '
            f'Height="{d.height}"/></Image>\n').encode()


class LiveTiles:
    """DeepZoom tiles of any image libvips reads, cut when asked for (see the module docstring)."""

    layout = "dzi"

    def __init__(self, path: Path):
        self.path = path
        rgb, alpha = open_rgb(path, "random")
        self._full = rgb.bandjoin(alpha) if alpha is not None else rgb
        self.width, self.height = self._full.width, self._full.height
        self.descriptor = Descriptor(self.width, self.height, TILE_SIZE, TILE_OVERLAP,
                                     "png" if alpha is not None else "jpeg")
        long_side = max(self.width, self.height)
        self.max_level = math.ceil(math.log2(long_side)) if long_side > 1 else 0
        # the overview: the image shrunk by the smallest power of two (at least 2) that brings it within
        # OVERVIEW_SIDE; none for an image that fits in one tile
        self.overview_factor = 1 if long_side <= TILE_SIZE else \
            2 ** max(1, math.ceil(math.log2(long_side / OVERVIEW_SIDE)))
        self._overview: pyvips.Image | None = None
        self._overview_error: str | None = None
        self._overview_ready = threading.Event()
        self._levels: dict[int, pyvips.Image] = {}
        self._lock = threading.Lock()
        if self.overview_factor > 1:
            threading.Thread(target=self._make_overview, name="urst-overview", daemon=True).start()
        else:
            self._overview_ready.set()

    def _make_overview(self) -> None:
        width, height = (-(-side // self.overview_factor) for side in (self.width, self.height))
        try:
            thumb = pyvips.Image.thumbnail(str(self.path), width, height=height, size="force", no_rotate=True)
            rgb, alpha = as_rgb(thumb)
            self._overview = (rgb.bandjoin(alpha) if alpha is not None else rgb).copy_memory()
        except pyvips.Error as exc:
            self._overview_error = str(exc).strip().splitlines()[0]
        finally:
            self._overview_ready.set()

    def descriptor_body(self, base_url: str) -> tuple[str, bytes]:
        return "application/xml", _dzi_xml(self.descriptor)

    def level_image(self, level: int) -> pyvips.Image:
        """The whole image at DeepZoom ``level`` (lazy: only what a tile crops out of it is computed)."""
        with self._lock:
            image = self._levels.get(level)
        if image is not None:
            return image
        factor = 2 ** (self.max_level - level)
        source, source_factor = self._full, 1
        if factor >= self.overview_factor:
            self._overview_ready.wait()
            if self._overview is None:
                raise pyvips.Error(f"no overview: {self._overview_error}")
            source, source_factor = self._overview, self.overview_factor
        shrink = factor // source_factor
        image = source.shrink(shrink, shrink, ceil=True) if shrink > 1 else source
        width, height = (-(-side // factor) for side in (self.width, self.height))
        if (image.width, image.height) != (width, height):  # thumbnail or shrink rounding: exactly DeepZoom's size
            image = image.embed(0, 0, width, height, extend="copy")
        with self._lock:
            self._levels[level] = image
        return image

    def tile(self, level: int, col: int, row: int, fmt: str) -> bytes | None:
        if fmt != self.descriptor.format or level > self.max_level:
            return None
        image = self.level_image(level)
        left, top = col * TILE_SIZE, row * TILE_SIZE
        if left >= image.width or top >= image.height:
            return None
        left, top = max(0, left - TILE_OVERLAP), max(0, top - TILE_OVERLAP)
        right = min(image.width, (col + 1) * TILE_SIZE + TILE_OVERLAP)
        bottom = min(image.height, (row + 1) * TILE_SIZE + TILE_OVERLAP)
        crop = image.crop(left, top, right - left, bottom - top)
        if fmt == "png":
            return crop.pngsave_buffer(compression=1, keep="none")
        return crop.jpegsave_buffer(Q=TILE_QUALITY, keep="none")


class DeepZoomFiles:
    """A ``.dzi`` descriptor and its ``NAME_files`` folder, as dzsave wrote them."""

    layout = "dzi"

    def __init__(self, path: Path):
        self.path = path
        self.descriptor = read_descriptor(path)
        self._folder = path.with_name(f"{path.stem}_files")

    def descriptor_body(self, base_url: str) -> tuple[str, bytes]:
        return "application/xml", self.path.read_bytes()

    def tile(self, level: int, col: int, row: int, fmt: str) -> bytes | None:
        file = self._folder / str(level) / f"{col}_{row}.{fmt}"
        return file.read_bytes() if fmt == self.descriptor.format and file.is_file() else None


class DeepZoomZip:
    """A ``.szi``: one zip holding ``NAME/NAME.dzi`` and ``NAME/NAME_files/...``."""

    layout = "dzi"

    def __init__(self, path: Path):
        self.path = path
        self._archive = zipfile.ZipFile(path)
        self._lock = threading.Lock()  # one file position: reads take turns
        member = szi_descriptor_member(self._archive)
        self._xml = self._archive.read(member)
        self._tiles_prefix = member[: -len(".dzi")] + "_files"
        self.descriptor = read_descriptor(path)

    def descriptor_body(self, base_url: str) -> tuple[str, bytes]:
        return "application/xml", self._xml

    def tile(self, level: int, col: int, row: int, fmt: str) -> bytes | None:
        if fmt != self.descriptor.format:
            return None
        with self._lock:
            try:
                return self._archive.read(f"{self._tiles_prefix}/{level}/{col}_{row}.{fmt}")
            except KeyError:
                return None


class IIIFFolder:
    """An IIIF Image API 3 level-0 folder: ``info.json`` and ``REGION/SIZE/0/default.jpg`` tiles."""

    layout = "iiif"

    def __init__(self, path: Path):
        self.path = path if path.is_dir() else path.parent
        self.descriptor = read_descriptor(self.path)

    def descriptor_body(self, base_url: str) -> tuple[str, bytes]:
        info = json.loads((self.path / "info.json").read_text())
        info["id"] = base_url  # where this server answers for it, whatever host it was written for
        return "application/json", json.dumps(info).encode()

    def file(self, region: str, size: str, name: str) -> bytes | None:
        file = self.path / region / size / "0" / name
        return file.read_bytes() if file.is_file() else None


Source = LiveTiles | DeepZoomFiles | DeepZoomZip | IIIFFolder


def open_source(path: Path) -> Source:
    """What ``urst view`` shows for ``path``: a pyramid as stored, or tiles cut from an image. Raises UrstError."""
    if not path.exists():
        raise UrstError(f"{path}: no such file or folder", EXIT_INPUT)
    try:
        if path.is_dir() or path.name == "info.json":
            if not (path / "info.json" if path.is_dir() else path).is_file():
                raise UrstError(f"{path}: a folder without info.json is not an IIIF image", EXIT_INPUT)
            return IIIFFolder(path)
        if path.suffix.lower() == ".dzi":
            return DeepZoomFiles(path)
        if path.suffix.lower() == ".szi":
            return DeepZoomZip(path)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise UrstError(f"{path}: not a readable tile pyramid ({exc})", EXIT_INPUT) from None
    return LiveTiles(path)


@dataclass(frozen=True)
class Served:
    """One image on the page: its label and what serves it."""

    label: str
    source: Source


def route(path: str, images: list[Served], base_url: str) -> tuple[str, bytes] | None:
    """The content type and body for a request path (query already removed), or None: 404."""
    if path in PAGES:
        name, content_type = PAGES[path]
        return content_type, (STATIC / name).read_bytes()
    if path == "/images.json":
        listing = [{"label": image.label,
                    "tileSource": f"/image/{i}.dzi" if image.source.layout == "dzi" else f"/image/{i}/info.json"}
                   for i, image in enumerate(images)]
        return "application/json", json.dumps(listing).encode()
    for pattern, layout in ((_DZ_DESCRIPTOR, "dzi"), (_DZ_TILE, "dzi"), (_IIIF_INFO, "iiif"), (_IIIF_TILE, "iiif")):
        match = pattern.fullmatch(path)
        if not match:
            continue
        index = int(match[1])
        if index >= len(images) or images[index].source.layout != layout:
            return None
        source = images[index].source
        if pattern is _DZ_DESCRIPTOR or pattern is _IIIF_INFO:
            return source.descriptor_body(f"{base_url}/image/{index}")
        if pattern is _DZ_TILE:
            body = source.tile(int(match[2]), int(match[3]), int(match[4]), match[5])
            return (CONTENT_TYPES[match[5]], body) if body is not None else None
        body = source.file(match[2], match[3], f"default.{match[4]}")
        return (CONTENT_TYPES[match[4]], body) if body is not None else None
    return None


class _Handler(BaseHTTPRequestHandler):
    server: "ViewServer"
    server_version = "urst-view"
    protocol_version = "HTTP/1.1"  # keep-alive: a page load is hundreds of small tile requests

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def _answer(self, send_body: bool) -> None:
        found = None
        # a request naming another host is another site's page rebound to 127.0.0.1 (DNS rebinding)
        if self.headers.get("Host", self.server.host) in self.server.hosts:
            try:
                found = route(self.path.split("?", 1)[0], self.server.images, self.server.url.rstrip("/"))
            except (pyvips.Error, OSError, zipfile.BadZipFile):
                self._send(HTTPStatus.INTERNAL_SERVER_ERROR, "text/plain", b"cannot read this tile\n", send_body)
                return
        if found is None:
            self._send(HTTPStatus.NOT_FOUND, "text/plain", b"not found\n", send_body)
        else:
            self._send(HTTPStatus.OK, *found, send_body)

    def _send(self, status: HTTPStatus, content_type: str, body: bytes, send_body: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        pass  # a page load is hundreds of tile requests: nothing to print for each


class ViewServer(ThreadingHTTPServer):
    """The page and the images' tiles on 127.0.0.1 (``port`` 0: a free one)."""

    daemon_threads = True

    def __init__(self, images: list[Served], port: int = 0):
        try:
            super().__init__(("127.0.0.1", port), _Handler)
        except OSError as exc:
            raise UrstError(f"--port {port}: cannot listen on 127.0.0.1:{port} ({exc.strerror or exc})",
                            EXIT_USAGE) from None
        self.images = images
        self.host = f"127.0.0.1:{self.server_address[1]}"
        self.hosts = {self.host, f"localhost:{self.server_address[1]}"}
        self.url = f"http://{self.host}/"

    def handle_error(self, request, client_address) -> None:
        # browsers drop keep-alive connections and abandon tile requests when the view moves: not an error
        error = sys.exc_info()[1]
        if not isinstance(error, ConnectionError):
            print(f"urst view: request from {client_address[0]} failed: {error!r}", file=sys.stderr)
