"""What every command shares: the stderr console, one-line errors with their exit codes, progress bars.

Human messages and progress go to stderr; errors a user can cause end in one "Error: ..." line and
a documented exit code (see errors.py), never a traceback.
"""

from __future__ import annotations

import json
import signal
import sys
from enum import Enum
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from typer.core import TyperCommand

from ..errors import EXIT_INTERRUPTED, EXIT_TERMINATED, Terminated, UrstError, clear_stop, stop_on_signal

__all__ = ["err", "fail", "PanelledHelp", "StatsChoice", "DeviceChoice", "EventView", "run_batch_command"]

err = Console(stderr=True, highlight=False)


class PanelledHelp(TyperCommand):
    """A command whose --help groups its options in the panels their ``rich_help_panel`` names.

    Only the help is rendered by rich (option help is then rich markup: escape brackets as ``\\[``);
    usage errors stay click's plain text, ending in one "Error: ..." line.
    """

    def format_help(self, ctx, formatter) -> None:
        from typer import rich_utils

        rich_utils.rich_format_help(obj=self, ctx=ctx, markup_mode="rich")


class StatsChoice(str, Enum):
    auto = "auto"
    sampled = "sampled"
    thumbnail = "thumbnail"
    exact = "exact"


class DeviceChoice(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class EventView:
    """Renders a batch's events (urst_cli.events): JSON Lines on stdout with ``json_lines``; on stderr, unless
    ``quiet``, a line per finished or skipped file, a summary for several files and, on a terminal, a bar for
    the whole batch (files, pixels, ETA) above the current file's. Errors are printed even when quiet."""

    def __init__(self, json_lines: bool = False, quiet: bool = False):
        self.json_lines, self.quiet = json_lines, quiet
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                            console=err, transient=True, disable=quiet or not err.is_terminal)
        self.batch_task = self.file_task = None
        self.file_name = ""
        self.files, self.pixels, self.finished, self.pixels_done, self.file_pixels = 0, 0, 0, 0, 0
        self.failed: list[str] = []  # inputs that failed, as the user named them

    def __enter__(self) -> "EventView":
        self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def __call__(self, event) -> None:
        from ..events import FileDone, FileError, FileProgress, FileSkipped, FileStart, Start, Summary, as_json

        if self.json_lines:
            sys.stdout.write(json.dumps(as_json(event)) + "\n")
            sys.stdout.flush()
        if isinstance(event, Start):
            self.files = event.files
            self.pixels = event.pixels
            if event.files > 1:
                self.batch_task = self.bar.add_task(self._files_text(), total=max(event.pixels, 1), rate="")
        elif isinstance(event, FileStart):
            self.file_pixels = event.width * event.height
            if self.file_task is not None:
                self.bar.remove_task(self.file_task)
            self.file_name = Path(event.input).name
            self.file_task = self.bar.add_task(self.file_name, total=1.0, rate="")
        elif isinstance(event, FileProgress):
            rate = f"{event.mp_per_s:.2f} MP/s" if event.mp_per_s else ""
            self.bar.update(self.file_task, description=f"{self.file_name}: {event.stage}",
                            completed=event.file_fraction, rate=rate)
            if self.batch_task is not None:
                self.bar.update(self.batch_task, completed=self.pixels_done + event.file_fraction * self.file_pixels)
        elif isinstance(event, FileDone):
            self._finished(event.width * event.height)
            if not self.quiet:
                gpu = f", peak GPU {event.peak_gpu_mib:.0f} MiB" if event.peak_gpu_mib else ""
                levels = ", ".join(f"{lv['width']}x{lv['height']} " +
                                   ("resumed" if lv["resumed"] else f"{lv['seconds']:.1f} s") for lv in event.levels)
                self.bar.console.print(f"wrote {event.output}  {event.width}x{event.height}  in {event.seconds:.1f} s "
                                       f"({event.mp_per_s:.2f} MP/s; stats {event.stats_mode}; "
                                       f"{f'levels {levels}; ' if levels else ''}peak RSS {event.peak_rss_mib:.0f} MiB"
                                       f"{gpu})", markup=False, soft_wrap=True)
        elif isinstance(event, FileSkipped):
            self._finished(0)
            if not self.quiet:
                self.bar.console.print(f"skipped {event.input}: {event.reason}", markup=False, soft_wrap=True)
        elif isinstance(event, FileError):
            self._finished(0)
            self.failed.append(event.input)
            self.bar.console.print(f"Error: {event.message}", markup=False, soft_wrap=True)
        elif isinstance(event, Summary) and event.files > 1 and not self.quiet and event.error is None:
            self.bar.console.print(f"{event.done} done, {event.skipped} skipped, {event.failed} failed of "
                                   f"{event.files} files in {event.seconds:.1f} s ({event.mp_per_s:.2f} MP/s)",
                                   markup=False, soft_wrap=True)

    def _files_text(self) -> str:
        return f"{self.finished}/{self.files} files, {self.pixels_done / 1e6:.1f}/{self.pixels / 1e6:.1f} MP"

    def _finished(self, pixels: int) -> None:
        self.finished += 1
        self.pixels_done += pixels
        if self.batch_task is not None:
            self.bar.update(self.batch_task, description=self._files_text(), completed=self.pixels_done)


def run_batch_command(template, items, options, view: EventView, failed_list: Path | None = None,
                      outcomes=None) -> None:
    """Run a batch (urst_cli.batch) rendered by ``view`` and exit with its code; a set-up error, Ctrl-C or
    SIGTERM ends in one line and its exit code. ``failed_list``: the failed inputs, one a line (written
    even when the run is stopped); ``outcomes``: where the inputs run (default: here, batch.local_outcomes)."""
    from ..batch import local_outcomes, run_batch

    kept = "; finished rows are kept: run it again with --resume to continue" if template.resume else \
        "; nothing was written for the current file"
    previous = {sig: signal.signal(sig, stop_on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with view:
            summary = run_batch(template, items, options, view, outcomes or local_outcomes)
    except UrstError as exc:
        fail(exc)
    except KeyboardInterrupt:
        err.print(f"Interrupted{kept}.")
        raise typer.Exit(EXIT_INTERRUPTED)
    except Terminated:
        err.print(f"Terminated{kept}.")
        raise typer.Exit(EXIT_TERMINATED)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        clear_stop()
        if failed_list is not None:
            failed_list.write_text("".join(f"{name}\n" for name in view.failed if name != "-"))
    if summary.exit_code:
        raise typer.Exit(summary.exit_code)


def fail(exc: UrstError) -> None:
    """Print ``exc`` as one "Error: ..." line on stderr and exit with its code."""
    err.print(f"Error: {exc}", markup=False, soft_wrap=True)
    raise typer.Exit(exc.exit_code)
