"""Many images in one run: inputs expanded, outputs named, the set-up made once, one image after another.

    expand_inputs(args, recursive, files_from) -> [Source]   files, folders (-r), --files-from, stdin
    name_outputs(sources, Naming)             -> [Item]     one output per input, never two on one name
    run_batch(job, items, BatchOptions, emit) -> Summary    ``job.run`` per image, events out (events.py)

The model, the device and the style conditioning are made once (``job.prepare``), when the first
image needs them: a batch whose outputs all exist loads nothing. One failed image is reported and
the rest go on (unless ``fail_fast``).
"""

from __future__ import annotations

import os
import resource
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO, Iterable

from .errors import EXIT_INPUT, EXIT_OUTPUT, EXIT_SOME_FAILED, EXIT_USAGE, UrstError
from .events import (Emit, FileDone, FileError, FileProgress, FileSkipped, FileStart, Start, Summary, error_kind)
from .heap import resident_bytes, trim_heap
from .job import Job, Prepared, Progress, coarsest_level, prepare, run
from .multiscale import (COARSE_SAMPLE_SIZE, LEVELS_SUFFIX, LevelFiles, build_photo_pyramid, halve,
                         plan_levels)
from .reader import ImageInfo, open_rgb, probe

__all__ = ["Source", "Item", "Naming", "BatchOptions", "STDOUT", "TEMPLATE_FIELDS", "FORMAT_SUFFIXES",
           "IMAGE_SUFFIXES", "expand_inputs", "numbered", "style_tag", "name_outputs", "run_batch", "preview_copy"]

# files a folder is searched for (named files are always tried, whatever their name)
IMAGE_SUFFIXES = frozenset(".jpg .jpeg .jpe .png .tif .tiff .webp .heic .heif .avif .jp2 .j2k .jxl .gif .pnm .ppm "
                           ".pgm .pbm .pfm .hdr .exr .fits .v".split())
SYSTEM_FILES = frozenset({"thumbs.db", "ehthumbs.db", "desktop.ini"})  # hidden files (.DS_Store, ._x) go too
FORMAT_SUFFIXES = {"tif": ".tif", "png": ".png", "jpg": ".jpg", "webp": ".webp", "dzi": ".dzi",
                   "szi": ".szi"}  # --format
_SAME_FORMAT = {".tiff": ".tif", ".jpeg": ".jpg"}
STDOUT = Path("-")
TEMPLATE_FIELDS = {
    "dir": "the input's folder, as named (e.g. scans/2024)",
    "rel": "the input's folder relative to the folder argument it was found in; for files named directly, "
           "relative to their common folder ('.' when there is none below it)",
    "stem": "the input's file name without its extension",
    "name": "the input's file name",
    "suffix": "the input's extension without the dot (e.g. jpg)",
    "style": "the style: painting stems and presetN joined by '+', or the --weights name",
    "model": "the model's name",
    "ext": "the output's extension: --format, else tif",
}
DEFAULT_NAME = "{stem}_{style}.{ext}"


@dataclass(frozen=True)
class Source:
    path: Path   # the file read (stdin: a temporary copy)
    label: str   # the input as the user named it ("-" for stdin): messages and --failed-list
    rel: Path    # its folder relative to the tree it came from (an output folder mirrors it)


@dataclass(frozen=True)
class Item:
    source: Source
    output: Path                # STDOUT: standard output
    make_parents: bool = False  # output folders and templates create the folders they name
    stdout_suffix: str = ""     # to stdout: the format's extension, of the temporary file written first
    skip: str | None = None     # why this input is left alone (it is the output of another input)


def _skipped_name(name: str) -> bool:
    return name.startswith(".") or name.lower() in SYSTEM_FILES


def _folder_images(folder: Path, recursive: bool) -> list[Path]:
    found = []
    for top, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not _skipped_name(d)) if recursive else []
        found += [Path(top) / f for f in sorted(files)
                  if not _skipped_name(f) and Path(f).suffix.lower() in IMAGE_SUFFIXES]
    return found


def _spool(stream: BinaryIO, dest: Path) -> Path:
    """Standard input copied to a file: TIFF (and libvips' loaders in general) need to seek."""
    with open(dest, "wb") as out:
        shutil.copyfileobj(stream, out, 1 << 20)
    return dest


