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


class Executor(Protocol):
    def evaluate(self, problem, chromosomes: np.ndarray) -> list: ...


class AsyncExecutor(Executor, Protocol):
    """An executor that also takes chromosomes one at a time and returns each result as it
    arrives (the asynchronous search): ``submit`` one under a key, ``wait`` for any one."""

    def submit(self, problem, key: bytes, chromosome: np.ndarray) -> None: ...

    def wait(self) -> tuple: ...


class LocalExecutor:
    """The batch in this process, as one call to the problem; submitted chromosomes are
    evaluated one by one, in the order they were submitted, when a result is awaited."""

    slots = 1  # evaluations in flight in the asynchronous search

    def __init__(self) -> None:
        self._queue: deque = deque()

    def evaluate(self, problem, chromosomes: np.ndarray) -> list:
        return problem.evaluate(chromosomes)

    def submit(self, problem, key: bytes, chromosome: np.ndarray) -> None:
        self._queue.append((problem, key, chromosome))

    def wait(self) -> tuple:
        """(key, Evaluation) of the oldest submitted chromosome."""
        problem, key, chromosome = self._queue.popleft()
        return key, self.evaluate(problem, np.asarray(chromosome)[None])[0]
