"""Executors that run evaluations with a fixed number of torch threads: in this process
(:class:`ThreadsExecutor`) or as Ray tasks (:class:`RayExecutor`).

A batch is split into (row, fold) units, the units into about two groups per worker, each
group one task of ``problem.evaluate_fold_batch`` calls (rows of one fold together); the
scores come back per unit and each row's objectives are combined in the driver. A row's score
does not depend on the rows it was sent with, so any grouping, any number of workers and any
retry give the same objectives.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from evoprune.progress import report_work
from evoprune.search.executors import LocalExecutor

log = logging.getLogger(__name__)

#: Times Ray runs a task again when its worker process or node dies.
MAX_RETRIES = 3


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Torch uses ``n`` threads inside the block (then as before); None keeps torch's setting
    (in a command: the cores other work leaves free, :func:`evoprune.devices.share_cores`)."""
    import torch

    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


class ThreadsExecutor(LocalExecutor):
    """In this process, every evaluation with ``threads`` torch threads (None: torch's)."""

    def __init__(self, threads: int | None = None):
        super().__init__()
        self.threads = None if threads is None else int(threads)

    def evaluate(self, problem, chromosomes: np.ndarray) -> list:
        with torch_threads(self.threads):
            return super().evaluate(problem, chromosomes)


# --- what a Ray task runs (in the worker process) ---------------------------------------------

_PROBLEMS: dict[str, object] = {}  # the problems this worker has fetched, by object id


def _problem(box: list):
    """The problem of the object ref in ``box`` (boxed so that Ray does not fetch it for every
    task): fetched once per worker and copied so that its arrays are writable."""
    ref = box[0]
    key = ref.hex()
    if key not in _PROBLEMS:
        import ray

        _PROBLEMS.clear()  # one run's problem at a time
        _PROBLEMS[key] = copy.deepcopy(ray.get(ref))
    return _PROBLEMS[key]


def run_units(box: list, groups: list, threads: int) -> tuple[list, str, float]:
    """Evaluate ``groups``: (fold, rows) pairs, fold None for a problem without folds. Returns
    the results per group, this worker's name and the seconds spent."""
    import ray

    from evoprune.cluster import session

    session.IN_WORKER = True
    problem = _problem(box)  # fetching it is transfer, not evaluation
    t0 = time.perf_counter()
    with torch_threads(threads):
        out = [
            problem.evaluate(rows) if fold is None else problem.evaluate_fold_batch(rows, fold)
            for fold, rows in groups
        ]
    worker = f"{ray.util.get_node_ip_address()}:{os.getpid()}"
    return out, worker, time.perf_counter() - t0


# --- the driver side --------------------------------------------------------------------------


def _units(problem, n_rows: int) -> list[tuple[int | None, int]]:
    """(fold, row) of every unit of a batch, fold-major (rows of a fold stay together)."""
    folds = problem.n_folds
    if folds is None:
        return [(None, r) for r in range(n_rows)]
    return [(f, r) for f in range(int(folds)) for r in range(n_rows)]


def _groups(units: list, chromosomes: np.ndarray) -> list:
    """Consecutive units of one fold as (fold, rows, row indices)."""
    out: list = []
    for fold, row in units:
        if out and out[-1][0] == fold:
            out[-1][2].append(row)
        else:
            out.append((fold, None, [row]))
    return [(fold, chromosomes[rows], rows) for fold, _, rows in out]


