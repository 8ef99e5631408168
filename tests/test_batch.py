"""Batches: inputs expanded, outputs named, one model for many files, events a script can trust."""

from __future__ import annotations

import io
import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import pyvips

from conftest import ROOT, resized, run_cli, wait_for
from urst_cli import batch
from urst_cli.batch import STDOUT, Naming, Source, expand_inputs, name_outputs
from urst_cli.errors import EXIT_SOME_FAILED, EXIT_USAGE, UrstError
from urst_cli.events import SCHEMA
from urst_cli.job import coarsest_level


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _source(path: str, rel: str = ".") -> Source:
    return Source(Path(path), path, Path(rel))


def test_coarsest_level_is_multiscale_auto():
    """The preview's reduction is the coarsest level multi-scale's "auto" paints: long side <= 1536 px,
    fewer octaves where the short side runs out."""
    sizes = [(1, 1), (1536, 1000), (1537, 1000), (3072, 2048), (3073, 2048), (38730, 25820), (6000, 200)]
    assert [coarsest_level(*size) for size in sizes] == [0, 0, 1, 1, 2, 5, 1]
    assert coarsest_level(4000, 3000, "2") == 1


def test_folders_expand_to_their_images_hidden_and_system_files_skipped(tmp_path):
    for name in ["b.jpg", "a.png", "notes.txt", ".DS_Store", "._a.png", "Thumbs.db", "sub/c.tif", "sub/.hidden/d.jpg",
                 ".git/e.jpg"]:
        _touch(tmp_path / "in" / name)
    flat = expand_inputs([str(tmp_path / "in")])
    assert [s.path.name for s in flat] == ["a.png", "b.jpg"]
    deep = expand_inputs([str(tmp_path / "in")], recursive=True)
    assert [(str(s.rel), s.path.name) for s in deep] == [(".", "a.png"), (".", "b.jpg"), ("sub", "c.tif")]
    with pytest.raises(UrstError, match=r"no images in this folder \(-r"):
        expand_inputs([str(_touch(tmp_path / "e" / "x.txt").parent)])


def test_named_files_and_files_from_are_taken_as_named_once(tmp_path):
    a, b = _touch(tmp_path / "x" / "a.jpg"), _touch(tmp_path / "y" / "a.jpg")
    listing = _touch(tmp_path / "list.txt", f"{a}\n\n{b}\n{tmp_path / 'missing.png'}\n".encode())
    sources = expand_inputs([str(a)], files_from=str(listing))
    assert [s.label for s in sources] == [str(a), str(b), str(tmp_path / "missing.png")]  # missing: fails later, alone
    assert [str(s.rel) for s in sources] == ["x", "y", "."]  # relative to the folder they all lie in
    from_stdin = expand_inputs([], files_from="-", stdin=io.BytesIO(f"{b}\n".encode()))
    assert [s.path for s in from_stdin] == [b]
    with pytest.raises(UrstError, match="only once"):
        expand_inputs(["-"], files_from="-", workdir=tmp_path, stdin=io.BytesIO(b""))


def test_stdin_image_is_spooled_to_a_file(tmp_path):
    [source] = expand_inputs(["-"], workdir=tmp_path, stdin=io.BytesIO(b"\xff\xd8 bytes"))
    assert source.label == "-" and source.path.read_bytes() == b"\xff\xd8 bytes"


def test_default_names_beside_each_input_never_overwrite(tmp_path):
    a = _touch(tmp_path / "a.jpg")
    _touch(tmp_path / "a_monet.tif")
    [item] = name_outputs([_source(str(a))], Naming(style="monet"))
    assert item.output == tmp_path / "a_monet-2.tif"
    [item] = name_outputs([_source(str(a))], Naming(style="monet", numbered=False))  # --skip-existing/--overwrite
    assert item.output == tmp_path / "a_monet.tif"


def test_output_folder_mirrors_the_tree_and_never_flattens(tmp_path):
    sources = [_source("in/a.jpg"), _source("in/a.png"), _source("in/sub/a.jpg", "sub")]
    items = name_outputs(sources, Naming(output=str(tmp_path / "out") + "/", format="png", style="s"))
    assert [i.output.relative_to(tmp_path) for i in items] == [
        Path("out/a-jpg_s.png"), Path("out/a-png_s.png"), Path("out/sub/a_s.png")]
    assert all(i.make_parents for i in items)


