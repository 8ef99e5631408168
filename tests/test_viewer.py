"""urst view: what the server answers and refuses, tiles cut on demand, and the page in a real browser."""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import pyvips

from urst_cli import viewer
from urst_cli.viewer import DeepZoomFiles, DeepZoomZip, IIIFFolder, LiveTiles, Served, ViewServer, open_source
from urst_cli.writer import OutputSpec, write_rows

from conftest import ROOT, resized, run_cli

WIDTH, HEIGHT = 1536, 1024  # deepest DeepZoom level 11; levels <= 10 come from the overview


@pytest.fixture(scope="module")
def photo_1536(tmp_path_factory, photo) -> Path:
    return resized(photo, tmp_path_factory.mktemp("view") / "photo.png", WIDTH, HEIGHT)


@pytest.fixture(scope="module")
def result(photo_1536, painting) -> Path:
    """A real result as urst writes it by default: a flat tiled BigTIFF."""
    out = photo_1536.with_name("result.tif")
    run_cli("stylize", photo_1536, "-s", painting, "-o", out, check=True)
    return out


@pytest.fixture(scope="module")
def result_pixels(result) -> np.ndarray:
    return pyvips.Image.new_from_file(str(result)).numpy()


@pytest.fixture(scope="module")
def pyramids(result, result_pixels) -> dict[str, Path]:
    """The result's pixels as .dzi, .szi and IIIF, written by urst's writer."""
    folder = result.parent / "pyramids"
    folder.mkdir()
    specs = {"dzi": OutputSpec(folder / "r.dzi"), "szi": OutputSpec(folder / "r.szi"),
             "iiif": OutputSpec(folder / "r", explicit_format="iiif")}
    for spec in specs.values():
        write_rows([result_pixels], WIDTH, HEIGHT, 3, spec)
    return {kind: spec.path for kind, spec in specs.items()}


def _decoded(data: bytes) -> np.ndarray:
    return pyvips.Image.new_from_buffer(data, "").numpy()


def _jpeg_reference_error(pixels: np.ndarray) -> float:
    """What JPEG at urst's tile quality costs these pixels: the mean absolute error of a Q90 round trip."""
    again = _decoded(pyvips.Image.new_from_array(pixels).jpegsave_buffer(Q=viewer.TILE_QUALITY))
    return float(np.abs(again.astype(int) - pixels).mean())


