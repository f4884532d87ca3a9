"""How a batch of chromosomes is evaluated: the seam between the search and where work runs.

The unit of work is one chromosome on one fold (``problem.evaluate_fold``); the problem's
``combine`` turns a chromosome's fold scores into its objectives, which is how an executor that
spreads work over processes or machines splits a batch. :class:`LocalExecutor` hands the whole
batch to the problem in this process and needs no extra import.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Executor(Protocol):
    def evaluate(self, problem, chromosomes: np.ndarray) -> list: ...


class LocalExecutor:
    """The batch in this process, as one call to the problem."""

    def evaluate(self, problem, chromosomes: np.ndarray) -> list:
        return problem.evaluate(chromosomes)
