"""Fidelities: how a mask is scored, and the search that promotes masks from one to the next.

The problem decides what each level means (:attr:`evoprune.problem.HeadProblem.fidelities`):
``shared`` scores a mask by a forward pass of one head trained once on random masks, ``fold``
trains it on one fold, ``full`` on every fold. This module only schedules them:

- ``full``: every evaluation trains (the paper's search);
- ``shared``: the algorithm runs on shared scores alone (its own budget);
- ``multi``: the algorithm runs on shared scores, then the best of everything it scored are
  promoted by successive halving (Jamieson & Talwalkar 2016; Hyperband) through the problem's
  rungs up to ``full``, using the budget of full evaluations: the result, best head or front,
  rests on full scores only.

It sees 0/1 arrays and objectives only, like the rest of the search.
"""

from __future__ import annotations

import logging

import numpy as np

from evoprune.errors import ConfigError

log = logging.getLogger(__name__)

FULL, SHARED, FOLD = "full", "shared", "fold"
#: The values of the ``fidelity`` run setting.
FIDELITIES = ("full", "shared", "multi")
#: Which budget an evaluation at each level spends: full trainings (``--evaluations``, a
#: one-fold rung counted as one) or shared evaluations (``--shared-evaluations``).
BUDGET_OF = {FULL: FULL, FOLD: FULL, SHARED: SHARED}
#: Successive halving keeps the best 1 / ETA of a rung for the next.
ETA = 3


def check_fidelity(fidelity: str) -> None:
    if fidelity not in FIDELITIES:
        raise ConfigError(
            f"fidelity={fidelity!r} is unknown; choose one of {', '.join(FIDELITIES)}"
        )


def promotion_order(F: np.ndarray, active: np.ndarray) -> np.ndarray:
    """Positions of rows of minimised objectives ``F`` (N, M), best first: one objective by
    its value (ties: fewer active genes); several by non-dominated front, then crowding
    distance (largest first, so a rung keeps the spread of sizes), then fewer active genes."""
    F = np.asarray(F, dtype=float)
    active = np.asarray(active)
    if F.shape[1] == 1:
        return np.lexsort((active, F[:, 0]))
    from pymoo.operators.survival.rank_and_crowding.metrics import calc_crowding_distance
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    order: list[int] = []
    for front in NonDominatedSorting().do(F):
        front = np.asarray(front)
        crowd = calc_crowding_distance(F[front]) if len(front) > 2 else np.full(len(front), np.inf)
        order.extend(front[np.lexsort((active[front], -crowd))].tolist())
    return np.asarray(order, dtype=int)


def rung_sizes(budget: int, rungs: int, candidates: int, eta: int = ETA) -> list[int]:
    """How many candidates each of ``rungs`` rungs scores, within ``budget`` evaluations in
    all: each rung 1 / ``eta`` of the one before, the last taking what the others left (at
    most as many as the rung before: with few candidates, every one goes on). A budget too
    small for every rung skips the first ones (size 0): the last rung, full training, stays."""
    if rungs < 1 or budget < 1 or candidates < 1:
        return [0] * max(rungs, 0)
    used = min(rungs, budget)
    weights = [eta**-i for i in range(used)]
    first = min(candidates, max(1, int(budget / sum(weights))))
    sizes = [max(1, int(round(first * w))) for w in weights]
    while sum(sizes) > budget:  # rounding up to one candidate a rung can overspend
        first -= 1
        sizes = [max(1, int(round(first * w))) for w in weights]
    sizes[-1] = max(1, min(sizes[-2] if used > 1 else first, budget - sum(sizes[:-1])))
    return [0] * (rungs - used) + sizes


def run_fidelity_search(algorithm, evaluator, fidelity: str, run, eta: int = ETA):
    """The search at ``fidelity`` (``full``, ``shared`` or ``multi``); ``run(algorithm,
    evaluator)`` is the loop that drives the algorithm (:func:`~evoprune.search.run_search`)."""
    check_fidelity(fidelity)
    if fidelity == FULL:
        evaluator.fidelity = FULL
        return run(algorithm, evaluator)
    evaluator.fidelity = SHARED
    shared = run(algorithm, evaluator)
    if fidelity == SHARED:
        return shared
    promote(evaluator, algorithm.iteration, eta)
    evaluator.fidelity = FULL
    return evaluator.result(algorithm.iteration, shared.stopped_early)


def promote(evaluator, iteration: int, eta: int = ETA) -> None:
    """Successive halving from the shared scores up the problem's rungs (``fold`` when the
    problem has several folds, then ``full``), within the budget of full evaluations left."""
    problem = evaluator.problem
    rungs = [f for f in problem.fidelities if f != SHARED]
    level = SHARED
    rows = [i for i, r in enumerate(evaluator.history) if r.fidelity == SHARED]
    chroms = np.stack([evaluator.history[i].mask() for i in rows])
    F = np.stack([evaluator.F[i] for i in rows])
    left = evaluator.budgets[FULL] - evaluator.used[FULL]
    sizes = rung_sizes(left, len(rungs), len(rows), eta)
    for rung, size in zip(rungs, sizes):
        if not size:
            continue
        order = promotion_order(F, chroms.sum(axis=1))[:size]
        chroms = chroms[order]
        log.info("promoting %d of %d %s-scored masks to %s", len(order), len(F), level, rung)
        F = evaluator.evaluate(chroms, iteration, fidelity=rung)
        kept = ~np.isnan(F).any(axis=1)
        chroms, F, level = chroms[kept], F[kept], rung
        if not len(chroms):
            break