def _list_lines(files_from: str, stdin: BinaryIO) -> list[str]:
    try:
        data = stdin.read() if files_from == "-" else Path(files_from).read_bytes()
    except OSError as exc:
        raise UrstError(f"--files-from {files_from}: {exc.strerror or exc}", EXIT_INPUT) from None
    return [line for line in os.fsdecode(data).splitlines() if line.strip()]


def expand_inputs(args: Iterable[str], recursive: bool = False, files_from: str | None = None,
                  workdir: Path | None = None, stdin: BinaryIO | None = None) -> list[Source]:
    """The inputs, in order: files as named (tried whatever their name), folders' images (sorted; sub-folders
    with ``recursive``; hidden and system files skipped), the lines of ``files_from`` ("-": stdin) taken the
    same way. "-" reads an image from stdin into ``workdir``. A file named twice is taken once."""
    stdin = stdin or sys.stdin.buffer
    names = list(args) + (_list_lines(files_from, stdin) if files_from else [])
    if names.count("-") > 1 or "-" in names and files_from == "-":
        raise UrstError("stdin (-) can be read only once: as one image or as --files-from -", EXIT_USAGE)
    sources, named, seen = [], [], set()
    for name in names:
        if name == "-":
            if workdir is None:
                raise UrstError("reading an image from stdin needs a work folder", EXIT_USAGE)
            sources.append(Source(_spool(stdin, workdir / "stdin"), "-", Path(".")))
            continue
        path = Path(name)
        if path.is_dir():
            found = _folder_images(path, recursive)
            if not found:
                hint = "" if recursive else " (-r to look in its sub-folders)"
                raise UrstError(f"{path}: no images in this folder{hint}", EXIT_INPUT)
            sources += [Source(p, str(p), p.parent.relative_to(path)) for p in found]
        else:
            sources.append(Source(path, name, Path(".")))
            named.append(len(sources) - 1)
    if named:  # files named directly: their folders relative to the folder they all lie in
        parents = [sources[i].path.absolute().parent for i in named]
        common = Path(os.path.commonpath(parents))
        for i, parent in zip(named, parents):
            sources[i] = replace(sources[i], rel=parent.relative_to(common))
    unique = []
    for source in sources:
        key = os.path.normpath(source.path.absolute())
        if key not in seen:
            seen.add(key)
            unique.append(source)
    if not unique:
        raise UrstError("no input images given", EXIT_USAGE)
    return unique


def style_tag(styles: list[Path], presets: list[int], weights: str | None = None) -> str:
    """How outputs name their style: painting stems and presetN joined by '+', else the weights' name."""
    return "+".join([p.stem for p in styles] + [f"preset{p}" for p in presets]) or weights or "stylized"


@dataclass(frozen=True)
class Naming:
    output: str | None = None   # -o: None (beside each input), "-" (stdout), a file, a folder (DIR/), or a template
    format: str | None = None   # tif png jpg webp dzi szi (default: the -o file's extension, else tif)
    style: str = "stylized"
    model: str = "magenta"
    numbered: bool = True       # default names get -2, -3, ... rather than replace a file (off with
                                # --overwrite and --skip-existing, which need the one name)
    preview: bool = False       # outputs named <stem>_preview.<ext>


def _fields(source: Source, naming: Naming, ext: str, stem: str | None = None) -> dict:
    path = source.path if source.label != "-" else Path("stdin")
    return {"dir": str(path.parent), "rel": str(source.rel), "stem": stem or path.stem, "name": path.name,
            "suffix": path.suffix[1:], "style": naming.style, "model": naming.model, "ext": ext}


def _render(pattern: str, fields: dict) -> Path:
    try:
        return Path(os.path.normpath(pattern.format_map(fields)))
    except KeyError as exc:
        raise UrstError(f"-o {pattern}: unknown field {{{exc.args[0]}}}; use {', '.join(TEMPLATE_FIELDS)}",
                        EXIT_USAGE) from None
    except (ValueError, IndexError) as exc:
        raise UrstError(f"-o {pattern}: not a template ({exc})", EXIT_USAGE) from None


