"""What a batch reports, as values: one small vocabulary that the rich progress bars and ``--json`` both render.

Every event becomes one JSON object with ``"event"`` (its name) and ``"schema": 1``; fields are only
ever added, never renamed or removed, so a script written against schema 1 keeps working.

    start          files, pixels: the whole batch, before any work
    file_start     one input begins: index (0-based), input, output, width, height
    progress       throttled: index, stage, fraction (0-1 of the stylizing pass), mp_per_s (of the pass),
                   eta_s and file_fraction (0-1 of the file: all its passes, multi-scale levels included)
    file_done      index, input, output, width, height, bytes (of the output), seconds, mp_per_s,
                   stats_mode, levels (multi-scale: one dict per level), peak_rss_mib, rss_mib, peak_gpu_mib
    file_skipped   index, input, output, reason
    file_error     index, input, output, message, exit_code, kind (usage, input, output, failure)
    summary        files, done, skipped, failed, seconds, pixels (stylized), mp_per_s, exit_code, error (why
                   the whole run stopped before its end: a bad option, style or weights; else null)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, ClassVar, Union

from .errors import EXIT_INPUT, EXIT_OUTPUT, EXIT_USAGE

__all__ = ["SCHEMA", "Start", "FileStart", "FileProgress", "FileDone", "FileSkipped", "FileError", "Summary", "Event",
           "Emit", "as_json", "error_kind"]

SCHEMA = 1


@dataclass(frozen=True)
class Start:
    name: ClassVar[str] = "start"
    files: int
    pixels: int  # of the inputs whose header could be read


@dataclass(frozen=True)
class FileStart:
    name: ClassVar[str] = "file_start"
    index: int
    input: str
    output: str
    width: int
    height: int


@dataclass(frozen=True)
class FileProgress:
    name: ClassVar[str] = "progress"
    index: int
    stage: str
    fraction: float           # of the stylizing pass (0 during the statistics)
    mp_per_s: float | None    # the pass's pixels per second
    eta_s: float | None       # until the file's last pass ends, at this rate
    file_fraction: float = 0.0  # of the file's stylizing passes, weighted by their pixels


@dataclass(frozen=True)
class FileDone:
    name: ClassVar[str] = "file_done"
    index: int
    input: str
    output: str
    width: int
    height: int
    bytes: int
    seconds: float
    mp_per_s: float
    stats_mode: str
    peak_rss_mib: float        # of the process so far
    rss_mib: float | None      # now, after the file (Linux)
    peak_gpu_mib: float | None = None
    levels: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class FileSkipped:
    name: ClassVar[str] = "file_skipped"
    index: int
    input: str
    output: str | None
    reason: str


@dataclass(frozen=True)
class FileError:
    name: ClassVar[str] = "file_error"
    index: int
    input: str
    output: str | None
    message: str
    exit_code: int
    kind: str


@dataclass(frozen=True)
class Summary:
    name: ClassVar[str] = "summary"
    files: int
    done: int
    skipped: int
    failed: int
    seconds: float
    pixels: int
    mp_per_s: float
    exit_code: int
    error: str | None = None


Event = Union[Start, FileStart, FileProgress, FileDone, FileSkipped, FileError, Summary]
Emit = Callable[[Event], None]


def as_json(event: Event) -> dict:
    """The event as the object ``--json`` prints on one line."""
    return {"event": event.name, "schema": SCHEMA, **asdict(event)}


def error_kind(exit_code: int) -> str:
    """What an exit code says went wrong (errors.py)."""
    return {EXIT_USAGE: "usage", EXIT_INPUT: "input", EXIT_OUTPUT: "output"}.get(exit_code, "failure")
