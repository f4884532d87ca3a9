"""What every search algorithm shares: one evaluator and the ask/tell loop.

The :class:`Evaluator` owns memory of evaluated chromosomes with all their objectives (a repeat
spends no budget), the budget, one :class:`EvaluationRecord` per evaluation, resume (objectives
known from an interrupted run are reused instead of retrained) and callbacks. Algorithms only
``ask`` for chromosomes and are ``tell``-ed their objectives (:func:`run_search`). The search
knows nothing about images, heads or torch: it sees a problem with ``n_genes``, ``objectives``
and an executor that turns a batch of chromosomes into :class:`Evaluation` s.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from evoprune.errors import EvoPruneError
from evoprune.search.executors import Executor, LocalExecutor, Problem
from evoprune.search.fidelity import BUDGET_OF, FULL, SHARED
from evoprune.search.operators import rank_key

log = logging.getLogger(__name__)


@dataclass
class Evaluation:
    """What one chromosome scored: minimised objectives and the natural values behind them."""

    F: np.ndarray  # (M,) minimised, in the order of the problem's objectives
    accuracy: float  # mean accuracy over the folds (the fitness)
    auroc: float | None = None  # mean OOD AUROC over the folds, when ood is an objective


@dataclass
class EvaluationRecord:
    """One evaluation that used budget (1-based ``index``), with the best so far by fitness.

    ``fitness`` is the accuracy on the fitness split; ``auroc`` (OOD) and ``hypervolume`` (of
    every head evaluated so far, multi-objective searches) are None when not measured.
    ``fidelity`` says what scored it (:mod:`evoprune.search.fidelity`: ``full`` training on
    every fold, ``fold`` on one, ``shared`` a forward pass of a shared head); the best so far
    and the hypervolume are over the rows of the same fidelity.
    """

    index: int
    iteration: int
    fitness: float
    active_genes: int
    active_fraction: float
    best_fitness: float
    best_active_fraction: float
    chromosome: np.ndarray | None = field(repr=False, compare=False, default=None)
    auroc: float | None = None
    hypervolume: float | None = None
    fidelity: str = FULL

    def as_row(self) -> dict:
        """The record without its chromosome and without values that were not measured."""
        return {k: v for k, v in self.__dict__.items() if k != "chromosome" and v is not None}

    def mask(self) -> np.ndarray:
        """The chromosome, which every record of a search has; only a history read without
        its gene count lacks it."""
        if self.chromosome is None:
            raise EvoPruneError(
                f"evaluation {self.index} was read without its chromosome "
                "(read the history with its gene count)"
            )
        return self.chromosome


@dataclass
class SearchResult:
    """The outcome of :func:`run_search`: best head by fitness, every evaluation, counters.

    ``fidelity`` is the level the result rests on: ``best`` and :meth:`rows` are of that
    fidelity; ``history`` and ``F`` hold every row of every fidelity, in order.
    ``evaluations`` counts full trainings (a one-fold rung included), ``shared_evaluations``
    forward passes of a shared head."""

    best: np.ndarray
    best_fitness: float
    history: list[EvaluationRecord]
    evaluations: int
    iterations: int
    memory_hits: int
    objectives: tuple[str, ...] = ("accuracy",)
    F: np.ndarray | None = None  # (len(history), M) minimised objectives, in history order
    stopped_early: bool = False
    fidelity: str = FULL
    shared_evaluations: int = 0

    def rows(self) -> list[int]:
        """History positions of the rows of the result's fidelity."""
        return [i for i, r in enumerate(self.history) if r.fidelity == self.fidelity]


class Algorithm(Protocol):
    """An ask/tell search algorithm over binary chromosomes (objectives are minimised)."""

    iteration: int

    def setup(self, n_genes: int, n_obj: int) -> None: ...

    def ask(self) -> np.ndarray: ...

    def tell(self, chromosomes: np.ndarray, F: np.ndarray) -> None: ...