def test_live_tiles_are_the_image(result, result_pixels):
    tiles = LiveTiles(result)
    assert tiles.max_level == 11 and tiles.overview_factor == 2
    for level in range(12):  # every level has DeepZoom's size, ceil(side / 2^(11 - level))
        image = tiles.level_image(level)
        assert (image.width, image.height) == (-(-WIDTH // 2 ** (11 - level)), -(-HEIGHT // 2 ** (11 - level)))
    tile = _decoded(tiles.tile(11, 1, 1, "jpeg"))  # columns and rows 511..1024 (1 px overlap each side)
    expected = result_pixels[511:1025, 511:1025]
    assert np.abs(tile.astype(int) - expected).mean() <= 1.1 * _jpeg_reference_error(expected)
    whole = _decoded(tiles.tile(9, 0, 0, "jpeg"))  # from the overview, shrunk by 4 in all
    shrunk = pyvips.Image.new_from_array(result_pixels).shrink(4, 4).numpy()
    assert whole.shape == shrunk.shape == (256, 384, 3)
    assert np.abs(whole.astype(int) - shrunk).mean() < 6  # thumbnail's lanczos against a box filter, and JPEG
    assert tiles.tile(11, 3, 0, "jpeg") is None and tiles.tile(12, 0, 0, "jpeg") is None
    assert tiles.tile(11, 0, 0, "png") is None


def test_stored_pyramids_are_served_as_written(pyramids):
    dzi, szi, iiif = (open_source(pyramids[kind]) for kind in ("dzi", "szi", "iiif"))
    assert isinstance(dzi, DeepZoomFiles) and isinstance(szi, DeepZoomZip) and isinstance(iiif, IIIFFolder)
    stored = (pyramids["dzi"].with_name("r_files") / "11" / "2_1.jpeg").read_bytes()
    assert dzi.tile(11, 2, 1, "jpeg") == stored == szi.tile(11, 2, 1, "jpeg")
    assert dzi.tile(11, 9, 9, "jpeg") is None and szi.tile(11, 2, 1, "png") is None
    assert szi.descriptor_body("")[1] == pyramids["dzi"].read_bytes()
    info = json.loads(iiif.descriptor_body("http://127.0.0.1:1234/image/2")[1])
    assert info["id"] == "http://127.0.0.1:1234/image/2" and info["width"] == WIDTH
    assert iiif.file("1024,512,512,512", "512,512", "default.jpg") == \
        (pyramids["iiif"] / "1024,512,512,512" / "512,512" / "0" / "default.jpg").read_bytes()


@pytest.fixture(scope="module")
def server(result, pyramids):
    images = [Served("result.tif", open_source(result)), Served("r.dzi", open_source(pyramids["dzi"])),
              Served("r", open_source(pyramids["iiif"]))]
    server = ViewServer(images)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _get(server: ViewServer, path: str, host: str | None = None) -> tuple[int, bytes]:
    """GET ``path`` exactly as given (no normalisation, no encoding) from the server."""
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=30)
    connection.putrequest("GET", path, skip_host=True)
    connection.putheader("Host", host or server.host)
    connection.endheaders()
    response = connection.getresponse()
    status, body = response.status, response.read()
    connection.close()
    return status, body


def test_server_answers_only_its_own_paths(server):
    for path in ["/", "/view.js", "/openseadragon.min.js", "/images.json", "/image/0.dzi", "/image/1.dzi",
                 "/image/0_files/11/2_1.jpeg", "/image/1_files/0/0_0.jpeg", "/image/2/info.json",
                 "/image/2/0,0,512,512/512,512/0/default.jpg", "/?x=1"]:
        assert _get(server, path)[0] == 200, path
    listing = json.loads(_get(server, "/images.json")[1])
    assert [image["tileSource"] for image in listing] == ["/image/0.dzi", "/image/1.dzi", "/image/2/info.json"]
    refused = ["/..", "/../", "/../README.md", "/../../../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd",
               "/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd", "/..%2f..%2fetc/passwd", "//etc/passwd", "/etc/passwd",
               "/index.html", "/static/view.js", "/README.md", "/openseadragon-LICENSE.txt", "/viewer.py",
               "/image/0_files/../../../etc/passwd", "/image/0_files/11/../../../../etc/passwd",
               "/image/1_files/11/%2e%2e/0_0.jpeg", "/image/1_files/../r.dzi", "/image/1_files/vips-properties.xml",
               "/image/2/../r.dzi", "/image/2/info.json/..", "/image/2/full/max/0/../../../../r.dzi",
               "/image/3.dzi", "/image/0/info.json", "/image/2.dzi", "/image/0_files/12/0_0.jpeg",
               "/image/0_files/11/0_0.png", "/image/0_files/11/9_9.jpeg", "/image/-1.dzi", "/images.json/",
               str(ROOT / "README.md"), "http://127.0.0.1/../README.md", "*"]
    for path in refused:
        assert _get(server, path)[0] == 404, path
    assert _get(server, "/", host="evil.example:80")[0] == 404  # another site's page, rebound to 127.0.0.1


def test_server_listens_on_loopback_only(server):
    assert server.server_address[0] == "127.0.0.1"
    with pytest.raises(OSError):  # another loopback address: the socket is not bound to all interfaces
        socket.create_connection(("127.0.0.2", server.server_address[1]), timeout=5).close()


def test_view_command_serves_until_ctrl_c(result):
    proc = subprocess.Popen([sys.executable, "-m", "urst_cli", "view", str(result), "--no-browser"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", url), url
        connection = http.client.HTTPConnection(url[7:-1], timeout=30)
        connection.request("GET", "/image/0_files/11/0_0.jpeg")
        assert connection.getresponse().status == 200
        connection.close()
        # a browser abandoning a keep-alive connection (a reset mid-request) is not worth a traceback
        host, port = url[7:-1].split(":")
        dropped = socket.create_connection((host, int(port)), timeout=30)
        dropped.sendall(b"GET /image/0_files/11/0_0.jpeg HTTP/1.1\r\n")
        dropped.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        dropped.close()
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "Traceback" not in stderr and stderr.strip().endswith("stopped"), stderr


def test_view_errors_are_one_line(tmp_path, result):
    broken = tmp_path / "broken.dzi"
    broken.write_text("<Image/>")
    (tmp_path / "empty").mkdir()
    cases = [((tmp_path / "missing.tif",), 3, "no such file"), ((broken,), 3, "not a readable tile pyramid"),
             ((tmp_path / "empty",), 3, "without info.json"), ((result, "--compare", tmp_path / "x.png"), 3, "x.png")]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        cases.append(((result, "--port", str(taken.getsockname()[1])), 2, "cannot listen"))
        for args, code, words in cases:
            proc = run_cli("view", *args, "--no-browser", timeout=60)
            lines = proc.stderr.strip().splitlines()
            assert proc.returncode == code and len(lines) == 1 and lines[0].startswith("Error:"), proc.stderr
            assert words in lines[0], lines[0]


def test_vendored_openseadragon_matches_its_record():
    static = ROOT / "urst_cli" / "static"
    record = (static / "README.md").read_text()
    row = re.search(r"\| `openseadragon.min.js` \| ([\d.]+) \|.*\| `([0-9a-f]{64})` \|", record)
    script = (static / "openseadragon.min.js").read_bytes()
    assert hashlib.sha256(script).hexdigest() == row[2]
    assert script.startswith(f"//! openseadragon {row[1]}\n".encode())
    assert f"OPENSEADRAGON_VERSION := {row[1]}" in (ROOT / "Makefile").read_text()
    assert "Redistribution and use in source and binary forms" in (static / "openseadragon-LICENSE.txt").read_text()


# --- in a real browser ------------------------------------------------------------------------------------

sys.path.insert(0, str(ROOT / "benchmarks"))
from view_in_browser import browser, find_chromium, hash_at, urst_view  # noqa: E402


@pytest.fixture(scope="module")
def result_dzi(photo_1536, painting) -> Path:
    """A result written as DeepZoom by urst stylize itself."""
    out = photo_1536.with_name("result.dzi")
    run_cli("stylize", photo_1536, "-s", painting, "-o", out, check=True)
    return out


def _view_in_browser(tmp_path: Path, width: int, centre: tuple[int, int], *paths: Path) -> tuple[dict, np.ndarray]:
    """``urst view PATHS`` opened at 100% around ``centre`` in a ``width`` x 600 viewport: the page's report
    once everything is drawn, and a screenshot then."""
    if find_chromium() is None:
        pytest.skip("no Chromium here: install the Debian package chromium (.ci/run installs it where it can) "
                    "to run the browser tests")
    with browser((width, 600), tmp_path / "chromium-profile") as page, urst_view(*paths) as url:
        report = page.open(url + hash_at(*centre))
        shot = page.screenshot()
    return report, pyvips.Image.new_from_buffer(shot, "").numpy()[:, :, :3]


def _check_drawn(screen: np.ndarray, left: int, width: int, centre: tuple[int, int], pixels: np.ndarray) -> None:
    """The pane at columns [left, left + width) of the screenshot shows ``pixels`` at 100% around ``centre``,
    within what JPEG tiles cost, and a level coarser would not."""
    top, first = 40, centre[0] - width // 2  # rows above 40 hold the file name
    shown = screen[top:, left: left + width].astype(int)
    expected = pixels[centre[1] - 300 + top: centre[1] + 300, first: first + width].astype(int)
    assert shown.std() > 20  # not blank
    error, allowed = np.abs(shown - expected).mean(), 1.5 * _jpeg_reference_error(expected.astype(np.uint8))
    coarser = pyvips.Image.new_from_array(expected.astype(np.uint8)).shrink(2, 2).zoom(2, 2).numpy()
    h, w = coarser.shape[:2]
    assert error <= allowed < np.abs(coarser.astype(int) - expected[:h, :w]).mean(), (error, allowed)


def test_browser_draws_the_deepest_tiles(tmp_path, result, result_pixels):
    centre = (1000, 600)
    report, screen = _view_in_browser(tmp_path, 800, centre, result)
    assert report["ready"] is True and report["levels"] == [[11, 11]], report  # the deepest level loaded
    assert np.allclose(report["views"], [[*centre, 1]], atol=1e-6), report
    _check_drawn(screen, 0, 800, centre, result_pixels)


def test_browser_compare_locks_zoom_and_pan(tmp_path, result_dzi, result_pixels, photo_1536):
    """The result written as .dzi beside the original: the view asked of the first is the second's too.
    (The .dzi holds the same pixels as the .tif result: a run's output does not depend on its format.)"""
    centre = (700, 500)
    report, screen = _view_in_browser(tmp_path, 802, centre, result_dzi, photo_1536)
    assert report["ready"] is True and report["levels"] == [[11, 11], [11, 11]], report
    assert np.allclose(report["views"], [[*centre, 1]] * 2, atol=1e-6), report  # both at the asked view
    _check_drawn(screen, 0, 400, centre, result_pixels)  # two panes of 400 px, a 2 px border between them
    _check_drawn(screen, 402, 400, centre, pyvips.Image.new_from_file(str(photo_1536)).numpy()[:, :, :3])