def _previewed(path: Path) -> Path:
    suffix = ".png" if path.suffix.lower() in (".dzi", ".szi") else path.suffix
    return path.with_name(f"{path.stem}_preview{suffix}")


def numbered(path: Path) -> Path:
    """``path``, or the first of path-2, path-3, ... (before the extension) that does not exist."""
    candidate, n = path, 2
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
        n += 1
    return candidate


def name_outputs(sources: list[Source], naming: Naming) -> list[Item]:
    """Each input's output; an input that is another input's output is marked to be skipped.

    -o absent: ``{dir}/{stem}_{style}.{ext}`` beside each input; -o DIR/ (or an existing folder):
    ``DIR/{rel}/{stem}_{style}.{ext}``, mirroring the inputs' tree; a template names its fields (see
    TEMPLATE_FIELDS); -o FILE and -o - (stdout) take one input. Where two inputs of one folder differ only
    in extension (a.jpg, a.png), the default names keep it (a-jpg_..., a-png_...); any other two inputs
    meeting on one name stop the run before any work.
    """
    out, ext = naming.output, (naming.format or "tif")
    if naming.format is not None and naming.format not in FORMAT_SUFFIXES:
        raise UrstError(f"--format {naming.format}: use one of {', '.join(FORMAT_SUFFIXES)}", EXIT_USAGE)
    if out == "-" or out is not None and "{" not in out and not out.endswith(("/", os.sep)) and not Path(out).is_dir():
        if len(sources) > 1:
            raise UrstError(f"-o {out} names one file, but there are {len(sources)} inputs: give a folder "
                            "(-o DIR/) or a template (-o '{dir}/{stem}_{style}.{ext}')", EXIT_USAGE)
        if out == "-":
            if naming.format in (None, "dzi"):
                raise UrstError("-o - (stdout) needs --format tif, png, jpg or webp", EXIT_USAGE)
            return [Item(sources[0], STDOUT, stdout_suffix=FORMAT_SUFFIXES[naming.format])]
        path = Path(out)
        if naming.format is not None and _SAME_FORMAT.get(path.suffix.lower(), path.suffix.lower()) != \
                FORMAT_SUFFIXES[naming.format]:
            raise UrstError(f"-o {out} and --format {naming.format} disagree: give one of them", EXIT_USAGE)
        return [Item(sources[0], _previewed(path) if naming.preview else path)]
    if out is None:
        pattern, made = os.path.join("{dir}", DEFAULT_NAME), False
        stdin = [s for s in sources if s.label == "-"]
        if stdin:
            raise UrstError("an image read from stdin (-) needs -o FILE, -o DIR/ or -o - with --format", EXIT_USAGE)
    elif "{" in out:
        pattern, made = out, True
    else:
        pattern, made = os.path.join(out, "{rel}", DEFAULT_NAME), True
    paths = [_render(pattern, _fields(s, naming, ext)) for s in sources]
    if "{" not in (out or ""):  # default names: inputs that differ only in extension keep it
        clash = _clashes(paths)
        paths = [_render(pattern, _fields(s, naming, ext, f"{s.path.stem}-{s.path.suffix[1:]}")) if i in clash else p
                 for i, (s, p) in enumerate(zip(sources, paths))]
    clash = _clashes(paths)
    if clash:
        first, second = sorted(clash, key=lambda i: (os.path.normpath(paths[i].absolute()), i))[:2]
        raise UrstError(f"{sources[first].label} and {sources[second].label} would both be written to {paths[first]}; "
                        "use a template with {name} or {rel} in -o", EXIT_USAGE)
    if naming.preview:
        paths = [_previewed(p) for p in paths]
    outputs = {os.path.normpath(p.absolute()): i for i, p in enumerate(paths)}
    items = []
    for i, (source, path) in enumerate(zip(sources, paths)):
        other = outputs.get(os.path.normpath(source.path.absolute()))
        skip = f"it is the output of {sources[other].label} in this batch" if other not in (None, i) else None
        items.append(Item(source, numbered(path) if out is None and naming.numbered else path, made, skip=skip))
    return items


def _clashes(paths: list[Path]) -> set[int]:
    where: dict[str, list[int]] = {}
    for i, p in enumerate(paths):
        where.setdefault(os.path.normpath(p.absolute()), []).append(i)
    return {i for group in where.values() if len(group) > 1 for i in group}