class Evaluator:
    """Memory, budgets, history, resume and callbacks for one search.

    Memory is keyed by (chromosome, fidelity): a mask scored by a shared head is trained when
    promoted, and a repeat at the same fidelity costs nothing. ``budget`` counts full
    trainings, ``shared_budget`` shared evaluations; :attr:`fidelity` is the level
    :meth:`evaluate` scores at unless told otherwise (the multi-fidelity search switches it).
    ``known`` maps chromosome bytes (full fidelity) or (bytes, fidelity) to
    :class:`Evaluation` s of an interrupted run of the same configuration: they are recorded
    (and use budget) exactly as when first evaluated, without training again, so a resumed
    search retraces its path. ``callbacks`` are called with each new :class:`EvaluationRecord`.
    """

    def __init__(
        self,
        problem: Problem,
        budget: int,
        *,
        shared_budget: int = 0,
        executor: Executor | None = None,
        known: dict | None = None,
        callbacks: Iterable[Callable[[EvaluationRecord], None]] = (),
    ):
        self.problem = problem
        self.budgets = {FULL: int(budget), SHARED: int(shared_budget)}
        self.used = {FULL: 0, SHARED: 0}
        self.fidelity = FULL
        self.executor = executor or LocalExecutor()
        self.known: dict[tuple[bytes, str], Evaluation] = {
            (k if isinstance(k, tuple) else (k, FULL)): v for k, v in (known or {}).items()
        }
        self.callbacks = list(callbacks)
        self.memory: dict[tuple[bytes, str], Evaluation] = {}
        self.history: list[EvaluationRecord] = []
        self.F: list[np.ndarray] = []
        self.hits = 0
        self._best: dict[str, int] = {}  # fidelity -> history position of its best row
        self._front_at: dict[str, np.ndarray] = {}  # fidelity -> its non-dominated F rows
        if problem.n_obj > 1:
            from evoprune.pareto import default_ref_point

            self._ref = default_ref_point(problem.n_obj)

    @property
    def budget(self) -> int:
        """The budget that evaluations at :attr:`fidelity` spend."""
        return self.budgets[BUDGET_OF[self.fidelity]]

    @property
    def n_evaluated(self) -> int:
        """Evaluations spent of :attr:`budget`."""
        return self.used[BUDGET_OF[self.fidelity]]

    @property
    def exhausted(self) -> bool:
        return self.n_evaluated >= self.budget

    def evaluate(
        self, chromosomes: np.ndarray, iteration: int, fidelity: str | None = None
    ) -> np.ndarray:
        """(B, M) minimised objectives of each row at ``fidelity`` (default :attr:`fidelity`),
        from memory where known; new rows use budget, in order, while it lasts (NaN rows for
        those that did not fit)."""
        fid = self.fidelity if fidelity is None else fidelity
        kind = BUDGET_OF[fid]
        chromosomes = np.asarray(chromosomes, dtype=np.uint8)
        todo: list[int] = []
        seen: set[bytes] = set()
        for i, c in enumerate(chromosomes):
            key = c.tobytes()
            if (key, fid) in self.memory or key in seen:
                self.hits += 1
            elif self.used[kind] + len(seen) < self.budgets[kind]:
                seen.add(key)
                todo.append(i)
        if todo:
            new = [i for i in todo if (chromosomes[i].tobytes(), fid) not in self.known]
            fresh = iter(self._score(chromosomes[new], fid) if new else [])
            for i in todo:
                key = (chromosomes[i].tobytes(), fid)
                ev = self.known[key] if key in self.known else next(fresh)
                self.memory[key] = ev
                self._record(chromosomes[i], ev, iteration, fid)
        nan = np.full(self.problem.n_obj, np.nan)
        return np.stack(
            [
                self.memory[(c.tobytes(), fid)].F if (c.tobytes(), fid) in self.memory else nan
                for c in chromosomes
            ]
        )

    def _score(self, chromosomes: np.ndarray, fidelity: str) -> list[Evaluation]:
        """Full trainings go to the executor (which may spread folds over workers); other
        fidelities are the problem's own, in this process (a shared head's pass takes
        milliseconds)."""
        if fidelity == FULL:
            return self.executor.evaluate(self.problem, chromosomes)
        return self.problem.evaluate_at(chromosomes, fidelity)

    def record(self, chrom: np.ndarray, ev: Evaluation, iteration: int) -> None:
        """Remember and record one new full evaluation (the asynchronous search's arrivals)."""
        self.memory[(chrom.tobytes(), FULL)] = ev
        self._record(chrom, ev, iteration, FULL)

    def _record(self, chrom: np.ndarray, ev: Evaluation, iteration: int, fidelity: str) -> None:
        active = int(chrom.sum())
        history = self.history
        self.used[BUDGET_OF[fidelity]] += 1
        b = self._best.get(fidelity)
        if b is None or rank_key(ev.accuracy, active) < rank_key(
            history[b].fitness, history[b].active_genes
        ):
            self._best[fidelity] = len(history)
        best = history[b] if b is not None and self._best[fidelity] == b else None
        best_fit = ev.accuracy if best is None else best.fitness
        best_active = active if best is None else best.active_genes
        F = np.asarray(ev.F, dtype=float)
        self.F.append(F)
        hv = None
        if self.problem.n_obj > 1:
            from evoprune.pareto import hypervolume

            hv = float(hypervolume(self._front_with(fidelity, F), self._ref))
        rec = EvaluationRecord(
            index=len(history) + 1,
            iteration=iteration,
            fitness=ev.accuracy,
            active_genes=active,
            active_fraction=active / chrom.size,
            best_fitness=best_fit,
            best_active_fraction=best_active / chrom.size,
            chromosome=chrom.copy(),
            auroc=ev.auroc,
            hypervolume=hv,
            fidelity=fidelity,
        )
        history.append(rec)
        for callback in self.callbacks:
            callback(rec)

    def _front_with(self, fidelity: str, F: np.ndarray) -> np.ndarray:
        """The non-dominated rows of ``fidelity`` so far, ``F`` added: the hypervolume of every
        row is that of these (dominated rows add no volume), at a cost that does not grow with
        the history (shared searches record thousands of rows)."""
        front = self._front_at.get(fidelity)
        if front is None:
            front = F[None]
        elif not (front <= F).all(axis=1).any():  # F adds volume: drop what it dominates
            front = np.vstack([front[~(F <= front).all(axis=1)], F])
        self._front_at[fidelity] = front
        return front

    def result(
        self, iterations: int, stopped_early: bool = False, fidelity: str | None = None
    ) -> SearchResult:
        """The search's outcome resting on the rows of ``fidelity`` (default
        :attr:`fidelity`)."""
        fid = self.fidelity if fidelity is None else fidelity
        if fid not in self._best:
            raise EvoPruneError(
                f"no mask was scored at fidelity {fid!r}: give the search a budget for it "
                "(--evaluations for full trainings, --shared-evaluations for shared ones)"
            )
        best = self.history[self._best[fid]]
        return SearchResult(
            best=best.mask(),
            best_fitness=best.fitness,
            history=self.history,
            evaluations=self.used[FULL],
            iterations=iterations,
            memory_hits=self.hits,
            objectives=tuple(self.problem.objectives),
            F=np.stack(self.F) if self.F else None,
            stopped_early=stopped_early,
            fidelity=fid,
            shared_evaluations=self.used[SHARED],
        )


