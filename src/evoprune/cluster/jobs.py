"""Jobs spread over Ray: a run's evaluations (:func:`executor_for`), independent pieces of work
such as the runs of a comparison (:func:`parallel_map`) and feature extraction sharded over
images (:func:`feature_compute`)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from evoprune.cluster.session import cluster_cpus, ray_address, ray_session, uses_ray
from evoprune.cluster.workers import MAX_RETRIES, RayExecutor, ThreadsExecutor, torch_threads
from evoprune.settings import ClusterSettings

log = logging.getLogger(__name__)


def _settings(cluster: ClusterSettings) -> tuple[int, str | None, int | None]:
    """workers, Ray address and torch threads per evaluation (None: this process's threads
    in this process, 1 on a Ray worker)."""
    threads = cluster.threads_per_worker
    return (
        int(cluster.workers),
        ray_address(cluster.ray_address),
        None if threads is None else int(threads),
    )


@contextmanager
def executor_for(cluster: ClusterSettings) -> Iterator[Any]:
    """The executor of a run's cluster settings (``workers``, ``ray_address``,
    ``threads_per_worker``): this process with fixed threads for one worker, else Ray tasks
    (Ray started or joined for the block). At the end, how busy each worker was is logged."""
    workers, address, threads = _settings(cluster)
    t0 = time.perf_counter()
    if not uses_ray(workers, address):
        executor: Any = ThreadsExecutor(threads)
        yield executor
        return
    threads = threads or 1
    with ray_session(workers, address, threads) as ray:
        slots = workers if workers > 1 else max(1, cluster_cpus(ray) // threads)
        executor = RayExecutor(ray, slots, threads)
        try:
            yield executor
        finally:
            executor.report(time.perf_counter() - t0)


def _call(fn: Callable, shared: Any, item: Any, threads: int) -> tuple[Any, str, float]:
    """One item in a Ray worker, with ``threads`` torch threads."""
    import os

    import ray

    from evoprune.cluster import session

    session.IN_WORKER = True
    t0 = time.perf_counter()
    with torch_threads(threads):
        out = fn(shared, item)
    return out, f"{ray.util.get_node_ip_address()}:{os.getpid()}", time.perf_counter() - t0


def parallel_map(
    fn: Callable[[Any, Any], Any],
    items: Sequence[Any],
    shared: Any,
    *,
    workers: int,
    address: str | None = None,
    threads: int | None = None,
) -> Iterator[tuple[int, Any]]:
    """``(i, fn(shared, items[i]))`` as each finishes, over Ray workers when ``workers`` > 1 or
    a cluster is given, else here in order. ``shared`` (the features) goes to the object store
    once; ``fn`` must be a module-level function. Tasks of dead workers are run again.
    ``threads``: torch threads per item (None: this process's here, 1 on a worker)."""
    if not uses_ray(workers, address):
        for i, item in enumerate(items):
            with torch_threads(threads):
                yield i, fn(shared, item)
        return
    threads = threads or 1
    with ray_session(workers, address, threads) as ray:
        task = ray.remote(num_cpus=threads, max_retries=MAX_RETRIES)(_call)
        ref = ray.put(shared)
        pending = {task.remote(fn, ref, item, threads): i for i, item in enumerate(items)}
        t0, busy = time.perf_counter(), dict[str, float]()
        while pending:
            (done,), _ = ray.wait(list(pending), num_returns=1)
            out, worker, seconds = ray.get(done)
            busy[worker] = busy.get(worker, 0.0) + seconds
            yield pending.pop(done), out
        wall = time.perf_counter() - t0
        for worker, seconds in sorted(busy.items()):
            log.info("worker %s: busy %.0f%% of %.1f s", worker, 100 * seconds / wall, wall)


def _feature_rows(backbone_name: str, paths: list[str]) -> np.ndarray:
    from evoprune.backbones import get_backbone
    from evoprune.features import compute_rows

    return compute_rows(get_backbone(backbone_name), paths)


def _shard_rows(_shared: None, job: tuple[str, list[str]]) -> np.ndarray:
    return _feature_rows(*job)


def feature_compute(cluster: ClusterSettings) -> Callable | None:
    """For a run with Ray: a function (backbone, paths) -> features that shards the images over
    the workers (about two shards each) and stacks the rows in order; None without Ray (the
    features are computed here as before)."""
    workers, address, threads = _settings(cluster)
    if not uses_ray(workers, address):
        return None

    def compute(backbone, paths: Sequence[str]) -> np.ndarray:
        paths = list(paths)
        size = max(1, math.ceil(len(paths) / (2 * workers)))
        shards = [(backbone.name, paths[i : i + size]) for i in range(0, len(paths), size)]
        parts: dict[int, np.ndarray] = {}
        for i, rows in parallel_map(
            _shard_rows, shards, None, workers=workers, address=address, threads=threads
        ):
            parts[i] = rows
        return np.concatenate([parts[i] for i in range(len(shards))]).astype(np.float32)

    return compute
