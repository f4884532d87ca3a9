"""Evolve a head of a :class:`~evoprune.runs.context.RunContext`: the one place that builds the
evaluator and the algorithm of a run's settings, for the experiment and the estimator alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from evoprune.encodings import Encoding
from evoprune.problem import HeadProblem
from evoprune.progress import work_bar
from evoprune.runs.context import RunContext, warn_small_fitness_split
from evoprune.search import (
    EvaluationRecord,
    Evaluator,
    Executor,
    SearchResult,
    make_algorithm,
    run_async_search,
    run_search,
)
from evoprune.search.fidelity import BUDGET_OF, FULL, run_fidelity_search


@dataclass
class Evolved:
    """A finished search: the encoding, the problem it scored and the search's result."""

    encoding: Encoding
    problem: HeadProblem
    result: SearchResult
    seconds: float


def evolve(
    context: RunContext,
    *,
    callbacks: Iterable[Callable[[EvaluationRecord], None]] = (),
    known: dict | None = None,
    executor: Executor | None = None,
    progress: bool = False,
    progress_label: str = "search",
) -> Evolved:
    """Search masks for the head of ``context`` (its validated settings, training features,
    fitness folds and problem).

    ``known`` resumes an interrupted search (see :class:`~evoprune.search.Evaluator`);
    ``executor`` evaluates the batches (default: this process); with ``cfg.asynchronous`` it
    keeps ``executor.slots`` evaluations in flight. ``progress`` draws a bar of evaluations
    (``progress_label``) that counts heads as they are trained; a bar labelled other than
    ``search`` is taken to be nested in another and is removed when done.
    """
    cfg, encoding, problem = context.cfg, context.encoding, context.problem
    if context.fitness_eval_set is None:
        warn_small_fitness_split(context.folds, cfg.fitness_split)
    algorithm = make_algorithm(cfg.algorithm, cfg, context.guiding_rankings)
    fidelity = cfg.fidelity
    with search_bar(cfg.budget, known, executor, enabled=progress, label=progress_label) as show:
        evaluator = Evaluator(
            problem,
            cfg.budget,
            shared_budget=cfg.shared_evaluations or 0,
            executor=executor,
            known=known,
            callbacks=[*callbacks, show],
        )
        t0 = time.perf_counter()
        if cfg.asynchronous:
            slots = int(evaluator.executor.slots)
            result = run_async_search(algorithm, evaluator, slots)
        else:
            result = run_fidelity_search(algorithm, evaluator, fidelity, run_search)
    return Evolved(encoding, problem, result, time.perf_counter() - t0)


@contextmanager
def search_bar(
    total: int,
    known: dict | None = None,
    executor: Executor | None = None,
    *,
    enabled: bool = True,
    label: str = "search",
) -> Iterator[Callable[[EvaluationRecord], None]]:
    """A bar of ``total`` evaluations (full trainings) that counts heads as they are trained
    (inside a batch too) and the callback that marks each evaluation recorded; evaluations of
    ``known`` (a resumed run's) count without adding to the pace; shared-head scores (another
    budget, milliseconds each) are not shown."""
    resumed = set(known or ())
    with work_bar(total, desc=label, unit="eval", enabled=enabled, leave=label == "search") as bar:

        def show(rec: EvaluationRecord) -> None:
            if BUDGET_OF.get(rec.fidelity, FULL) != FULL:
                return
            flight = None if executor is None else executor.in_flight
            bar.set_postfix(
                best=f"{rec.best_fitness:.4f}",
                density=f"{rec.best_active_fraction:.2f}",
                **({} if flight is None else {"in_flight": flight}),
            )
            chrom = b"" if rec.chromosome is None else rec.chromosome.tobytes()
            bar.done(skipped=chrom in resumed or (chrom, rec.fidelity) in resumed)

        yield show
        bar.end_at_count()  # a search that converged before its budget ends full at its count