@dataclass(frozen=True)
class StoppingRule:
    """When a search stops: its evaluator's budget is spent (:meth:`done`), or
    ``max_stale_iterations`` iterations (children, in the asynchronous search) in a row brought
    no new chromosome, so the population has converged (:meth:`converged`)."""

    max_stale_iterations: int = 1000

    def done(self, evaluator: Evaluator) -> bool:
        return evaluator.exhausted

    def converged(self, stale: int) -> bool:
        return stale >= self.max_stale_iterations


#: The default: stop when the budget is spent or after 1000 iterations without a new chromosome.
DEFAULT_STOP = StoppingRule()


def stopping_rule(stop: StoppingRule | int) -> StoppingRule:
    """``stop`` as a rule (an int is ``max_stale_iterations``; the searches also take it as a
    keyword, ``max_stale_iterations=``)."""
    return stop if isinstance(stop, StoppingRule) else StoppingRule(int(stop))


def run_search(
    algorithm: Algorithm,
    evaluator: Evaluator,
    stop: StoppingRule | int = DEFAULT_STOP,
    *,
    max_stale_iterations: int | None = None,
) -> SearchResult:
    """Ask, evaluate, tell until the stopping rule says so: the budget is spent, or
    ``max_stale_iterations`` iterations in a row bring no new chromosome (converged)."""
    rule = stopping_rule(stop if max_stale_iterations is None else max_stale_iterations)
    problem = evaluator.problem
    algorithm.setup(problem.n_genes, problem.n_obj)
    stale = 0
    stopped_early = False
    while not rule.done(evaluator):
        chromosomes = algorithm.ask()
        before = evaluator.n_evaluated
        F = evaluator.evaluate(chromosomes, algorithm.iteration)
        algorithm.tell(chromosomes, F)
        stale = stale + 1 if evaluator.n_evaluated == before else 0
        if rule.converged(stale):
            stopped_early = True
            log.warning(
                "search stopped after %d iterations with no new chromosome; the "
                "population has converged (%d of %d evaluations used)",
                rule.max_stale_iterations,
                evaluator.n_evaluated,
                evaluator.budget,
            )
            break
    return evaluator.result(algorithm.iteration, stopped_early)