class RayExecutor:
    """Evaluations as Ray tasks on ``slots`` workers, each with ``threads`` torch threads.

    The problem is put in the object store once (per problem object); tasks whose worker dies
    are run again (``max_retries``). ``busy`` adds up the seconds each worker spent evaluating.
    """

    def __init__(self, ray, slots: int, threads: int = 1, max_retries: int = MAX_RETRIES):
        self.ray = ray
        self.slots = max(1, int(slots))
        self.threads = int(threads)
        self.task = ray.remote(num_cpus=self.threads, max_retries=int(max_retries))(run_units)
        self._refs: dict[int, tuple[object, object]] = {}
        self.busy: dict[str, float] = {}
        self.seconds = 0.0  # time the driver spent waiting for evaluations
        self.tasks = 0
        self._pending: dict = {}  # task ref -> (key, fold)
        self._scores: dict[bytes, dict] = {}  # key -> {fold: score}
        self._submitted: dict[bytes, tuple[Any, np.ndarray]] = {}

    def _box(self, problem) -> list:
        """The problem's object ref, boxed; put once per problem object."""
        held = self._refs.get(id(problem))
        if held is None or held[0] is not problem:
            self._refs = {id(problem): (problem, self.ray.put(problem))}
            held = self._refs[id(problem)]
        return [held[1]]

    def _launch(self, problem, groups: list):
        self.tasks += 1
        return self.task.remote(self._box(problem), groups, self.threads)

    def _collect(self, ref) -> list:
        out, worker, seconds = self.ray.get(ref)
        self.busy[worker] = self.busy.get(worker, 0.0) + seconds
        return out

    @property
    def in_flight(self) -> int:
        return len(self._submitted)

    def evaluate(self, problem, chromosomes: np.ndarray) -> list:
        """The batch's Evaluations, in row order."""
        t0 = time.perf_counter()
        try:
            return self._evaluate(problem, chromosomes)
        finally:
            self.seconds += time.perf_counter() - t0

    def _evaluate(self, problem, chromosomes: np.ndarray) -> list:
        chromosomes = np.atleast_2d(np.asarray(chromosomes, dtype=np.uint8))
        units = _units(problem, len(chromosomes))
        size = math.ceil(len(units) / (2 * self.slots))
        chunks = [_groups(units[i : i + size], chromosomes) for i in range(0, len(units), size)]
        refs = [self._launch(problem, [(f, rows) for f, rows, _ in c]) for c in chunks]
        if problem.n_folds is None:
            out = []
            for ref in refs:
                got = [ev for group in self._collect(ref) for ev in group]
                report_work(len(got))
                out += got
            return out
        scores: list[dict] = [{} for _ in chromosomes]
        for chunk, ref in zip(chunks, refs):
            for (fold, _, rows), got in zip(chunk, self._collect(ref)):
                for row, score in zip(rows, got):
                    scores[row][fold] = score
                report_work(len(rows) / problem.n_folds)
        return [
            problem.combine(c, [s[f] for f in range(problem.n_folds)])
            for c, s in zip(chromosomes, scores)
        ]

    def submit(self, problem, key: bytes, chromosome: np.ndarray) -> None:
        """One chromosome, one task per fold (the asynchronous search)."""
        rows = np.asarray(chromosome, dtype=np.uint8)[None]
        folds = problem.n_folds
        self._submitted[key] = (problem, rows[0])
        self._scores[key] = {}
        for fold in [None] if folds is None else range(int(folds)):
            self._pending[self._launch(problem, [(fold, rows)])] = (key, fold)

    def wait(self) -> tuple:
        """(key, Evaluation) of the first submitted chromosome whose folds are all done."""
        t0 = time.perf_counter()
        try:
            return self._wait()
        finally:
            self.seconds += time.perf_counter() - t0

    def _wait(self) -> tuple:
        while True:
            (ref,), _ = self.ray.wait(list(self._pending), num_returns=1)
            key, fold = self._pending.pop(ref)
            (got,) = self._collect(ref)
            problem, chromosome = self._submitted[key]
            if fold is None:
                del self._submitted[key], self._scores[key]
                return key, got[0]
            self._scores[key][fold] = got[0]
            if len(self._scores[key]) == problem.n_folds:
                scores = self._scores.pop(key)
                del self._submitted[key]
                return key, problem.combine(chromosome, [scores[f] for f in range(len(scores))])

    def report(self, wall_seconds: float) -> None:
        """One log line per worker: the fraction of the wall time it spent evaluating."""
        for worker, seconds in sorted(self.busy.items()):
            log.info(
                "worker %s: busy %.0f%% of %.1f s (%.1f s evaluating)",
                worker,
                100.0 * seconds / max(wall_seconds, 1e-9),
                wall_seconds,
                seconds,
            )
