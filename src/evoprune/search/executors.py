"""How a batch of chromosomes is evaluated: the seam between the search and where work runs.

The unit of work is one chromosome on one fold (``problem.evaluate_fold``), sent in groups of
rows on one fold (``problem.evaluate_fold_batch(chromosomes, fold) -> list of fold scores``);
the problem's ``combine(chromosome, scores)`` turns a chromosome's fold scores (in fold order,
``problem.n_folds`` of them) into its objectives. That is how an executor that spreads work over
processes or machines splits a batch: any grouping of (row, fold) units gives the same objectives.
Problems without folds (a plain function) offer only ``evaluate(chromosomes)``.
:class:`LocalExecutor` hands the whole batch to the problem in this process and needs no extra
import.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

import numpy as np


class Problem(Protocol):
    """What a search evaluates: a (B, L) batch of 0/1 chromosomes -> B
    :class:`~evoprune.search.evaluator.Evaluation` s of ``n_obj`` minimised ``objectives``.

    A problem with folds (``n_folds`` not None: :class:`~evoprune.problem.HeadProblem`) also
    scores rows of one fold (``evaluate_fold_batch``) and ``combine`` s a chromosome's fold
    scores, so that an executor can spread (row, fold) units. ``fidelities`` are the levels a
    mask can be scored at (``evaluate_at``), cheapest first; a plain problem has only
    ``full``."""

    @property
    def objectives(self) -> tuple[str, ...]: ...
    @property
    def n_obj(self) -> int: ...
    @property
    def n_genes(self) -> int: ...
    @property
    def n_folds(self) -> int | None: ...
    @property
    def fidelities(self) -> tuple[str, ...]: ...

    def evaluate(self, chromosomes: np.ndarray) -> list: ...
    def evaluate_at(self, chromosomes: np.ndarray, fidelity: str) -> list: ...
    def evaluate_fold_batch(self, chromosomes: np.ndarray, fold: int) -> list: ...
    def combine(self, chromosome: np.ndarray, scores: list) -> object: ...


class Executor(Protocol):
    """Where a batch is evaluated. ``slots``: evaluations it runs at once (kept in flight by
    the asynchronous search); ``in_flight``: submitted and not yet awaited (None: not tracked
    here); ``report(wall_seconds)`` logs how busy its workers were at the end of a run."""

    @property
    def slots(self) -> int: ...
    @property
    def in_flight(self) -> int | None: ...

    def evaluate(self, problem, chromosomes: np.ndarray) -> list: ...
    def report(self, wall_seconds: float) -> None: ...


class AsyncExecutor(Executor, Protocol):
    """An executor that also takes chromosomes one at a time and returns each result as it
    arrives (the asynchronous search): ``submit`` one under a key, ``wait`` for any one."""

    def submit(self, problem, key: bytes, chromosome: np.ndarray) -> None: ...

    def wait(self) -> tuple: ...


class LocalExecutor:
    """The batch in this process, as one call to the problem; submitted chromosomes are
    evaluated one by one, in the order they were submitted, when a result is awaited."""

    slots = 1  # evaluations in flight in the asynchronous search
    in_flight: int | None = None  # not shown: one at a time, in this process

    def __init__(self) -> None:
        self._queue: deque = deque()

    def evaluate(self, problem, chromosomes: np.ndarray) -> list:
        return problem.evaluate(chromosomes)

    def report(self, wall_seconds: float) -> None:
        """Nothing to say about one process."""

    def submit(self, problem, key: bytes, chromosome: np.ndarray) -> None:
        self._queue.append((problem, key, chromosome))

    def wait(self) -> tuple:
        """(key, Evaluation) of the oldest submitted chromosome."""
        problem, key, chromosome = self._queue.popleft()
        return key, self.evaluate(problem, np.asarray(chromosome)[None])[0]
