"""`urst view` in headless Chromium: the time to the first whole view, and a screenshot.

    python benchmarks/view_in_browser.py RESULT [--compare ORIGINAL] [--at X,Y] [--size 1280x800]
                                         [--screenshot OUT.png]

Starts `urst view RESULT --no-browser` and opens its page in headless Chromium (the Debian package
chromium), driven over the DevTools protocol on a pipe (--remote-debugging-pipe: JSON messages on
file descriptors 3 and 4, so no extra Python package): the viewport is set before the page loads,
and the page is polled in real time until it marks <html data-ready="true">, every image drawn at
the asked view. (Chromium's --dump-dom/--screenshot with a virtual time budget returned pages not
yet drawn, or resized them before the screenshot, now and then.) Prints the seconds from starting
urst to the address being printed and to the drawn page, and the same for a tiny image (what
Chromium alone takes). --at X,Y opens the view at 100% around that pixel instead of the whole image.
For an image whose tiles are cut on demand, it first times, in this process, tiles at the image's
centre at full resolution, 1/2 and 1/4 while the overview is being made, and the overview.
tests/test_viewer.py uses these functions.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import select
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

REPORT = "JSON.stringify(Object.assign({}, document.documentElement.dataset))"


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    return None


class Browser:
    """One headless Chromium page, driven over the DevTools protocol on a pipe."""

    def __init__(self, size: tuple[int, int], profile: Path):
        chromium = find_chromium()
        if chromium is None:
            raise RuntimeError("no Chromium: install the Debian package chromium")
        commands, self._to_browser = os.pipe()
        self._from_browser, replies = os.pipe()

        def onto_3_and_4() -> None:  # where --remote-debugging-pipe expects them
            os.dup2(commands, 3)
            os.dup2(replies, 4)

        self._proc = subprocess.Popen([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                                       "--no-first-run", "--remote-debugging-pipe", f"--user-data-dir={profile}",
                                       "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      preexec_fn=onto_3_and_4, pass_fds=(3, 4))
        os.close(commands)
        os.close(replies)
        self._buffer, self._next_id, self._session = b"", 0, None
        page = next(t for t in self._call("Target.getTargets")["targetInfos"] if t["type"] == "page")
        self._session = self._call("Target.attachToTarget", targetId=page["targetId"], flatten=True)["sessionId"]
        self._call("Emulation.setDeviceMetricsOverride", width=size[0], height=size[1], deviceScaleFactor=1,
                   mobile=False)

    def _call(self, method: str, timeout: float = 60, **params) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if self._session is not None:  # to the page once attached; to the browser before
            message["sessionId"] = self._session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" not in self._buffer:
                if not select.select([self._from_browser], [], [], max(0.0, deadline - time.monotonic()))[0]:
                    raise TimeoutError(f"chromium did not answer {method} in {timeout} s")
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed the pipe")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._next_id:  # anything else is an event
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def evaluate(self, expression: str):
        return self._call("Runtime.evaluate", expression=expression, returnByValue=True,
                          awaitPromise=True)["result"].get("value")

    def open(self, url: str, timeout: float = 300) -> dict:
        """Load ``url`` and wait until the page is ready, then two more frames (drawn); its report."""
        self._call("Page.navigate", url=url)
        deadline = time.monotonic() + timeout
        while self.evaluate("document.documentElement.dataset.ready") != "true":
            if time.monotonic() > deadline:
                raise TimeoutError(f"the page was not ready after {timeout} s: {self.evaluate(REPORT)}")
            time.sleep(0.05)
        self.evaluate("new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")
        return {name: json.loads(value) for name, value in json.loads(self.evaluate(REPORT)).items()}

    def screenshot(self) -> bytes:
        return base64.b64decode(self._call("Page.captureScreenshot", format="png")["data"])

    def close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError, TimeoutError):
            self._call("Browser.close", timeout=10)
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)


@contextlib.contextmanager
def browser(size: tuple[int, int], profile: Path) -> Iterator[Browser]:
    page = Browser(size, profile)
    try:
        yield page
    finally:
        page.close()


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
    """Seconds from starting urst view to its address, and to the page drawn (Chromium already running)."""
    with browser(size, profile) as page:
        started = time.perf_counter()
        with urst_view(*paths) as url:
            address = time.perf_counter() - started
            report = page.open(url + fragment)
            drawn = time.perf_counter() - started
            if screenshot is not None:
                screenshot.write_bytes(page.screenshot())
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
    parser.add_argument("--size", default="1280x800", help="viewport, WIDTHxHEIGHT")
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
