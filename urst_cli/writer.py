"""Writing the stylized rows, top to bottom while they are computed, to a temporary file renamed when complete.

Two savers run in a writer thread fed row blocks without copies (one block ahead at most), so the
image never exists whole:

- The default output, a flat tiled BigTIFF (deflate or uncompressed), is written with
  tifffile from tiles urst encodes itself: horizontal predictor, then deflate by ISA-L
  (``isal``) at level 1. On stylized images (noisy at the pixel level, where long LZ77
  searches seldom pay) that is ~7x less CPU than libtiff's level-6 deflate behind libvips and
  ~10% smaller, and still plain Adobe deflate that every TIFF reader decodes.
- Everything else (pyramids, JPEG/LZW tiles, PNG, JPEG, WebP, and the DeepZoom/IIIF tile
  pyramids of deepzoom.py) goes through libvips: the rows are framed as an uncompressed PNG
  stream that libvips reads through a custom source.

Nothing appears at the output path until the file is complete and its header re-read; a
failed or interrupted run leaves no file behind.
"""

from __future__ import annotations

import functools
import os
import queue
import shutil
import struct
import threading
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from glob import escape as glob_escape
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import pyvips
import tifffile
from isal import isal_zlib

from . import __version__, deepzoom

from .errors import EXIT_OUTPUT, EXIT_USAGE, UrstError
from .timing import Stopwatch

__all__ = ["OutputSpec", "FORMATS", "COMPRESSIONS", "check_output", "write_rows", "Transform",
           "remove_orphans", "own_tiff", "tile_side", "encode_tiles", "write_tiles"]

FORMATS = {".tif": "tiff", ".tiff": "tiff", ".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp",
           ".dzi": "dzi", ".szi": "szi", ".iiif": "iiif"}  # .iiif: a folder
COMPRESSIONS = ("deflate", "jpeg", "zstd", "lzw", "none")
ENCODERS = max(1, (os.cpu_count() or 2) // 2)  # threads encoding TIFF tiles: half the cores
FORMAT_LIMITS = {"jpeg": 65535, "webp": 16383, "png": 2**31 - 1, "tiff": 2**32 - 1,
                 **{kind: 2**31 - 1 for kind in deepzoom.KINDS}}


@dataclass(frozen=True)
class OutputSpec:
    path: Path
    compression: str = "deflate"   # TIFF only
    quality: int = 90              # JPEG/WebP, and JPEG-compressed TIFF
    tile_size: int = 256           # TIFF tile side: half the writer's row buffer of 512, and encodes faster
    pyramid: bool = False          # TIFF: add reduced-resolution levels
    explicit_format: str | None = None  # "iiif" for a folder named without .iiif; None: from the extension

    @property
    def format(self) -> str:
        return self.explicit_format or FORMATS[self.path.suffix.lower()]


def check_output(spec: OutputSpec, input_path: Path, width: int, height: int, overwrite: bool) -> None:
    """Refuse, before any work, outputs that cannot or must not be written."""
    out = spec.path
    if not spec.explicit_format and out.suffix.lower() not in FORMATS:
        raise UrstError(f"{out}: unsupported output format '{out.suffix}'; use one of {', '.join(FORMATS)}",
                        EXIT_OUTPUT)
    if out.exists() and out.resolve() == input_path.resolve() or out.exists() and os.path.samefile(out, input_path):
        raise UrstError(f"{out}: output is the input file; choose another -o", EXIT_OUTPUT)
    pyramid_kind = spec.format in deepzoom.KINDS
    for path in deepzoom.occupied(out, spec.format) if pyramid_kind else [out]:
        if path.exists() and not overwrite:
            raise UrstError(f"{path}: already exists (use --overwrite to replace it)", EXIT_OUTPUT)
        if path.is_dir() and not (pyramid_kind and deepzoom.replaceable(path, spec.format)):
            raise UrstError(f"{path}: is a directory" + (" that urst did not write" if pyramid_kind else ""),
                            EXIT_OUTPUT)
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise UrstError(f"{parent}: output directory does not exist", EXIT_OUTPUT)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UrstError(f"{parent}: output directory is not writable", EXIT_OUTPUT)
    if spec.format == "tiff" and not tiff_compression_available(spec.compression):
        raise UrstError(f"--compression {spec.compression}: this libvips build's libtiff cannot write it; "
                        f"use one of {', '.join(c for c in COMPRESSIONS if tiff_compression_available(c))}",
                        EXIT_USAGE)
    limit = FORMAT_LIMITS[spec.format]
    if max(width, height) > limit:
        raise UrstError(f"{out}: {spec.format.upper()} cannot hold {width}x{height} (max side {limit}); "
                        "write .tif instead", EXIT_OUTPUT)


@functools.lru_cache(maxsize=None)
def tiff_compression_available(compression: str) -> bool:
    """Whether libtiff inside this libvips can write ``compression`` (pyvips-binary's has no ZSTD, say)."""
    try:
        pyvips.Image.black(16, 16, bands=3).tiffsave_buffer(compression=compression, tile=True)
    except pyvips.Error:
        return False
    return True


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(tag)))


