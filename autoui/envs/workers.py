"""Shard jobs on browser-owning worker processes (used by `autoui collect`).

Each worker process keeps one browser for all the shards it runs (`worker_resource`); the
parent runs the jobs in-process for one worker, or on a spawn pool (Playwright cannot cross
a fork). Shards are written whole and renamed, so an interrupted run loses only the shards
in flight: on an error the pool is terminated rather than drained, and a rerun resumes.
"""
from __future__ import annotations

import multiprocessing as mp
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

_RESOURCES: dict[str, tuple[Any, Any]] = {}  # key -> (resource, its multiprocessing Finalize)


def worker_resource(key: str, make: Callable[[], Any], close: Callable[[Any], None]) -> Any:
    """This process's `key` resource, made on first use. close(resource) runs at process exit
    (pool workers skip atexit; a multiprocessing Finalize still runs there) or when the
    in-process run of `job_results` ends."""
    if key not in _RESOURCES:
        from multiprocessing.util import Finalize

        obj = make()
        _RESOURCES[key] = (obj, Finalize(None, close, args=(obj,), exitpriority=10))
    return _RESOURCES[key][0]


def _release_resources() -> None:
    while _RESOURCES:
        _, (_, finalize) = _RESOURCES.popitem()
        finalize()  # runs close once and unregisters it from the exit hooks


@contextmanager
def job_results(fn: Callable[[Any], Any], jobs: Sequence[Any], workers: int) -> Iterator[Iterator[Any]]:
    """Results of fn(job) for each job, in completion order: in this process for one worker or
    one job (closing the resources the jobs opened here when done), else on a spawn pool."""
    if workers <= 1 or len(jobs) <= 1:
        try:
            yield map(fn, jobs)
        finally:
            _release_resources()
        return
    pool = mp.get_context("spawn").Pool(min(workers, len(jobs)))
    try:
        yield pool.imap_unordered(fn, jobs)
    except BaseException:
        pool.terminate()  # finished shards are on disk; a rerun resumes after them
        raise
    finally:
        pool.close()
        pool.join()
