"""Where a job's time goes: wall-clock seconds per pipeline stage, summed over the run."""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Callable, Iterator

__all__ = ["Stopwatch"]


class Stopwatch:
    """Sums the time spent inside ``with clock("stage"):`` blocks.

    ``sync`` (e.g. ``torch.cuda.synchronize``) runs before a block closes, so asynchronous
    device work is charged to the stage that queued it; leave it None outside profiling,
    where waiting for the device would only slow the pipeline down.
    """

    def __init__(self, sync: Callable[[], None] | None = None):
        self.seconds: dict[str, float] = defaultdict(float)
        self.sync = sync

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.sync is not None:
                self.sync()
            self.seconds[stage] += time.perf_counter() - start