@dataclass(frozen=True)
class BatchOptions:
    skip_existing: bool = False     # an existing output is a finished one (outputs appear only when complete)
    fail_fast: bool = False         # stop at the first failed input
    preview: bool = False           # paint only each input's coarsest level (job.coarsest_level)
    progress_interval: float = 0.25  # seconds between progress events of one file
    raise_unexpected: bool = False  # re-raise errors that are not UrstError (debugging) instead of reporting them
    workdir: Path | None = None     # temporaries: previews' inputs, results on their way to stdout
    stdout: BinaryIO | None = None  # where -o - goes (default sys.stdout.buffer)


class _FileProgress(Progress):
    """job.Progress callbacks turned into throttled progress events of one file."""

    def __init__(self, emit: Emit, index: int, pixels: int, interval: float):
        self.emit, self.index, self.pixels, self.interval = emit, index, pixels, interval
        self.stage_text, self.total, self.done, self.started, self.last = "", 0, 0, 0.0, 0.0

    def stage(self, text: str) -> None:
        self.stage_text = text
        self.emit(FileProgress(self.index, text, 0.0, None, None))

    def start_patches(self, total: int) -> None:
        self.total, self.done, self.started = total, 0, time.perf_counter()
        self.last = self.started

    def advance(self, patches: int) -> None:
        self.done += patches
        now = time.perf_counter()
        if now - self.last < self.interval and self.done < self.total:
            return
        self.last = now
        fraction = self.done / max(self.total, 1)
        elapsed = now - self.started
        rate = fraction * self.pixels / 1e6 / elapsed if elapsed > 0 else None
        eta = elapsed * (1 - fraction) / fraction if fraction > 0 else None
        self.emit(FileProgress(self.index, self.stage_text, round(fraction, 4), rate and round(rate, 3),
                               eta if eta is None else round(eta, 1)))


def preview_copy(path: Path, k: int, dest: Path) -> Path:
    """``path`` halved ``k`` times: the photo pyramid's level k, made as multi-scale stylization makes it
    (alpha halved alongside), written uncompressed in libvips' own format (any sample format)."""
    import pyvips

    files = LevelFiles(dest.with_name(dest.name + LEVELS_SUFFIX))
    try:
        rgb, alpha = open_rgb(path, "sequential")
        if k:
            build_photo_pyramid(path, plan_levels(rgb.width, rgb.height, str(2 ** k)), files)
            rgb = pyvips.Image.new_from_file(str(files.photo(k)), access="sequential")
        for _ in range(k if alpha is not None else 0):
            alpha = halve(alpha)
        (rgb.bandjoin(alpha) if alpha is not None else rgb).write_to_file(str(dest))
    except pyvips.Error as exc:
        raise UrstError(f"{path}: cannot reduce it for the preview ({str(exc).strip().splitlines()[0]})",
                        EXIT_INPUT) from None
    finally:
        files.remove()
    return dest


def _preview_level(template: Job, info: ImageInfo) -> int:
    """The octaves the preview reduces by: the job's coarsest level (a single-scale job's: as with "auto")."""
    return coarsest_level(info.width, info.height, "auto" if template.stroke_scale == "1" else template.stroke_scale)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _peak_gpu_mib() -> float | None:
    import torch

    if not (torch.cuda.is_available() and torch.cuda.is_initialized()):
        return None
    peak = torch.cuda.max_memory_allocated() / 2**20
    torch.cuda.reset_peak_memory_stats()
    return round(peak, 1)


