"""What every command shares: the stderr console, one-line errors with their exit codes, progress bars.

Human messages and progress go to stderr; errors a user can cause end in one "Error: ..." line and
a documented exit code (see errors.py), never a traceback.
"""

from __future__ import annotations

import resource
import signal
from enum import Enum

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from typer.core import TyperCommand

from ..errors import EXIT_INTERRUPTED, EXIT_TERMINATED, Terminated, UrstError

__all__ = ["err", "fail", "PanelledHelp", "StatsChoice", "DeviceChoice", "RichProgress", "run_job", "result_summary",
           "peak_memory_text", "raise_terminated"]

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


class RichProgress:
    """Shows a progress bar on a terminal; stays silent otherwise."""

    def __init__(self, enabled: bool):
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                            console=err, transient=True, disable=not enabled)
        self.task = None
        self.pixels_per_patch = 0.0

    def stage(self, text: str) -> None:
        if self.task is None:
            self.task = self.bar.add_task(text, total=None, rate="")
        self.bar.update(self.task, description=text)

    def start_patches(self, total: int) -> None:
        self.bar.reset(self.task, total=total, rate="")

    def advance(self, patches: int) -> None:
        self.bar.advance(self.task, patches)
        task = self.bar.tasks[0]
        if task.elapsed and self.pixels_per_patch:
            self.bar.update(self.task, rate=f"{task.completed * self.pixels_per_patch / task.elapsed / 1e6:.2f} MP/s")


def peak_memory_text() -> str:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    text = f"peak RSS {peak:.0f} MiB"
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        text += f", peak GPU {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB"
    return text


def run_job(job, show_progress: bool):
    """Run a job with a progress bar on a terminal; user errors and Ctrl-C end in one line and their exit code."""
    from ..job import run

    progress = RichProgress(enabled=show_progress and err.is_terminal)
    kept = "; finished rows are kept: run it again with --resume to continue" if job.resume else \
        "; nothing was written"
    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        with progress.bar:
            return run(job, progress)
    except UrstError as exc:
        fail(exc)
    except KeyboardInterrupt:
        err.print(f"Interrupted{kept}.")
        raise typer.Exit(EXIT_INTERRUPTED)
    except Terminated:
        err.print(f"Terminated{kept}.")
        raise typer.Exit(EXIT_TERMINATED)
    finally:
        signal.signal(signal.SIGTERM, previous)


def raise_terminated(signum, frame) -> None:
    raise Terminated()


def result_summary(result) -> str:
    return (f"wrote {result.path}  {result.width}x{result.height}  in {result.seconds:.1f} s "
            f"({result.megapixels_per_second:.2f} MP/s; stats {result.stats_mode} {result.stats_seconds:.1f} s; "
            f"{result.patches} patches; {peak_memory_text()})")


def fail(exc: UrstError) -> None:
    """Print ``exc`` as one "Error: ..." line on stderr and exit with its code."""
    err.print(f"Error: {exc}", markup=False, soft_wrap=True)
    raise typer.Exit(exc.exit_code)
