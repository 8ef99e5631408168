"""urst on a Dask cluster (the optional extra ``urst[cluster]``; nothing else imports Dask).

    connect(scheduler, local_workers) -> Client   a running scheduler, or a LocalCluster started and closed here
    file_outcomes(client)                         a batch: one task per file (batch.Outcomes)
    banded_outcomes(client, band_rows)            one image: bands of tile rows on the workers, written here

Workers read inputs by path (a shared file system) and keep one set-up (model, style) per process, made by
the first task that needs it, never pickled from the client. Set-ups, statistics and batch files run with a
local run's torch thread count (their sums depend on it); bands may run with fewer (a share of the cores), as
the windows give the same bytes with both counts (checked on each worker). Where workers declare a ``GPU`` resource
(``dask worker --resources GPU=1``), tasks run only there, one per GPU. A task lost with its worker is run
again by Dask; as every band and file is computed from its inputs alone, the output does not change.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
import uuid
from collections import deque
from contextlib import contextmanager
from dataclasses import replace
from functools import partial
from itertools import zip_longest
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from .batch import BatchOptions, Item, Outcomes, Run, attempt
from .errors import EXIT_FAILURE, EXIT_USAGE, UrstError
from .events import Emit, Event, FileDone, FileError
from .job import Job, Prepared, Progress, Result, band_tiles, check_banded, image_stats, prepare, run
from .engine import Runner
from .models import Replay, valid_size
from .reader import ImageInfo, probe
from .stats import whole_stats
from .writer import check_output, tile_side, write_tiles

__all__ = ["THREADS_VARIABLE", "BAND_THREADS_VARIABLE", "connect", "file_outcomes", "banded_outcomes", "check_one_image", "band_spans",
           "BAND_PIXELS", "BAND_WINDOWS", "BAND_MAX_PIXELS",
           "CONNECT_SECONDS"]

CONNECT_SECONDS = 10   # to reach a scheduler, and for a first worker to join it
BAND_PIXELS = 32e6     # default band: about this many pixels (~100 MB decoded, ~70 MB of encoded tiles)...
BAND_WINDOWS = 8       # ...but at least this many window heights: the window row each band repeats costs 1/8 more
BAND_MAX_PIXELS = 64e6   # ...unless that is more pixels than this (~140 MB of tiles held by a worker and the client)

THREADS_VARIABLE = "URST_WORKER_THREADS"  # a worker's torch threads (Dask's nanny gives it OMP_NUM_THREADS=1)...
BAND_THREADS_VARIABLE = "URST_BAND_THREADS"  # ...and for bands, where windows give the same bytes with them
_setup_held: dict[str, Prepared] = {}  # in a worker process: the last job's set-up, by its set-up options
_windows_agree: dict[tuple[int, int], bool] = {}  # ...and whether its windows of a shape agree at both counts
_one_at_a_time = threading.Lock()  # a worker with several threads runs one urst task at a time: each takes every core


@contextmanager
def connect(scheduler: str | None, local_workers: int | None) -> Iterator:
    """A Dask client: of the scheduler at ``scheduler``, or of ``local_workers`` worker processes started here
    (each with a local run's threads) and closed on exit. One clear error when Dask is missing, the
    scheduler cannot be reached or no worker joins it."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise UrstError("--scheduler and --local-workers need Dask: pip install 'urst[cluster]'", EXIT_USAGE) from None
    logging.getLogger("distributed").setLevel(logging.ERROR)  # worker restarts are reported by urst, or not at all
    cluster = None
    try:
        if scheduler is not None:
            client = Client(scheduler, timeout=CONNECT_SECONDS)
        else:
            # as many threads each as a local run: the style's and the statistics' sums depend on the thread
            # count, and with the same count every worker's bytes are this machine's local bytes. Bands, which
            # all workers compute at once, take a share of the cores where their windows allow (_band_threads).
            # Batch files share the cores: OpenMP threads waiting for work must sleep, not spin on a core
            # another worker's threads need
            threads = torch.get_num_threads()
            env = {THREADS_VARIABLE: str(threads)}
            if local_workers > 1:
                env.update({BAND_THREADS_VARIABLE: str(max(1, threads // local_workers)), "OMP_WAIT_POLICY": "PASSIVE"})
            cluster = LocalCluster(n_workers=local_workers, threads_per_worker=1, processes=True,
                                   dashboard_address=":0", silence_logs=logging.CRITICAL, env=env)
            client = Client(cluster)
    except (OSError, TimeoutError, ValueError) as exc:  # ValueError: an address that is none
        where = f"the Dask scheduler at {scheduler}" if scheduler else "a local Dask cluster"
        raise UrstError(f"cannot reach {where}: {exc}", EXIT_FAILURE) from None
    try:
        try:
            client.wait_for_workers(1, timeout=CONNECT_SECONDS)
        except TimeoutError:
            raise UrstError(f"no Dask worker joined the scheduler at {client.scheduler.address} within "
                            f"{CONNECT_SECONDS} s", EXIT_FAILURE) from None
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _setup(job: Job) -> Prepared:
    """This worker process's set-up for ``job`` (model, device, style), made once; another job's replaces it."""
    key = repr(replace(job, input=Path(), output=replace(job.output, path=Path())))
    if key not in _setup_held:
        _setup_held.clear()  # a long-lived worker serving job after job holds one model, not all of them
        _windows_agree.clear()
        _setup_held[key] = prepare(job)
    return _setup_held[key]


def _band_threads(job: Job, prepared: Prepared, info: ImageInfo) -> int:
    """On a worker, in a task (running with THREADS_VARIABLE's count): torch threads for a band of ``info``'s
    image. BAND_THREADS_VARIABLE's count where the network's output for a window of the image's shape is the
    same with it (checked once per shape), else this task's count."""
    threads, band = torch.get_num_threads(), os.environ.get(BAND_THREADS_VARIABLE)
    if not band or int(band) == threads or prepared.device.type != "cpu":
        return threads
    runner, plan = prepared.for_image(job)
    cols, rows = plan.axes(valid_size(info.width, runner.model), valid_size(info.height, runner.model))
    shape = (rows.window, cols.window)
    if shape not in _windows_agree:
        _windows_agree[shape] = _same_output(runner, shape, (threads, int(band)))
    return int(band) if _windows_agree[shape] else threads


def _same_output(runner: Runner, shape: tuple[int, int], counts: tuple[int, int]) -> bool:
    """Whether a window of ``shape`` (noise, under its own fixed statistics) comes out of the network bit for bit
    the same with both torch thread counts, padded at the image's edges and inside it. A convolution that split
    its sums by thread would differ in many of its output bits; one check shows it for every window of the shape."""
    noise = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    stats = Replay(whole_stats(runner, noise).to(runner.device), runner.model)
    x = runner.to_tensor([noise])
    outputs = []
    try:
        for count in counts:
            torch.set_num_threads(count)
            outputs.append([runner(x, stats, inside) for inside in (False, True)])
    finally:
        torch.set_num_threads(counts[0])
    return all(torch.equal(a, b) for a, b in zip(*outputs))


def _task_options(client) -> dict:
    """Where tasks may run: on GPU workers only, one per GPU, when the cluster has any."""
    return {"resources": {"GPU": 1}} if _gpu_workers(client) else {}


def _gpu_workers(client) -> dict[str, dict]:
    workers = client.scheduler_info(n_workers=-1)["workers"]
    return {address: w for address, w in workers.items() if w.get("resources", {}).get("GPU")}


def _task_workers(client) -> dict[str, dict]:
    """The workers urst's tasks run on (address: Dask's worker info): the GPU workers, or all."""
    return _gpu_workers(client) or client.scheduler_info(n_workers=-1)["workers"]


class _Raised:
    """A task's UrstError, returned rather than raised: workers log raised errors as failed computations."""

    def __init__(self, error: UrstError):
        self.error = error


def _guarded(fn, *args):
    """On a worker: ``fn(*args)`` with THREADS_VARIABLE's torch threads, one urst task at a time in this process,
    its UrstError returned."""
    with _one_at_a_time:
        if os.environ.get(THREADS_VARIABLE):
            torch.set_num_threads(int(os.environ[THREADS_VARIABLE]))  # a band before it may have taken fewer
        try:
            return fn(*args)
        except UrstError as exc:
            return _Raised(exc)


def _submit(client, fn, *args, where: dict, key: str | None = None):
    return client.submit(_guarded, fn, *args, pure=False, key=key, **where)


def _result(future):
    """A task's value, its UrstError raised here; a task Dask gave up on (its workers kept dying) ends the
    run in one line."""
    from distributed import KilledWorker

    try:
        value = future.result()
    except KilledWorker as exc:
        raise UrstError(f"a Dask worker died each time it ran {exc.args[0]}; giving up", EXIT_FAILURE) from None
    if isinstance(value, _Raised):
        raise value.error
    return value


# -- a batch: one task per file ------------------------------------------------------------------------------

def _file_task(template: Job, run_: Run, options: BatchOptions) -> tuple[list[Event], FileDone | FileError]:
    """On a worker: one input as a local batch runs it, with the events it emitted (a set-up error is raised)."""
    index, item, info = run_
    events: list[Event] = []
    prepared = _setup(template)
    with tempfile.TemporaryDirectory(prefix="urst-") as workdir:
        outcome = attempt(template, item, info, index, replace(options, workdir=Path(workdir)), events.append,
                          partial(run, prepared=prepared))
    return events, outcome


def file_outcomes(client) -> Outcomes:
    """A batch's inputs as Dask tasks, all submitted at once; their events are emitted in input order, each
    file's when it is done (progress events arrive with them), so the events are those of a local batch."""

    def outcomes(template: Job, runs: list[Run], options: BatchOptions, emit: Emit) -> Iterator[FileDone | FileError]:
        sendable = replace(options, workdir=None, stdout=None)
        where, batch = _task_options(client), uuid.uuid4().hex[:8]
        futures = [_submit(client, _file_task, template, one, sendable, where=where, key=f"urst-file-{one[0]}-{batch}")
                   for one in runs]
        try:
            for future in futures:
                events, outcome = _result(future)
                future.release()
                for event in events:
                    emit(event)
                yield outcome
        finally:
            client.cancel(futures)

    return outcomes


# -- one image: bands of tile rows ----------------------------------------------------------------------------

def band_spans(job: Job, info: ImageInfo, band_rows: int | None, patch: int = 0,
               workers: int = 1) -> list[tuple[int, int]]:
    """The image's bands [top, bottom): ``band_rows`` rows each (a multiple of the TIFF tile side), by default
    about BAND_PIXELS pixels but at least BAND_WINDOWS windows of ``patch`` rows (the window row across each
    band's top is computed by both bands it straddles) within BAND_MAX_PIXELS, at least one tile row; the last
    band ends at the image's bottom. Default bands are made about equal (the last one is not left short) and
    as many as a multiple of ``workers``, so they keep every worker busy to the end where the image is tall
    enough."""
    tile = tile_side(job.output, info.width, info.height)
    if band_rows is None:
        rows = max(BAND_PIXELS / info.width, min(BAND_WINDOWS * patch, BAND_MAX_PIXELS / info.width))
        count = workers * -(-max(1, round(info.height / rows)) // workers)
        band_rows = tile * -(-info.height // (count * tile))
    elif band_rows < 1 or band_rows % tile:
        raise UrstError(f"--band-rows {band_rows}: must be a multiple of the TIFF tile side ({tile})", EXIT_USAGE)
    return [(top, min(top + band_rows, info.height)) for top in range(0, info.height, band_rows)]


def _stats_task(job: Job, info: ImageInfo):
    """On a worker: the image's statistics (sent to every worker), how they were made, and the patch count."""
    prepared = _setup(job)
    started = time.perf_counter()
    stats, mode = image_stats(job, prepared, info)
    runner, plan = prepared.for_image(job)
    cols, rows = plan.axes(valid_size(info.width, runner.model), valid_size(info.height, runner.model))
    return stats, mode, time.perf_counter() - started, len(cols) * len(rows), plan.patch


def _band_task(job: Job, info: ImageInfo, stats, top: int, bottom: int) -> list[bytes]:
    prepared = _setup(job)
    torch.set_num_threads(_band_threads(job, prepared, info))
    return band_tiles(job, prepared, info, stats[0], top, bottom)


def _warm(job: Job, info: ImageInfo) -> None:
    """On a worker: make its set-up for ``job`` and, where the style does not depend on the photo, find its
    threads for bands of ``info``'s image (its first band does it otherwise); send nothing of it back."""
    prepared = _setup(job)
    if prepared.runner is not None:
        _band_threads(job, prepared, info)


def _stylize_banded(client, band_rows: int | None, job: Job, progress: Progress, info: ImageInfo) -> Result:
    """One image: statistics on a worker, then its bands on all of them, one more than there are workers in
    flight; the client writes each band's tiles in order, so it holds about one band at a time."""
    started = time.perf_counter()
    check_output(job.output, job.input, info.width, info.height, job.overwrite)
    check_banded(job, info)
    band_spans(job, info, band_rows)  # a bad --band-rows is refused before any work
    where = _task_options(client)
    progress.stage("statistics")
    token = uuid.uuid4().hex[:8]  # task names the dashboard shows
    stats = _submit(client, _stats_task, job, info, where=where, key=f"urst-stats-{token}")
    _, mode, stats_seconds, patches, patch = _result(stats)
    client.replicate([stats])  # every worker gets them now, not each from the first at its first band
    workers = len(_task_workers(client))
    spans = band_spans(job, info, band_rows, patch, workers)
    progress.stage("stylizing")
    progress.start_patches(len(spans), info.pixels, 0, info.pixels)  # bands count as patches here
    in_flight = max(2, workers + 1)  # each worker computes a band while, at most, one finished band waits for the client
    pending: deque = deque()

    def tiles() -> Iterator[bytes]:
        waiting = iter(spans)

        def submit_next() -> None:
            for top, bottom in waiting:  # the next band, if any
                pending.append(_submit(client, _band_task, job, info, stats, top, bottom, where=where,
                                       key=f"urst-band-{top}-{token}"))
                return

        for _ in range(in_flight):
            submit_next()
        while pending:
            band = _result(pending[0])
            pending.popleft().release()  # the worker lets go of it
            submit_next()
            progress.advance(1)
            yield from band
            del band  # before the next band arrives: the client holds one

    try:
        write_tiles(tiles(), info.width, info.height, info.bands, job.output)
    finally:
        client.cancel(list(pending) + [stats])
    return Result(job.output.path, info.width, info.height, time.perf_counter() - started, mode, stats_seconds,
                  patches, patch_size=patch)


def check_one_image(template: Job, item: Item, band_rows: int | None) -> None:
    """Refuse, before any work, what one image in bands cannot do (an unreadable input is left to the batch)."""
    try:
        info = probe(item.source.path, template.max_pixels)
    except UrstError:
        return
    job = replace(template, input=item.source.path, output=replace(template.output, path=item.output))
    check_banded(job, info)
    band_spans(job, info, band_rows)


def banded_outcomes(client, band_rows: int | None = None) -> Outcomes:
    """One input (or a few, one after another) stylized in bands across the workers (see ``_stylize_banded``);
    every worker makes its set-up first (at once, as a local run makes its own before it starts the image), so
    set-up errors end the run as they do locally."""

    def outcomes(template: Job, runs: list[Run], options: BatchOptions, emit: Emit) -> Iterator[FileDone | FileError]:
        where = _task_options(client)
        for index, item, info in runs:
            # one task per worker (loosely: a worker lost meanwhile leaves its task to another), in rounds of
            # one worker per host: workers on one host share its cores (two at once took 1.3 s on 2 cores, in
            # turn 0.7 s)
            hosts: dict[str, list[str]] = {}
            for address, worker in _task_workers(client).items():
                hosts.setdefault(worker["host"], []).append(address)
            for round_ in zip_longest(*hosts.values()):
                for warm in [client.submit(_guarded, _warm, template, info, pure=False, workers=[address],
                                           allow_other_workers=True, **where) for address in round_ if address]:
                    _result(warm)
            yield attempt(template, item, info, index, options, emit,
                          partial(_stylize_banded, client, band_rows, info=info))

    return outcomes
