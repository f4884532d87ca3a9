"""Evolve a head on a feature matrix: the one place that builds the folds, the problem, the
evaluator and the algorithm of a run's settings, for the experiment and the estimator alike."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from evoprune.encodings import Encoding, make_encoding
from evoprune.model.head import TrainerConfig, feature_stats
from evoprune.problem import Fold, HeadProblem, make_folds
from evoprune.progress import work_bar
from evoprune.runs.config import RunConfig
from evoprune.search import (
    Evaluation,
    EvaluationRecord,
    Evaluator,
    Executor,
    SearchResult,
    make_algorithm,
    run_async_search,
    run_search,
)
from evoprune.search.fidelity import BUDGET_OF, FULL, run_fidelity_search
from evoprune.settings import FitnessSettings, group_of

log = logging.getLogger(__name__)


@dataclass
class Evolved:
    """A finished search: the encoding, the problem it scored and the search's result."""

    encoding: Encoding
    problem: HeadProblem
    result: SearchResult
    seconds: float


def fitness_folds(
    fitness: FitnessSettings,
    X: np.ndarray,
    y: np.ndarray,
    *,
    eval_set: tuple[np.ndarray, np.ndarray] | None = None,
    classes: list[str] | None = None,
    validation: np.ndarray | None = None,
) -> list[Fold]:
    """The folds a run with settings ``fitness`` measures fitness on (inside (X, y), or on
    ``eval_set`` for the leaked ``test`` fitness split). ``validation``: the rows of (X, y)
    that are a given validation set (a validation/ folder), the ``validation`` fitness split
    instead of a stratified one; heads are then fitted on the other rows."""
    if eval_set is not None:
        fitness = dataclasses.replace(group_of(fitness, FitnessSettings), fitness_split="test")
    elif validation is not None and fitness.fitness_split == "validation":
        score = np.zeros(len(y), dtype=bool)
        score[np.asarray(validation, dtype=np.int64)] = True
        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y)
        return [Fold(X[~score], y[~score], X[score], y[score], feature_stats(X[~score]))]
    return make_folds(X, y, fitness, eval_set=eval_set, classes=classes)


#: Below this many images a validation fitness split is coarse: one image is 100 / n points.
SMALL_FITNESS_SPLIT = 100


def warn_small_fitness_split(folds: list[Fold], fitness_split: str) -> None:
    """A WARNING when fitness is measured on fewer than :data:`SMALL_FITNESS_SPLIT` images of a
    validation split: one image is then a step of several accuracy points, and the search
    chases noise; cross-validation scores every training image."""
    if fitness_split != "validation" or len(folds) != 1:
        return
    n = len(folds[0].y_score)
    if n < SMALL_FITNESS_SPLIT:
        log.warning(
            "the fitness split has only %d images: one image = %.1f accuracy points, so the "
            "search can pick heads by noise; with a small training set use --fitness-split cv "
            "(every training image scores each mask)",
            n,
            100.0 / n,
        )


def evolve(
    X: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    cfg: RunConfig,
    *,
    trainer: TrainerConfig | None = None,
    eval_set: tuple[np.ndarray, np.ndarray] | None = None,
    ood_features: np.ndarray | None = None,
    callbacks: Iterable[Callable[[EvaluationRecord], None]] = (),
    known: dict[bytes, Evaluation] | None = None,
    executor: Executor | None = None,
    classes: list[str] | None = None,
    progress: bool = False,
    progress_label: str = "search",
    validation: np.ndarray | None = None,
) -> Evolved:
    """Search masks for a head on (X, y) (``y`` class indices) with the settings of ``cfg``, a
    validated :class:`~evoprune.runs.config.RunConfig`.

    ``eval_set`` scores fitness on that set (the leaked ``test`` fitness split); ``known``
    resumes an interrupted search (see :class:`~evoprune.search.Evaluator`); ``classes`` name
    the class indices in messages; ``trainer`` trains with these settings instead of
    ``cfg.trainer``'s (an analysis of a saved run). ``executor`` evaluates the batches
    (default: this process); with ``cfg.asynchronous`` it keeps ``executor.slots`` evaluations
    in flight. ``progress`` draws a bar of evaluations (``progress_label``) that counts heads
    as they are trained; a bar labelled other than ``search`` is taken to be nested in another
    and is removed when done. ``validation``: rows of (X, y) that are a given validation set,
    the fitness split (see :func:`fitness_folds`).
    """
    encoding = make_encoding(cfg.encoding, X.shape[1], cfg.hidden_size, n_classes)
    folds = fitness_folds(cfg, X, y, eval_set=eval_set, classes=classes, validation=validation)
    if eval_set is None:
        warn_small_fitness_split(folds, cfg.fitness_split)
    problem = HeadProblem(
        encoding,
        n_classes,
        folds,
        cfg.trainer if trainer is None else trainer,
        cfg.seed,
        objectives=tuple(cfg.objectives),
        ood_features=ood_features,
        ood_score=cfg.ood_score,
        device=cfg.device,
    )
    algorithm = make_algorithm(
        cfg.algorithm,
        population=cfg.population,
        evaluations=cfg.budget,
        mutation_prob=cfg.mutation_prob,
        init=cfg.init,
        seed=cfg.seed,
    )
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
            slots = int(getattr(evaluator.executor, "slots", 1))
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
            flight = getattr(executor, "in_flight", None)
            bar.set_postfix(
                best=f"{rec.best_fitness:.4f}",
                density=f"{rec.best_active_fraction:.2f}",
                **({} if flight is None else {"in_flight": flight}),
            )
            chrom = b"" if rec.chromosome is None else rec.chromosome.tobytes()
            bar.done(skipped=chrom in resumed or (chrom, rec.fidelity) in resumed)

        yield show