def test_templates_name_their_fields_and_refuse_collisions(tmp_path):
    sources = [_source("in/a.jpg"), _source("in/sub/b.png", "sub")]
    items = name_outputs(sources, Naming(output="out/{rel}/{stem}.{suffix}_{style}_{model}.{ext}", style="p3",
                                         model="multistyle26"))
    assert [str(i.output) for i in items] == ["out/a.jpg_p3_multistyle26.tif", "out/sub/b.png_p3_multistyle26.tif"]
    with pytest.raises(UrstError, match="both be written") as clash:
        name_outputs([_source("x/a.jpg"), _source("y/a.jpg")], Naming(output="out/{stem}.tif"))
    assert clash.value.exit_code == EXIT_USAGE
    with pytest.raises(UrstError, match=r"unknown field \{colour\}"):
        name_outputs(sources, Naming(output="{colour}.tif"))


def test_one_file_outputs_take_one_input(tmp_path):
    two = [_source("a.jpg"), _source("b.jpg")]
    with pytest.raises(UrstError, match="names one file"):
        name_outputs(two, Naming(output=str(tmp_path / "o.tif")))
    with pytest.raises(UrstError, match="disagree"):
        name_outputs(two[:1], Naming(output="o.tif", format="png"))
    assert name_outputs(two[:1], Naming(output="o.jpeg", format="jpg"))[0].output == Path("o.jpeg")
    for unfit in (None, "dzi", "iiif"):  # many files each
        with pytest.raises(UrstError, match="needs --format"):
            name_outputs(two[:1], Naming(output="-", format=unfit))
    [item] = name_outputs(two[:1], Naming(output="-", format="webp"))
    assert item.output == STDOUT and item.stdout_suffix == ".webp"
    with pytest.raises(UrstError, match="stdin"):
        name_outputs([Source(tmp_path / "stdin", "-", Path("."))], Naming())
    assert name_outputs(two[:1], Naming(output="o.tif", preview=True))[0].output == Path("o_preview.tif")


def test_an_input_that_is_another_inputs_output_is_skipped(tmp_path):
    a = _touch(tmp_path / "a.jpg")
    done = _touch(tmp_path / "a_monet.tif")
    items = name_outputs([_source(str(a)), _source(str(done))], Naming(style="monet", numbered=False))
    assert items[0].skip is None and "output of" in items[1].skip