def png_stream(blocks: Iterable[np.ndarray], width: int, height: int, bands: int) -> Iterator[bytes]:
    """An 8-bit PNG of the given row blocks, deflate level 0 (stored): framing only, no compression work."""
    colour_type = {3: 2, 4: 6}[bands]
    yield b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0))
    deflate = zlib.compressobj(0)
    for block in blocks:
        for top in range(0, block.shape[0], 64):  # small pieces: the copies below stay a few MB
            rows = block[top: top + 64]
            raw = np.empty((rows.shape[0], width * bands + 1), np.uint8)
            raw[:, 0] = 0  # filter type "none" for every row
            raw[:, 1:] = rows.reshape(rows.shape[0], -1)
            data = deflate.compress(raw.data)
            if data:
                yield _chunk(b"IDAT", data)
    yield _chunk(b"IDAT", deflate.flush()) + _chunk(b"IEND", b"")


class _Pipe:
    """Row blocks from the producer to the saver thread, without copies: having handed over a block, the
    producer waits until the saver is done with the one before it, so it makes the next block while the
    saver works on this one, and a block may be a view of a buffer that the block after next reuses."""

    def __init__(self):
        self.blocks: queue.Queue = queue.Queue()
        self.done = threading.Semaphore(1)  # released each time the saver is done with a block


class _Abort:
    """Queue marker: the producer failed; end the stream early so the saver fails too."""


class _PngReader:
    """Serves libvips' reads from row blocks, as PNG bytes."""

    def __init__(self, blocks: Iterator[np.ndarray], width: int, height: int, bands: int):
        self._stream = png_stream(blocks, width, height, bands)
        self._pending = memoryview(b"")

    def read(self, size: int) -> bytes:
        while not self._pending:
            try:
                self._pending = memoryview(next(self._stream))
            except (StopIteration, _AbortedStream):
                return b""
        out, self._pending = self._pending[:size], self._pending[size:]
        return bytes(out)


def _pull(pipe: _Pipe) -> Iterator[np.ndarray]:
    """The pipe's row blocks until the end marker; _AbortedStream if the producer failed. A block is done
    with when the next one is asked for."""
    while True:
        item = pipe.blocks.get()
        if isinstance(item, _Abort):
            raise _AbortedStream
        if item is None:
            return
        yield item
        pipe.done.release()


class _AbortedStream(Exception):
    pass


def own_tiff(spec: OutputSpec) -> bool:
    """Whether urst encodes the tiles itself (see the module docstring); libvips does the rest."""
    return spec.format == "tiff" and not spec.pyramid and spec.compression in ("deflate", "none")


