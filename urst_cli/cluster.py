"""urst on a Dask cluster (the optional extra ``urst[cluster]``; nothing else imports Dask).

    connect(scheduler, local_workers) -> Client   a running scheduler, or a LocalCluster started and closed here
    file_outcomes(client)                         a batch: one task per file (batch.Outcomes)
    banded_outcomes(client, band_rows)            one image: bands of tile rows on the workers, written here

Workers read inputs by path (a shared file system) and keep one set-up (model, style) per process, made by
the first task that needs it, never pickled from the client. Where workers declare a ``GPU`` resource
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
from pathlib import Path
from typing import Iterator

from .batch import BatchOptions, Outcomes, Run, attempt
from .errors import EXIT_FAILURE, EXIT_USAGE, UrstError
from .events import Emit, Event, FileDone, FileError
from .job import Job, Prepared, Progress, Result, band_tiles, check_banded, image_stats, prepare, run
from .models import valid_size
from .reader import ImageInfo
from .writer import check_output, tile_side, write_tiles

__all__ = ["connect", "file_outcomes", "banded_outcomes", "band_spans", "BAND_PIXELS", "CONNECT_SECONDS"]

CONNECT_SECONDS = 10   # to reach a scheduler, and for a first worker to join it
BAND_PIXELS = 32e6     # default band: about this many pixels (~100 MB decoded, ~70 MB of encoded tiles)

_setups: dict[str, Prepared] = {}  # per worker process, by the job's set-up options
_one_at_a_time = threading.Lock()  # a worker with several threads runs one urst task at a time: each takes every core


@contextmanager
def connect(scheduler: str | None, local_workers: int | None) -> Iterator:
    """A Dask client: of the scheduler at ``scheduler``, or of ``local_workers`` worker processes started here
    (each with its share of the cores) and closed on exit. One clear error when Dask is missing, the
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
            threads = max(1, (os.cpu_count() or 1) // local_workers)
            cluster = LocalCluster(n_workers=local_workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=logging.ERROR,
                                   env={"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)})
            client = Client(cluster)
    except (OSError, TimeoutError) as exc:
        where = f"the Dask scheduler at {scheduler}" if scheduler else "a local Dask cluster"
        raise UrstError(f"cannot reach {where}: {exc}", EXIT_FAILURE) from None
    try:
        try:
            client.wait_for_workers(1, timeout=CONNECT_SECONDS)
        except TimeoutError:
            raise UrstError(f"no Dask worker joined the scheduler at {scheduler} within {CONNECT_SECONDS} s",
                            EXIT_FAILURE) from None
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _setup(job: Job) -> Prepared:
    """This worker process's set-up for ``job`` (made once: model, device, style)."""
    key = repr(replace(job, input=Path(), output=replace(job.output, path=Path())))
    if key not in _setups:
        _setups[key] = prepare(job)
    return _setups[key]


def _task_options(client) -> dict:
    """Where tasks may run: on GPU workers only, one per GPU, when the cluster has any."""
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    return {"resources": {"GPU": 1}} if any(w.get("resources", {}).get("GPU") for w in workers) else {}


def _result(future):
    """A task's value; a task Dask gave up on (its workers kept dying) ends the run in one line."""
    from distributed import KilledWorker

    try:
        return future.result()
    except KilledWorker as exc:
        raise UrstError(f"a Dask worker died each time it ran {exc.args[0]}; giving up", EXIT_FAILURE) from None


# -- a batch: one task per file ------------------------------------------------------------------------------

def _file_task(template: Job, run_: Run, options: BatchOptions) -> tuple[list[Event], FileDone | FileError | UrstError]:
    """On a worker: one input as a local batch runs it, with the events it emitted; a set-up error is returned."""
    index, item, info = run_
    events: list[Event] = []
    with _one_at_a_time, tempfile.TemporaryDirectory(prefix="urst-") as workdir:
        try:
            prepared = _setup(template)
        except UrstError as exc:
            return events, exc
        outcome = attempt(template, item, info, index, replace(options, workdir=Path(workdir)), events.append,
                          partial(run, prepared=prepared))
    return events, outcome


def file_outcomes(client) -> Outcomes:
    """A batch's inputs as Dask tasks, all submitted at once; their events are emitted in input order, each
    file's when it is done (progress events arrive with them), so the events are those of a local batch."""

    def outcomes(template: Job, runs: list[Run], options: BatchOptions, emit: Emit) -> Iterator[FileDone | FileError]:
        sendable = replace(options, workdir=None, stdout=None)
        where, batch = _task_options(client), uuid.uuid4().hex[:8]
        futures = [client.submit(_file_task, template, one, sendable, key=f"urst-file-{one[0]}-{batch}", **where)
                   for one in runs]
        try:
            for future in futures:
                events, outcome = _result(future)
                future.release()
                if isinstance(outcome, UrstError):
                    raise outcome
                for event in events:
                    emit(event)
                yield outcome
        finally:
            client.cancel(futures)

    return outcomes


# -- one image: bands of tile rows ----------------------------------------------------------------------------

def band_spans(job: Job, info: ImageInfo, band_rows: int | None) -> list[tuple[int, int]]:
    """The image's bands [top, bottom): ``band_rows`` rows each (a multiple of the TIFF tile side), by default
    about BAND_PIXELS pixels, at least one tile row; the last ends at the image's bottom."""
    tile = tile_side(job.output, info.width, info.height)
    if band_rows is None:
        band_rows = tile * max(1, round(BAND_PIXELS / info.width / tile))
    elif band_rows < 1 or band_rows % tile:
        raise UrstError(f"--band-rows {band_rows}: must be a multiple of the TIFF tile side ({tile})", EXIT_USAGE)
    return [(top, min(top + band_rows, info.height)) for top in range(0, info.height, band_rows)]


def _stats_task(job: Job, info: ImageInfo):
    """On a worker: the image's statistics (sent to every worker), how they were made, and the patch count."""
    with _one_at_a_time:
        prepared = _setup(job)
        started = time.perf_counter()
        stats, mode = image_stats(job, prepared, info)
        runner, plan = prepared.for_image(job)
        cols, rows = plan.axes(valid_size(info.width, runner.model), valid_size(info.height, runner.model))
        return stats, mode, time.perf_counter() - started, len(cols) * len(rows), plan.patch


def _band_task(job: Job, info: ImageInfo, stats, top: int, bottom: int) -> list[bytes]:
    with _one_at_a_time:
        return band_tiles(job, _setup(job), info, stats[0], top, bottom)


def _setup_task(job: Job) -> UrstError | None:
    with _one_at_a_time:
        try:
            _setup(job)
        except UrstError as exc:
            return exc
        return None


def _stylize_banded(client, band_rows: int | None, job: Job, progress: Progress, info: ImageInfo) -> Result:
    """One image: statistics on a worker, then its bands on all of them, a bounded number in flight; the
    client writes each band's tiles in order, so it holds about one band at a time."""
    started = time.perf_counter()
    check_output(job.output, job.input, info.width, info.height, job.overwrite)
    check_banded(job, info)
    spans = band_spans(job, info, band_rows)
    where = _task_options(client)
    progress.stage("statistics")
    stats = client.submit(_stats_task, job, info, pure=False, **where)
    _, mode, stats_seconds, patches, patch = _result(stats)
    client.replicate([stats])  # every worker gets them now, not each from the first at its first band
    progress.stage("stylizing")
    progress.start_patches(len(spans))
    in_flight = max(2, 2 * len(client.scheduler_info(n_workers=-1)["workers"]))
    pending: deque = deque()

    def tiles() -> Iterator[bytes]:
        waiting = iter(spans)
        for top, bottom in waiting:
            pending.append(client.submit(_band_task, job, info, stats, top, bottom, pure=False, **where))
            if len(pending) == in_flight:
                break
        while pending:
            band = _result(pending[0])
            pending.popleft().release()  # the worker lets go of it
            for top, bottom in waiting:  # the next band, if any
                pending.append(client.submit(_band_task, job, info, stats, top, bottom, pure=False, **where))
                break
            progress.advance(1)
            yield from band

    try:
        write_tiles(tiles(), info.width, info.height, info.bands, job.output)
    finally:
        client.cancel(list(pending) + [stats])
    return Result(job.output.path, info.width, info.height, time.perf_counter() - started, mode, stats_seconds,
                  patches, patch_size=patch)


def banded_outcomes(client, band_rows: int | None = None) -> Outcomes:
    """One input (or a few, one after another) stylized in bands across the workers (see ``_stylize_banded``);
    the set-up is tried on a worker first, so its errors end the run as they do locally."""

    def outcomes(template: Job, runs: list[Run], options: BatchOptions, emit: Emit) -> Iterator[FileDone | FileError]:
        where = _task_options(client)
        for index, item, info in runs:
            error = _result(client.submit(_setup_task, template, pure=False, **where))
            if error is not None:
                raise error
            yield attempt(template, item, info, index, options, emit,
                          partial(_stylize_banded, client, band_rows, info=info))

    return outcomes