def run_batch(template: Job, items: list[Item], options: BatchOptions, emit: Emit) -> Summary:
    """Stylize every item as ``template`` says (its input and output replaced), reporting through ``emit``.

    Exit code of the summary: 0 when every input was done or skipped; with one input (or ``fail_fast``)
    the failed input's own code; otherwise EXIT_SOME_FAILED. A set-up error (a bad option, a missing
    style or weights) ends the whole run: it is raised, after a summary that carries it.
    """
    started = time.perf_counter()
    infos: list[ImageInfo | UrstError | None] = []
    for item in items:
        try:
            infos.append(None if item.skip else probe(item.source.path, template.max_pixels))
        except UrstError as exc:
            infos.append(exc)
    scale = (lambda i: 4 ** _preview_level(template, i)) if options.preview else (lambda i: 1)
    emit(Start(len(items), sum(i.pixels // scale(i) for i in infos if isinstance(i, ImageInfo))))
    prepared: Prepared | None = None  # made when the first image needs it
    done = skipped = pixels = 0
    errors: list[UrstError] = []

    def summary(code: int, error: UrstError | None = None) -> Summary:
        seconds = time.perf_counter() - started
        result = Summary(len(items), done, skipped, len(errors), round(seconds, 3), pixels,
                         round(pixels / 1e6 / max(seconds, 1e-9), 3), code, error and str(error))
        emit(result)
        return result

    for index, (item, info) in enumerate(zip(items, infos)):
        label, shown = item.source.label, str(item.output)
        skip = item.skip or (options.skip_existing and item.output != STDOUT and item.output.exists() and
                             "output exists")
        if skip:
            emit(FileSkipped(index, label, shown, skip))
            skipped += 1
            continue
        if prepared is None and isinstance(info, ImageInfo):
            try:
                prepared = prepare(template)
            except UrstError as exc:
                summary(exc.exit_code, exc)
                raise
        try:
            if isinstance(info, UrstError):
                raise info
            result, size = _run_one(template, item, info, index, options, emit, prepared)
        except Exception as exc:  # this input failed: report it and go on with the others
            if not isinstance(exc, UrstError) and options.raise_unexpected:
                raise
            error = exc if isinstance(exc, UrstError) else UrstError(f"unexpected {type(exc).__name__}: {exc}")
            message = str(error) if label in str(error) else f"{label}: {error}"
            emit(FileError(index, label, shown, message, error.exit_code, error_kind(error.exit_code)))
            errors.append(error)
            if options.fail_fast:
                break
            continue
        done += 1
        pixels += result.width * result.height
        rss = resident_bytes()
        emit(FileDone(index, label, shown, result.width, result.height, size, round(result.seconds, 3),
                      round(result.megapixels_per_second, 3), result.stats_mode, round(_peak_rss_mib(), 1),
                      rss if rss is None else round(rss / 2**20, 1), _peak_gpu_mib(), list(result.levels)))
    if not errors:
        return summary(0)
    return summary(errors[0].exit_code if options.fail_fast or len(items) == 1 else EXIT_SOME_FAILED)


def _run_one(template: Job, item: Item, info: ImageInfo, index: int, options: BatchOptions, emit: Emit,
             prepared: Prepared):
    """One input through ``job.run``: the result and its size in bytes. A result bound for stdout is
    written to a temporary file first, so only a complete one reaches it."""
    source = item.source.path
    output = item.output
    if output == STDOUT:
        output = options.workdir / f"stdout{item.stdout_suffix}"
    elif item.make_parents:
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UrstError(f"{output.parent}: cannot make the output folder ({exc.strerror or exc})",
                            EXIT_OUTPUT) from None
    job = replace(template, input=source, output=replace(template.output, path=output))
    if options.preview:  # the coarsest level, painted as multi-scale paints it: from the photo alone, and with
        k = _preview_level(template, info)  # the statistics of a level below others
        source = preview_copy(source, k, options.workdir / f"preview-{index}.v")
        info = probe(source, template.max_pixels)
        sample = replace(job.sample, size=COARSE_SAMPLE_SIZE) if k else job.sample
        job = replace(job, input=source, stroke_scale="1", sample=sample)
    emit(FileStart(index, item.source.label, str(item.output), info.width, info.height))
    try:
        result = run(job, _FileProgress(emit, index, info.pixels, options.progress_interval), prepared=prepared)
    finally:
        if options.preview:
            source.unlink(missing_ok=True)
        trim_heap()  # what the image's buffers freed goes back now, not after the next image
    size = output.stat().st_size
    if item.output == STDOUT:
        try:
            _copy_out(output, options.stdout or sys.stdout.buffer)
        finally:
            output.unlink()
    return result, size


def _copy_out(path: Path, stream: BinaryIO) -> None:
    """A finished result to stdout: nothing reaches it unless the file was complete."""
    with open(path, "rb") as f:
        shutil.copyfileobj(f, stream, 1 << 20)
    stream.flush()
