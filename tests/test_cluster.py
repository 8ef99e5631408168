"""urst on a Dask cluster (LocalCluster, CPU): batches and one image in bands give a local run's bytes and events."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import pyvips

from conftest import resized, run_cli
from urst_cli.batch import BatchOptions, Naming, expand_inputs, local_outcomes, name_outputs, run_batch
from urst_cli.errors import EXIT_FAILURE, EXIT_INPUT, EXIT_USAGE
from urst_cli.events import FileProgress, as_json
from urst_cli.job import Job
from urst_cli.writer import OutputSpec

distributed = pytest.importorskip("distributed")
from urst_cli.cluster import banded_outcomes, band_spans, connect, file_outcomes  # noqa: E402


@pytest.fixture(scope="module")
def client():
    with connect(None, 2) as client:
        yield client


@pytest.fixture(scope="module")
def tall_photo(tmp_path_factory, photo) -> Path:
    return resized(photo, tmp_path_factory.mktemp("tall") / "tall.png", 320, 640)


def _template(painting: Path, **kw) -> Job:
    return Job(input=Path(), output=OutputSpec(Path(), tile_size=kw.pop("tile_size", 256)), styles=[painting],
               stroke_scale="1", **kw)


def _run(template: Job, inputs: list[Path], out: str, outcomes=local_outcomes) -> list[dict]:
    """The batch's events as --json prints them, progress left out (their timing is the machine's)."""
    events = []
    items = name_outputs(expand_inputs(map(str, inputs)), Naming(out, style="s"))
    run_batch(template, items, BatchOptions(), lambda e: events.append(as_json(e)), outcomes)
    return [e for e in events if e["event"] != "progress"]


def _same_but_time(local: list[dict], remote: list[dict], local_dir: Path, remote_dir: Path) -> None:
    varying = {"seconds", "mp_per_s", "peak_rss_mib", "rss_mib", "peak_gpu_mib", "levels"}
    strip = lambda e: {k: str(v).replace(str(remote_dir), str(local_dir)) for k, v in e.items()  # noqa: E731
                       if k not in varying}
    assert [strip(e) for e in remote] == [strip(e) for e in local]


def test_one_image_in_bands_equals_the_local_run(tmp_path, client, tall_photo, painting):
    """Bands of one tile row (several per window row), of two, and the default (one band per worker):
    every split gives the local file byte for byte, spread over both workers."""
    template = _template(painting, tile_size=128)
    local = _run(template, [tall_photo], str(tmp_path / "local.tif"))
    expected = (tmp_path / "local.tif").read_bytes()
    for rows in (128, 256, None):
        out = tmp_path / f"bands-{rows}.tif"
        events = _run(template, [tall_photo], str(out), banded_outcomes(client, rows))
        assert out.read_bytes() == expected, rows
        _same_but_time(local, events, tmp_path / "local.tif", out)
    assert len(band_spans(template, _info(tall_photo), 128)) == 5
    # by default, as many bands as workers keep them all busy (one band would hold one of them for the image)
    assert band_spans(template, _info(tall_photo), None, 512, workers=2) == [(0, 384), (384, 640)]
    # the bands ran with a share of the cores (1 thread on 2 cores), which a local run's windows agree with
    assert client.run(_bands_agreed) == {w: {(512, 320): True} for w in client.scheduler_info()["workers"]}


def _bands_agreed() -> dict:
    """On a worker: the window shapes it checked, and whether they agree at a band's and a local run's count."""
    from urst_cli import cluster

    return dict(cluster._windows_agree)
    assert {e["event"] for e in local} == {"start", "file_start", "file_done", "summary"}


def _info(path: Path):
    from urst_cli.reader import probe

    return probe(path)


def test_a_batch_on_two_workers_equals_local_runs(tmp_path, client, photo, painting):
    """Twelve small files and a missing one: the same files, bytes and events (in input order) as a local batch."""
    whole = pyvips.Image.new_from_file(str(photo))
    inputs = []
    for i in range(12):
        crop = whole.crop(i % 4 * 450, i // 4 * 400, 1200, 800).resize(0.25)
        inputs.append(tmp_path / "in" / f"p{i}.png")
        inputs[-1].parent.mkdir(exist_ok=True)
        crop.write_to_file(str(inputs[-1]))
    inputs.insert(3, tmp_path / "in" / "missing.png")
    template = _template(painting)
    local = _run(template, inputs, str(tmp_path / "local") + "/")
    remote = _run(template, inputs, str(tmp_path / "remote") + "/", file_outcomes(client))
    _same_but_time(local, remote, tmp_path / "local", tmp_path / "remote")
    assert [e["event"] for e in remote].count("file_done") == 12 and remote[-1]["exit_code"] == 5
    for made in sorted((tmp_path / "local").rglob("*.tif")):
        assert (tmp_path / "remote" / made.relative_to(tmp_path / "local")).read_bytes() == made.read_bytes()


def test_a_worker_killed_mid_image_changes_nothing(tmp_path, client, photo, painting):
    """SIGKILL to a worker while it computes a band (at the first band written): Dask runs its bands again
    (the nanny restarts it) and the file is the local one."""
    taller = resized(photo, tmp_path / "taller.png", 320, 1280)  # ten bands: most are still to come
    template = _template(painting, tile_size=128)
    _run(template, [taller], str(tmp_path / "local.tif"))
    killed = []

    def kill_a_busy_worker(event) -> None:
        if isinstance(event, FileProgress) and event.fraction > 0 and not killed:
            busy = [w for w, keys in client.processing().items() if keys]
            if busy:
                pid = client.run(os.getpid, workers=busy[:1])[busy[0]]
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

    items = name_outputs(expand_inputs([str(taller)]), Naming(str(tmp_path / "remote.tif"), style="s"))
    summary = run_batch(template, items, BatchOptions(progress_interval=0), kill_a_busy_worker,
                        banded_outcomes(client, 128))
    assert killed and summary.exit_code == 0
    assert (tmp_path / "remote.tif").read_bytes() == (tmp_path / "local.tif").read_bytes()
    client.wait_for_workers(2, timeout=60)  # the nanny has started it again
    assert killed[0] not in client.run(os.getpid).values()


def test_cli_one_image_on_local_workers_and_its_errors(tmp_path, tall_photo, painting):
    """--local-workers from the command line; what cannot run across workers ends in one line, as does an
    input a worker cannot decode (no file is left at the output)."""
    out = tmp_path / "out.tif"
    proc = run_cli("stylize", tall_photo, "-s", painting, "-o", out, "--stroke-scale", "1", "--local-workers", "2",
                   "--band-rows", "128", "--tile-size", "128", "--json", check=True)
    done = [json.loads(line) for line in proc.stdout.splitlines() if '"file_done"' in line]
    assert done and done[0]["width"] == 320 and out.exists()

    multi = run_cli("stylize", tall_photo, "-s", painting, "-o", tmp_path / "m.tif", "--stroke-scale", "2",
                    "--local-workers", "1")
    assert multi.returncode == EXIT_USAGE and multi.stderr.strip().splitlines()[-1].startswith("Error: ")
    assert "--stroke-scale 1" in multi.stderr and "Traceback" not in multi.stderr

    bad_rows = run_cli("stylize", tall_photo, "-s", painting, "-o", tmp_path / "b.tif", "--stroke-scale", "1",
                       "--local-workers", "1", "--band-rows", "100")
    assert bad_rows.returncode == EXIT_USAGE and "multiple of the TIFF tile side (256)" in bad_rows.stderr

    broken = tmp_path / "broken.png"
    broken.write_bytes(tall_photo.read_bytes()[: tall_photo.stat().st_size // 2])  # the header reads; the rows do not
    proc = run_cli("stylize", broken, "-s", painting, "-o", tmp_path / "broken.tif", "--stroke-scale", "1",
                   "--local-workers", "1")
    assert proc.returncode == EXIT_INPUT, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("Error: ") and "Traceback" not in proc.stderr
    assert not (tmp_path / "broken.tif").exists() and not list(tmp_path.glob(".broken.tif*"))


def test_unreachable_scheduler_is_one_line(tmp_path, small_photo, painting):
    proc = run_cli("stylize", small_photo, "-s", painting, "-o", tmp_path / "o.tif", "--scheduler",
                   "tcp://127.0.0.1:9")
    assert proc.returncode == EXIT_FAILURE
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip().splitlines()[-1]]
    assert proc.stderr.startswith("Error: cannot reach the Dask scheduler at tcp://127.0.0.1:9")
    bad = run_cli("stylize", small_photo, "-s", painting, "-o", tmp_path / "o.tif", "--scheduler", "host:port")
    assert bad.returncode == EXIT_FAILURE
    assert bad.stderr.startswith("Error: cannot reach the Dask scheduler at host:port")


def test_nothing_imports_dask_unless_asked(tmp_path, small_photo, painting):
    """A local run, batch modules and CLI loaded, never imports Dask (the extra is optional)."""
    code = ("import sys; from urst_cli.cli import app; from typer.testing import CliRunner; "
            f"result = CliRunner().invoke(app, ['stylize', '{small_photo}', '-s', '{painting}', '-o', "
            f"'{tmp_path / 'o.tif'}', '-q']); assert result.exit_code == 0, result.output; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed') "
            "or m == 'urst_cli.cluster'))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
