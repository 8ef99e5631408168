"""`urst view` in headless Chromium: the time to the first whole view, and a screenshot.

    python benchmarks/view_in_browser.py RESULT [--compare ORIGINAL] [--at X,Y] [--size 1280x800]
                                         [--screenshot OUT.png]

Starts `urst view RESULT --no-browser` and opens its page in headless Chromium (the Debian package
chromium), driven from the command line with no extra Python package: --dump-dom returns the
page once nothing is left to load (virtual time stands still while requests are pending), and the
page marks <html data-ready="true"> when every image is drawn at the asked view. Prints the seconds
from starting urst to the address being printed and to Chromium returning the drawn page, and the
same for an empty page load of a tiny image (what Chromium alone takes). --at X,Y opens the view at
100% around that pixel instead of the whole image. For an image whose tiles are cut on demand, it
first times, in this process, tiles at the image's centre at full resolution, 1/2 and 1/4 while the
overview is being made, and the overview. tests/test_viewer.py uses these functions.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pyvips

from urst_cli.viewer import TILE_SIZE, LiveTiles, open_source


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def headless(url: str, size: tuple[int, int], profile: Path, *action: str) -> str:
    """Chromium's stdout for ``url`` in a window of ``size`` (CSS px = screen px) with ``action``
    (--dump-dom, --screenshot=FILE)."""
    chromium = find_chromium()
    if chromium is None:
        raise RuntimeError("no Chromium: install the Debian package chromium")
    proc = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--no-first-run", "--force-device-scale-factor=1", f"--window-size={size[0]},{size[1]}",
                           f"--user-data-dir={profile}", "--virtual-time-budget=60000", *action, url],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"chromium failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stdout


def page_report(dom: str) -> dict:
    """What the page reports on <html>: ready (all drawn), levels ([deepest loaded, deepest] per image) and
    views ([x, y, zoom] per image)."""
    root = re.search(r"<html[^>]*>", dom)[0].replace("&quot;", '"')
    return {name: json.loads(value) for name, value in re.findall(r'data-(ready|levels|views)="([^"]*)"', root)}


@contextlib.contextmanager
def urst_view(*paths: Path) -> Iterator[str]:
    """``urst view PATH [--compare PATH2] --no-browser`` running; yields its address. Stopped with Ctrl-C."""
    args = [str(paths[0])] + [arg for path in paths[1:] for arg in ("--compare", str(path))]
    proc = subprocess.Popen([sys.executable, "-m", "urst_cli", "view", *args, "--no-browser"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        if not url:
            raise RuntimeError(f"urst view did not start: {proc.communicate(timeout=60)[1]}")
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)


def hash_at(x: int, y: int, zoom: float = 1) -> str:
    return f"#x={x}&y={y}&zoom={zoom}"


def timed_view(paths: list[Path], size: tuple[int, int], fragment: str, profile: Path,
               screenshot: Path | None = None) -> dict:
    """Seconds from starting urst view to its address, and to Chromium returning the drawn page."""
    started = time.perf_counter()
    with urst_view(*paths) as url:
        address = time.perf_counter() - started
        report = page_report(headless(url + fragment, size, profile, "--dump-dom"))
        drawn = time.perf_counter() - started
        if screenshot is not None:
            headless(url + fragment, size, profile, f"--screenshot={screenshot}")
    return {"address_s": round(address, 2), "drawn_s": round(drawn, 2), **report}


def tile_times(path: Path) -> str:
    """Seconds to cut a tile at the centre at full resolution, 1/2 and 1/4, and until the overview is made."""
    started = time.perf_counter()
    tiles = open_source(path)
    if not isinstance(tiles, LiveTiles):
        return "a pyramid: tiles served as stored"
    seconds = []
    for level in (tiles.max_level, tiles.max_level - 1, tiles.max_level - 2):
        factor = 2 ** (tiles.max_level - level)
        col, row = tiles.width // 2 // factor // TILE_SIZE, tiles.height // 2 // factor // TILE_SIZE
        t = time.perf_counter()
        tiles.tile(level, col, row, tiles.descriptor.format)
        seconds.append(f"{time.perf_counter() - t:.3f}")
    tiles.level_image(0)  # waits for the overview
    return (f"tiles at 1, 1/2, 1/4: {', '.join(seconds)} s; overview (1/{tiles.overview_factor}) made "
            f"{time.perf_counter() - started:.1f} s after opening")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("result", type=Path)
    parser.add_argument("--compare", type=Path)
    parser.add_argument("--at", help="X,Y: open at 100%% around this pixel (default: the whole image)")
    parser.add_argument("--size", default="1280x800", help="window, WIDTHxHEIGHT")
    parser.add_argument("--screenshot", type=Path)
    args = parser.parse_args()
    size = tuple(int(n) for n in args.size.split("x"))
    fragment = hash_at(*(int(n) for n in args.at.split(","))) if args.at else ""
    paths = [args.result] + ([args.compare] if args.compare else [])
    print(f"{args.result.name}: {tile_times(args.result)}")
    with tempfile.TemporaryDirectory() as tmp:
        tiny = Path(tmp) / "tiny.png"
        pyvips.Image.new_from_array(np.zeros((8, 8), np.uint8)).write_to_file(str(tiny))
        baseline = timed_view([tiny], size, "", Path(tmp) / "profile")
        print(f"tiny image: address after {baseline['address_s']} s, drawn after {baseline['drawn_s']} s")
        timed = timed_view(paths, size, fragment, Path(tmp) / "profile", args.screenshot)
        print(f"{' + '.join(p.name for p in paths)} {fragment or '(whole image)'}: address after "
              f"{timed['address_s']} s, drawn after {timed['drawn_s']} s; page report {timed}")


if __name__ == "__main__":
    main()
