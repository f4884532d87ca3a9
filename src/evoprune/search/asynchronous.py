"""The asynchronous steady-state GA: ``slots`` evaluations in flight, each result inserted as it
arrives, a new child bred from the population as it is then.

This is not the paper's synchronous GA (which evaluates its children together and then replaces
the worst): with several workers the order in which results arrive decides the search's path.
That order is the history's order, so a resumed search replays it: the evaluator's ``known``
evaluations (an interrupted run's history, in order) are taken as arrivals in that order while
they match the chromosomes in flight, and only then does work go to the executor. The initial
population is evaluated as one batch (its order is the order it was bred in).
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

import numpy as np

from evoprune.search.evaluator import (
    DEFAULT_STOP,
    Algorithm,
    Evaluation,
    Evaluator,
    SearchResult,
    StoppingRule,
    stopping_rule,
)
from evoprune.search.fidelity import FULL

log = logging.getLogger(__name__)


class _Flight:
    """Chromosomes in flight (in the order they were bred) and where their results come from:
    the interrupted run's arrivals (replayed in order), its other known results, the executor."""

    def __init__(self, evaluator: Evaluator):
        self.evaluator = evaluator
        self.executor: Any = evaluator.executor  # an AsyncExecutor
        self.chromosomes: dict[bytes, np.ndarray] = {}
        self.known = {k: ev for (k, fid), ev in evaluator.known.items() if fid == FULL}
        self.replay = deque(k for k in self.known if (k, FULL) not in evaluator.memory)
        self.held: list[bytes] = []  # bred during the replay, not sent anywhere yet
        self.ready: deque[bytes] = deque()  # known results, arriving next

    def __len__(self) -> int:
        return len(self.chromosomes)

    def add(self, key: bytes, chromosome: np.ndarray) -> None:
        self.chromosomes[key] = chromosome
        self.held.append(key)
        if not self.replay:  # live: what was held goes first, in the order it was bred
            self._go_live()

    def _go_live(self) -> None:
        self.replay.clear()
        for key in self.held:
            self._send(key)
        self.held = []

    def _send(self, key: bytes) -> None:
        if key in self.known:
            self.ready.append(key)
        else:
            self.executor.submit(self.evaluator.problem, key, self.chromosomes[key])

    def next(self) -> tuple[np.ndarray, Evaluation]:
        """The next result to arrive, with its chromosome."""
        if self.replay and self.replay[0] in self.chromosomes:
            key = self.replay.popleft()
            self.held.remove(key)
            ev = self.known[key]
        else:
            if self.replay:
                log.warning(
                    "the resumed asynchronous search left the recorded order after %d "
                    "evaluations; it goes on from there",
                    self.evaluator.n_evaluated,
                )
            self._go_live()
            if self.ready:
                key = self.ready.popleft()
                ev = self.known[key]
            else:
                key, ev = self.executor.wait()
        return self.chromosomes.pop(key), ev


def run_async_search(
    algorithm: Algorithm,
    evaluator: Evaluator,
    slots: int,
    stop: StoppingRule | int = DEFAULT_STOP,
    *,
    max_stale_iterations: int | None = None,
) -> SearchResult:
    """Ask for children one by one, keep ``slots`` of them evaluating, tell each result as it
    arrives; until the stopping rule says so: the budget is spent, or ``max_stale_iterations``
    children in a row were evaluated already (the population has converged)."""
    rule = stopping_rule(stop if max_stale_iterations is None else max_stale_iterations)
    problem = evaluator.problem
    algorithm.setup(problem.n_genes, problem.n_obj)
    initial = algorithm.ask()
    algorithm.tell(initial, evaluator.evaluate(initial, algorithm.iteration))
    flight = _Flight(evaluator)
    bred: deque[np.ndarray] = deque()
    stale = 0
    while True:
        while (
            not rule.converged(stale)
            and len(flight) < slots
            and evaluator.n_evaluated + len(flight) < evaluator.budget
        ):
            if not bred:
                bred.extend(algorithm.ask())
            child = bred.popleft()
            key = child.tobytes()
            known = evaluator.memory.get((key, FULL))
            if known is not None or key in flight.chromosomes:
                evaluator.hits += 1
                stale += 1
                if known is not None:  # as in the synchronous GA: told its known value
                    algorithm.tell(child[None], known.F[None])
                continue
            stale = 0
            flight.add(key, child)
        if not len(flight):
            break
        child, ev = flight.next()
        evaluator.record(child, ev, algorithm.iteration)
        algorithm.tell(child[None], np.asarray(ev.F, dtype=float)[None])
    stopped = rule.converged(stale)
    if stopped:
        log.warning(
            "search stopped after %d children in a row that were evaluated already; the "
            "population has converged (%d of %d evaluations used)",
            rule.max_stale_iterations,
            evaluator.n_evaluated,
            evaluator.budget,
        )
    return evaluator.result(algorithm.iteration, stopped)