def tile_side(spec: OutputSpec, width: int, height: int) -> int:
    """The TIFF tile side: readers refuse tiles much larger than the image, so at most its size (16-px steps)."""
    return min(spec.tile_size, max(16, -(-max(width, height) // 16) * 16))


def tiff_tiles(blocks: Iterable[np.ndarray], width: int, height: int, bands: int, tile: int,
               deflate: bool) -> Iterator[bytes]:
    """The image's tiles in TIFF order (left to right, top to bottom), encoded, from row blocks as in write_rows.

    One row of tiles is gathered at a time (tile rows x width), edge tiles zero-padded as TIFF
    requires. Where there are cores to spare (a GPU machine), a row's tiles are encoded in
    parallel: ISA-L lets go of the GIL. On 2 cores the model needs both, so one thread encodes.
    """
    columns = -(-width // tile)
    tile_row = np.zeros((tile, columns * tile, bands), np.uint8)
    workers = ThreadPoolExecutor(ENCODERS, thread_name_prefix="urst-encode") if ENCODERS > 1 else None
    encode = functools.partial(_encode_tile, deflate=deflate)

    def encoded_row() -> Iterator[bytes]:
        pieces = (tile_row[:, c * tile: (c + 1) * tile] for c in range(columns))
        return workers.map(encode, pieces) if workers else map(encode, pieces)

    try:
        filled = 0
        for block in blocks:
            used = 0
            while used < block.shape[0]:
                n = min(tile - filled, block.shape[0] - used)
                tile_row[filled: filled + n, :width] = block[used: used + n]
                filled, used = filled + n, used + n
                if filled == tile:
                    yield from encoded_row()
                    filled = 0
        if filled:
            tile_row[filled:] = 0
            yield from encoded_row()
    finally:
        if workers:
            workers.shutdown(cancel_futures=True)


def _encode_tile(pixels: np.ndarray, deflate: bool) -> bytes:
    """One tile [tile, tile, bands] as TIFF stores it: raw, or horizontal predictor + deflate."""
    if not deflate:
        return pixels.tobytes()
    residual = np.empty_like(pixels)  # each sample minus its left neighbour, modulo 256 (TIFF predictor 2)
    residual[:, 0] = pixels[:, 0]
    np.subtract(pixels[:, 1:], pixels[:, :-1], out=residual[:, 1:])
    # ISA-L level 1: as small as zlib's fastest settings on these residuals, ~4x faster (0.75 of raw at ~600 MB/s)
    return isal_zlib.compress(residual, 1)


def _save_tiles(blocks: Iterator[np.ndarray], path: str, width: int, height: int, bands: int,
                spec: OutputSpec) -> None:
    tile = tile_side(spec, width, height)
    _save_encoded(tiff_tiles(blocks, width, height, bands, tile, spec.compression == "deflate"), path, width,
                  height, bands, spec)


def _save_encoded(tiles: Iterable[bytes], path: str, width: int, height: int, bands: int, spec: OutputSpec) -> None:
    """A tiled BigTIFF from its tiles, encoded as ``tiff_tiles`` encodes them, in TIFF order."""
    tile = tile_side(spec, width, height)
    deflate = spec.compression == "deflate"
    with tifffile.TiffWriter(path, bigtiff=True) as tiff:
        tiff.write(tiles, shape=(height, width, bands), dtype=np.uint8, tile=(tile, tile), photometric="rgb",
                   compression="adobe_deflate" if deflate else None, predictor=deflate,
                   extrasamples=("unassalpha",) if bands == 4 else None, metadata=None,
                   software=f"urst {__version__}")


def encode_tiles(blocks: Iterable[np.ndarray], width: int, height: int, bands: int, spec: OutputSpec,
                 rows: int) -> list[bytes]:
    """The encoded tiles of ``rows`` rows of a ``width`` x ``height`` image (row blocks, starting on a tile row):
    the same bytes that writing the whole image puts in the file for them (``write_tiles`` takes them)."""
    return list(tiff_tiles(blocks, width, rows, bands, tile_side(spec, width, height), spec.compression == "deflate"))


def write_tiles(tiles: Iterable[bytes], width: int, height: int, bands: int, spec: OutputSpec) -> None:
    """Write a tiled BigTIFF from encoded tiles in TIFF order (``encode_tiles``, band after band) to ``spec.path``,
    through a temporary file renamed when complete (removed on any failure)."""
    if not own_tiff(spec):
        raise ValueError(f"{spec.path}: tiles are written only to a flat deflate or uncompressed TIFF")
    remove_orphans(spec.path)
    tmp = spec.path.with_name(f".{spec.path.name}.{os.getpid()}.partial")
    try:
        _save_encoded(tiles, str(tmp), width, height, bands, spec)
        _publish(tmp, spec, width, height)
    except BaseException as exc:
        _discard(tmp)
        raise _output_error(exc, spec) from None


def _save(image: pyvips.Image, path: str, spec: OutputSpec) -> None:
    fmt = spec.format
    if fmt == "tiff":
        tile = tile_side(spec, image.width, image.height)
        image.tiffsave(path, tile=True, tile_width=tile, tile_height=tile, bigtiff=True,
                       compression=spec.compression, Q=spec.quality, pyramid=spec.pyramid,
                       predictor="horizontal" if spec.compression in ("deflate", "lzw", "zstd") else "none")
    elif fmt == "png":
        image.pngsave(path, compression=6)
    elif fmt == "jpeg":
        image.jpegsave(path, Q=spec.quality)
    elif fmt == "webp":
        image.webpsave(path, Q=spec.quality)
    else:
        deepzoom.save(image, Path(path), spec.path.name, fmt, spec.quality)


def _verify(path: Path, width: int, height: int) -> None:
    try:
        check = pyvips.Image.new_from_file(str(path))
    except pyvips.Error as exc:
        raise UrstError(f"the written file does not read back: {exc}", EXIT_OUTPUT) from None
    if (check.width, check.height) != (width, height):
        raise UrstError(f"the written file is {check.width}x{check.height}, expected {width}x{height}", EXIT_OUTPUT)


def _publish(tmp: Path, spec: OutputSpec, width: int, height: int) -> None:
    """Check what the saver wrote and move it to the output path."""
    if spec.format not in deepzoom.KINDS:
        _verify(tmp, width, height)
        os.replace(tmp, spec.path)
        return
    try:
        deepzoom.publish(tmp, spec.path, spec.format, width, height)
    except (ValueError, zipfile.BadZipFile) as exc:
        raise UrstError(f"the written pyramid does not read back: {exc}", EXIT_OUTPUT) from None
    _discard(tmp)


def _discard(path: Path) -> None:
    """Remove a partial output: a file, or the staging folder of a tile pyramid."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


Transform = Callable[[Iterator[np.ndarray], int, int], Iterator[np.ndarray]]
"""(row blocks, width, height) -> row blocks of the same size and bands: what the rows go through on their way to
the file (the multi-scale composition). It may hold blocks back (look ahead), so it copies what it keeps."""


def write_rows(blocks: Iterable[np.ndarray], width: int, height: int, bands: int, spec: OutputSpec,
               clock: Stopwatch = Stopwatch(), transform: Transform | None = None) -> None:
    """Write row blocks (uint8 [n, width, bands], top to bottom, ``height`` rows in all) to ``spec.path``.

    The caller's loop (the engine) runs in this thread; encoding and writing run in a saver
    thread (and libvips' own). Blocks are not copied: a block may be a view of a buffer the caller
    reuses, as the saver is done with it before the block after the next one is requested (the
    caller runs one block ahead of the saver). ``clock`` is charged ("write") only for the time this
    thread waits on the writer. ``transform``: what the rows pass through, in the saver thread, before
    being saved. On any failure,
    KeyboardInterrupt included, the temporary file (or folder, for tile pyramids) is removed.
    """
    remove_orphans(spec.path)
    tmp = spec.path.with_name(f".{spec.path.name}.{os.getpid()}.partial")  # a folder for tile pyramids
    pipe = _Pipe()
    failure: list[BaseException] = []

    def saver() -> None:
        try:
            rows = _pull(pipe) if transform is None else transform(_pull(pipe), width, height)
            if own_tiff(spec):
                _save_tiles(rows, str(tmp), width, height, bands, spec)
                return
            source = pyvips.SourceCustom()
            source.on_read(_PngReader(rows, width, height, bands).read)
            _save(pyvips.Image.new_from_source(source, "", access="sequential"), str(tmp), spec)
        except BaseException as exc:  # reported to the producer below
            failure.append(exc)
            _drain(pipe)

    thread = threading.Thread(target=saver, name="urst-writer", daemon=True)
    thread.start()
    try:
        for block in blocks:
            with clock("write"):
                _hand_over(pipe, block, thread, failure)
        with clock("write"):
            pipe.blocks.put(None)
            thread.join()
            if failure:
                raise failure[0]
            _publish(tmp, spec, width, height)
    except BaseException as exc:
        _drain(pipe)
        pipe.blocks.put(_Abort())
        thread.join(timeout=60)
        _discard(tmp)
        raise _output_error(exc, spec) from None


def _output_error(exc: BaseException, spec: OutputSpec) -> BaseException:
    """What a failed write raises: pyvips' and the OS's errors as one line (EXIT_OUTPUT), anything else as it is."""
    if isinstance(exc, pyvips.Error):
        return UrstError(f"cannot write {spec.path}: {_reason(exc)}", EXIT_OUTPUT)
    if isinstance(exc, OSError):
        return UrstError(f"cannot write {spec.path}: {exc.strerror or exc}", EXIT_OUTPUT)
    return exc


def remove_orphans(path: Path, suffix: str = ".partial") -> None:
    """Delete what runs that were killed outright (kill -9, power loss) left beside this output: hidden
    ``.NAME.PID<suffix>`` files or folders of processes that no longer exist."""
    for orphan in path.parent.glob(f".{glob_escape(path.name)}.*{glob_escape(suffix)}"):
        pid = orphan.name[len(path.name) + 2: -len(suffix)]
        if pid.isdigit() and not _alive(int(pid)):
            _discard(orphan)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _hand_over(pipe: _Pipe, block: np.ndarray, thread: threading.Thread, failure: list) -> None:
    """Pass ``block`` to the saver, then wait until it is done with the block before; give up as soon as the
    saver has died (disk full, say)."""
    pipe.blocks.put(block)
    while not pipe.done.acquire(timeout=0.2):
        if failure:
            raise failure[0]
        if not thread.is_alive():
            raise UrstError("the writer stopped unexpectedly", EXIT_OUTPUT)
    if failure:
        raise failure[0]


def _drain(pipe: _Pipe) -> None:
    try:
        while True:
            pipe.blocks.get_nowait()
    except queue.Empty:
        pass


def _reason(exc: pyvips.Error) -> str:
    text = f"{exc.message} {exc.detail}".lower()
    if "no space" in text or "enospc" in text:
        return "no space left on device"
    if "file too large" in text or "efbig" in text:
        return "file too large for this file system or limit"
    lines = [line for line in (exc.detail or exc.message).strip().splitlines() if line.strip()]
    return lines[-1] if lines else exc.message
