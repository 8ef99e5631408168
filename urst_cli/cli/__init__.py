"""The ``urst`` command line, assembled from one module per command (as sqlite-utils does).

Each module parses its options into the library's dataclasses and calls the library; ``common``
holds what they share (the stderr console, ``fail``, progress rendering). Adding a command is one
module here and one line below.
"""

from __future__ import annotations

import os
import sys

import typer

from .. import __version__
from ..errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_TERMINATED, Terminated
from . import bench, demo, info, models, sheet, stylize, view, weights
from .common import PanelledHelp, err

__all__ = ["app", "entry"]

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Paint photographs of any size in the style of a painting (URST, streamed through pyvips).")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"urst {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Print the version and exit.")) -> None:
    """urst: ultra-resolution style transfer for images of any size."""


app.command("stylize", cls=PanelledHelp)(stylize.stylize)
app.command("info")(info.info)
app.command("sheet")(sheet.sheet)
app.command("models")(models.list_models)
app.add_typer(weights.app, name="weights")
app.command("bench")(bench.bench)
app.command("demo")(demo.demo)
app.command("view")(view.view)


def entry() -> None:
    """Console-script entry point: unexpected failures become one line (URST_DEBUG=1 shows the traceback)."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    except Terminated:
        sys.exit(EXIT_TERMINATED)
    except Exception as exc:  # a bug, not a user error: still no wall of text unless asked
        if os.environ.get("URST_DEBUG"):
            raise
        err.print(f"Error: unexpected {type(exc).__name__}: {exc} (set URST_DEBUG=1 for details)", markup=False)
        sys.exit(EXIT_FAILURE)