def test_progress_of_a_multiscale_file_counts_each_levels_own_pixels(monkeypatch):
    """A level's rate is its own pixels over its time; the file's fraction and ETA count every level, so
    neither the rate of a coarse level nor the bars jump (a quarter-size level is not the whole image)."""
    clock = [0.0]
    monkeypatch.setattr(batch.time, "perf_counter", lambda: clock[0])
    events = []
    progress = batch._FileProgress(events.append, 0, interval=0.0)
    progress.stage("level 1/2 800x500: stylizing")
    progress.start_patches(4, 400_000, 0, 2_000_000)
    for _ in range(4):
        clock[0] += 1
        progress.advance(1)
    end_of_coarse = events[-1]
    assert (end_of_coarse.fraction, end_of_coarse.mp_per_s, end_of_coarse.file_fraction) == (1.0, 0.1, 0.2)
    assert end_of_coarse.eta_s == 16.0  # the full-size level's 1.6 MP at 0.1 MP/s
    clock[0] = 10.0
    progress.stage("level 2/2 1600x1000: statistics")
    assert events[-1].file_fraction == 0.2 and events[-1].mp_per_s is None
    progress.start_patches(8, 1_600_000, 400_000, 2_000_000)
    for _ in range(8):
        clock[0] += 1
        progress.advance(1)
    assert (events[-7].fraction, events[-7].mp_per_s, events[-7].file_fraction, events[-7].eta_s) == \
        (0.25, 0.2, 0.4, 6.0)
    fractions = [e.file_fraction for e in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and events[-1].eta_s == 0.0


# --- real batches -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def batch_dir(tmp_path_factory, photo):
    """Six inputs in a tree: JPEG, PNG with alpha, tiled TIFF, WebP (in a sub-folder), and two broken files."""
    root = tmp_path_factory.mktemp("batch") / "in"
    (root / "sub").mkdir(parents=True)
    resized(photo, root / "a.png", 320, 213)
    big = pyvips.Image.new_from_file(str(resized(photo, root / "b.jpg", 900, 600)))
    big.tiffsave(str(root / "c.tif"), tile=True, tile_width=128, tile_height=128, compression="jpeg")
    rgb = pyvips.Image.new_from_file(str(root / "a.png"))
    rgb.bandjoin((pyvips.Image.xyz(320, 213)[0] * 255 / 319).cast("uchar")).write_to_file(str(root / "alpha.png"))
    resized(photo, root / "sub" / "d.webp", 200, 300)
    (root / "broken.jpg").write_bytes((root / "b.jpg").read_bytes()[:2000])
    (root / "sub" / "notes.png").write_text("not a picture")
    return root


EVENT_FIELDS = {
    "start": {"files", "pixels"},
    "file_start": {"index", "input", "output", "width", "height"},
    "progress": {"index", "stage", "fraction", "mp_per_s", "eta_s", "file_fraction"},
    "file_done": {"index", "input", "output", "width", "height", "bytes", "seconds", "mp_per_s", "stats_mode",
                  "levels", "peak_rss_mib", "rss_mib", "peak_gpu_mib"},
    "file_skipped": {"index", "input", "output", "reason"},
    "file_error": {"index", "input", "output", "message", "exit_code", "kind"},
    "summary": {"files", "done", "skipped", "failed", "seconds", "pixels", "mp_per_s", "exit_code", "error"},
}


def _events(stdout: str) -> list[dict]:
    """Every line of a --json run, checked against the schema-1 vocabulary."""
    events = [json.loads(line) for line in stdout.splitlines()]
    for e in events:
        assert e["schema"] == SCHEMA and EVENT_FIELDS[e["event"]] <= e.keys(), e
    assert events[0]["event"] == "start" and events[-1]["event"] == "summary"
    return events


def test_batch_json_events_failures_and_resume(tmp_path, batch_dir, painting):
    out, failed = tmp_path / "out", tmp_path / "failed.txt"
    proc = run_cli("stylize", batch_dir, "-r", "-s", painting, "-o", f"{out}/", "--json", "--failed-list", failed,
                   "--patch-size", "256")
    assert proc.returncode == EXIT_SOME_FAILED, proc.stderr
    events = _events(proc.stdout)
    by_kind = {k: [e for e in events if e["event"] == k] for k in EVENT_FIELDS}
    assert by_kind["start"][0]["files"] == 7
    assert sorted(e["input"] for e in by_kind["file_error"]) == [str(batch_dir / "broken.jpg"),
                                                                 str(batch_dir / "sub" / "notes.png")]
    assert {e["kind"] for e in by_kind["file_error"]} == {"input"} and {e["exit_code"] for e in by_kind["file_error"]} == {3}
    assert failed.read_text().splitlines() == sorted(e["input"] for e in by_kind["file_error"])
    summary = by_kind["summary"][0]
    assert (summary["done"], summary["skipped"], summary["failed"], summary["exit_code"]) == (5, 0, 2, EXIT_SOME_FAILED)
    for e in by_kind["file_done"]:  # each output is complete, of its input's size, where the tree says
        src = pyvips.Image.new_from_file(e["input"])
        result = pyvips.Image.new_from_file(e["output"])
        assert (result.width, result.height, result.bands) == (src.width, src.height, src.bands)
        assert Path(e["output"]).stat().st_size == e["bytes"] and e["stats_mode"] in ("whole", "sampled")
        assert Path(e["output"]).parent.relative_to(out) == Path(e["input"]).parent.relative_to(batch_dir)
    big = next(e for e in by_kind["file_done"] if e["input"].endswith("b.jpg"))
    rates = [p["mp_per_s"] for p in by_kind["progress"] if p["index"] == big["index"] and p["fraction"] > 0]
    assert rates and all(r > 0 for r in rates)  # the per-file bar's MP/s
    for done in by_kind["file_done"]:  # what the bars show only ever grows
        file_fractions = [p["file_fraction"] for p in by_kind["progress"] if p["index"] == done["index"]]
        assert file_fractions == sorted(file_fractions) and file_fractions[-1] == 1.0
    assert "Error:" in proc.stderr and "5 done, 0 skipped, 2 failed of 7 files" in proc.stderr

    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.tif")}
    again = run_cli("stylize", "--files-from", failed, batch_dir, "-r", "-s", painting, "-o", f"{out}/",
                    "--skip-existing", "--json")
    events = _events(again.stdout)
    assert again.returncode == EXIT_SOME_FAILED
    assert sorted(e["input"] for e in events if e["event"] == "file_error") == failed.read_text().splitlines()
    assert len([e for e in events if e["event"] == "file_skipped"]) == 5
    assert not [e for e in events if e["event"] == "file_done"]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.tif")} == mtimes


def test_one_input_fails_with_its_own_code_and_fail_fast_stops(tmp_path, batch_dir, painting):
    proc = run_cli("stylize", batch_dir / "broken.jpg", "-s", painting, "-o", tmp_path / "o.tif")
    assert proc.returncode == 3 and proc.stderr.startswith("Error:")
    proc = run_cli("stylize", batch_dir / "broken.jpg", batch_dir / "a.png", "-s", painting, "-o", f"{tmp_path}/",
                   "--fail-fast", "--json")
    assert proc.returncode == 3
    kinds = [e["event"] for e in _events(proc.stdout) if e["event"] != "progress"]
    assert kinds == ["start", "file_start", "file_error", "summary"]  # a.png was never started
    assert not list(tmp_path.iterdir())


def test_a_setup_error_stops_the_whole_batch_with_its_code(tmp_path, batch_dir):
    proc = run_cli("stylize", batch_dir / "a.png", batch_dir / "b.jpg", "-s", tmp_path / "missing.jpg", "-o",
                   f"{tmp_path}/out/", "--json")
    events = _events(proc.stdout)
    assert proc.returncode == 3 and [e["event"] for e in events] == ["start", "summary"]
    assert "missing.jpg: no such file" in events[-1]["error"] and events[-1]["exit_code"] == 3
    assert proc.stderr.strip().startswith("Error:") and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_stdin_to_stdout(tmp_path, batch_dir, painting):
    src = batch_dir / "a.png"
    proc = subprocess.run([sys.executable, "-m", "urst_cli", "stylize", "-", "-s", str(painting), "-o", "-",
                           "--format", "png"], input=src.read_bytes(), capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = pyvips.Image.new_from_buffer(proc.stdout, "")
    assert (result.width, result.height) == (320, 213) and result.numpy().std() > 10
    assert run_cli("stylize", src, "-s", painting, "-o", "-").returncode == EXIT_USAGE  # no --format


def test_stdout_refused_on_a_terminal(batch_dir, painting):
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run([sys.executable, "-m", "urst_cli", "stylize", str(batch_dir / "a.png"), "-s",
                               str(painting), "-o", "-", "--format", "png"], stdout=follower, stderr=subprocess.PIPE,
                              text=True, timeout=120)
    finally:
        os.close(follower)
        os.close(leader)
    assert proc.returncode == EXIT_USAGE and "terminal" in proc.stderr


def test_preview_is_the_full_jobs_coarsest_level(tmp_path, photo, painting):
    """--preview writes the very level the full multi-scale job paints first (caught in its --resume folder)."""
    src = resized(photo, tmp_path / "p.jpg", 1600, 1066)
    proc = subprocess.Popen([sys.executable, "-m", "urst_cli", "stylize", str(src), "-s", str(painting), "-o",
                             str(tmp_path / "full.tif"), "--resume"], stderr=subprocess.PIPE, text=True)
    level = tmp_path / ".full.tif.urst-resume" / "levels" / "level-1.tif"
    try:
        assert wait_for(level.exists, proc, interval=0.005), proc.communicate()[1]
        coarsest = pyvips.Image.new_from_file(str(level)).numpy()  # complete: renamed into place when written
    finally:
        proc.kill()
        proc.wait()
    run_cli("stylize", src, "-s", painting, "-o", tmp_path / "full.tif", "--preview", "-q", check=True)
    np.testing.assert_array_equal(pyvips.Image.new_from_file(str(tmp_path / "full_preview.tif")).numpy(), coarsest)


def test_preview_is_the_coarsest_level(tmp_path, photo, painting):
    src = resized(photo, tmp_path / "wide.jpg", 3200, 400)
    proc = run_cli("stylize", src, "-s", painting, "--preview", "-o", tmp_path / "wide.png", check=True)
    preview = pyvips.Image.new_from_file(str(tmp_path / "wide_preview.png"))
    assert (preview.width, preview.height) == (800, 100) and not (tmp_path / "wide.png").exists()
    assert "wrote" in proc.stderr


@pytest.mark.slow
def test_no_leak_over_200_files():
    """Resident memory after the last of 200 small files is within 5% of what it was after the 20th."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from batch import rss_over_files

    _, done = rss_over_files(200, 256)
    assert done[-1]["rss_mib"] <= 1.05 * done[19]["rss_mib"], [e["rss_mib"] for e in done[19::20]]
    assert done[-1]["peak_rss_mib"] <= 1.05 * done[19]["peak_rss_mib"]


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_prepared_once_equals_prepared_per_image(tmp_path, batch_dir, painting, alpha):
    """A batch's shared set-up gives each image the bytes a run of its own gives (with --alpha < 1 magenta's
    conditioning mixes in each photo's own style vector, so it is made per image)."""
    from dataclasses import replace

    from urst_cli.job import Job, prepare, run
    from urst_cli.writer import OutputSpec

    template = Job(input=Path(), output=OutputSpec(Path()), styles=[painting], alpha=alpha, patch_size=256)
    prepared = prepare(template)
    assert (prepared.runner is None) == (alpha < 1)
    for name in ("a.png", "sub/d.webp"):
        alone = replace(template, input=batch_dir / name, output=OutputSpec(tmp_path / f"alone{Path(name).stem}.tif"))
        shared = replace(alone, output=OutputSpec(tmp_path / f"shared{Path(name).stem}.tif"))
        run(alone)
        run(shared, prepared=prepared)
        assert alone.output.path.read_bytes() == shared.output.path.read_bytes()


def test_terminal_shows_a_batch_bar_above_the_file_bar_with_its_rate(batch_dir, painting, tmp_path):
    """On a terminal (a pty here) the whole-batch bar (files, megapixels) sits above the file's, whose MP/s is filled in."""
    import re
    import threading

    leader, follower = pty.openpty()
    chunks: list[bytes] = []

    def drain():
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: the child closed its side
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    proc = subprocess.run([sys.executable, "-m", "urst_cli", "stylize", str(batch_dir / "b.jpg"),
                           str(batch_dir / "a.png"), "-s", str(painting), "-o", f"{tmp_path}/", "--patch-size", "256"],
                          stdout=subprocess.PIPE, stderr=follower, env={**os.environ, "COLUMNS": "160"}, timeout=300)
    os.close(follower)
    reader.join(timeout=10)
    os.close(leader)
    screen = re.sub(rb"\x1b\[[0-9;?]*[a-zA-Z]", b"", b"".join(chunks)).decode(errors="replace")
    assert proc.returncode == 0, screen
    lines = [line for chunk in screen.split("\r") for line in chunk.split("\n")]
    assert any(re.match(r"[01]/2 files, \d+\.\d/0\.6 MP", line) for line in lines), screen[-2000:]  # 900x600 + 320x213
    # the file bar's MP/s (rich redraws 10 times a second: a file done sooner may not be drawn mid-way, but the
    # last file's bar is drawn once more, complete, as the bars close)
    assert any(re.search(r"(b\.jpg|a\.png): stylizing .* \d+\.\d\d MP/s", line) for line in lines), screen[-2000:]
    assert "2 done, 0 skipped, 0 failed of 2 files" in screen
