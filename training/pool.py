"""The worker pool the corpus generation and the encoding share."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.pool import Pool


@contextmanager
def worker_pool(workers: int) -> Iterator[Pool | None]:
    """A pool of `workers` forked processes (they inherit the parent's data), or None when one
    process will do or the platform cannot fork (the work then runs in this process)."""
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        yield None
        return
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        yield pool
