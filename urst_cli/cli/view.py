"""``urst view``: a result (and with --compare the original) in the browser, served from 127.0.0.1."""

from __future__ import annotations

import webbrowser
from pathlib import Path
from typing import Optional

import typer

from ..errors import UrstError
from .common import err, fail

__all__ = ["view"]


def view(
    output: Path = typer.Argument(..., help="What to show: a result (BigTIFF, pyramidal or flat, PNG, JPEG, ...), "
                                  "a .dzi, a .szi or an IIIF folder."),
    compare: Optional[Path] = typer.Option(None, "--compare", help="Show this image (the original) beside it, "
                                           "zoom and pan locked together."),
    no_browser: bool = typer.Option(False, "--no-browser", help="Only print the address; open no browser."),
    port: int = typer.Option(0, "--port", min=0, max=65535, help="Port on 127.0.0.1 (default 0: a free one)."),
) -> None:
    """Show a result in the browser, zoomable down to single pixels (OpenSeadragon).

    The page and its tiles are served on 127.0.0.1 only, until Ctrl-C (exit status 0). The address
    is printed on stdout; #x=PX&y=PX&zoom=Z at its end centres a pixel at a zoom (1: 100%).

    Example: urst view big_monet.tif --compare big.tif
    """
    from ..viewer import Served, ViewServer, open_source

    try:
        images = [Served(path.name, open_source(path)) for path in (output, compare) if path is not None]
        server = ViewServer(images, port)
    except UrstError as exc:
        fail(exc)
    typer.echo(server.url)
    err.print("serving on 127.0.0.1 only; Ctrl-C stops")
    if not no_browser and not webbrowser.open(server.url):
        err.print("no browser found: open the address above")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        err.print("stopped")
    finally:
        server.server_close()
