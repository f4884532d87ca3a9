"""Rank the units once, keep the top k, retrain: what a practitioner tries before a search.

For input features (the ``fs`` encoding): mutual information with the class
(:func:`sklearn.feature_selection.mutual_info_classif`), the ANOVA F statistic
(:func:`~sklearn.feature_selection.f_classif`), L1-regularised logistic regression through
:class:`~sklearn.feature_selection.SelectFromModel` (its strength chosen on the run's fitness
split, like best fixed's density) and the weight norm of the trained not-pruned head. For hidden
neurons (``fc``, ``fc1``, ``fc2``, ``both``): the not-pruned head's weight norms and the variance
of each neuron's activation over the training images.

Every score comes from the training data only (never the held-out test set), and the kept units
are trained from scratch like any candidate, with the run's trainer and seed. ``neuron`` pruning
uses the same norms without retraining; these baselines compare *which* units are kept.

Example::

    >>> mask = select_features(X_train, y_train, k=64, method="mutual_info", seed=0)
    >>> int(mask.sum())
    64
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from evoprune.encodings import Encoding, PruneTarget, make_encoding
from evoprune.errors import ConfigError
from evoprune.model.head import CompactHead, TrainerConfig, feature_stats, train_head
from evoprune.problem import Fold, HeadProblem, make_folds
from evoprune.runs.context import RunContext
from evoprune.settings import FitnessSettings
from evoprune.unitscores import (  # the score computations' one owner, re-exported here
    activation_variance,
    filter_scores,
    fit_l1,
    gene_per_unit,
    l1_support,
    prunes_units,
    top_k,
    unit_norms,
)

#: Inverse regularisation strengths C tried for the L1 ranking (features standardised).
L1_STRENGTHS = (0.01, 0.03, 0.1, 0.3)

__all__ = [
    "FOR_UNITS",
    "L1_STRENGTHS",
    "RANKINGS",
    "Ranker",
    "Ranking",
    "activation_variance",
    "filter_scores",
    "fit_l1",
    "l1_support",
    "prunes_units",
    "rankings_for",
    "select_features",
    "top_k",
    "unit_norms",
]


def rankings_for(encoding: Encoding) -> tuple[str, ...]:
    """The rankings that apply to every layer ``encoding`` prunes, in :data:`RANKINGS` order."""
    if not gene_per_unit(encoding):
        return ()  # connections, or not one gene per unit: nothing to rank
    kinds = {t.units for t in encoding.prune_targets}
    return tuple(name for name, r in RANKINGS.items() if kinds <= set(r.units))


class Ranker:
    """The rankings of one run's training data, each score computed once and reused for every
    number of kept units (the comparison at the evolved size, the accuracy-size curves).

    Fitness folds are made as the run's search made them (``fitness_split``, ``val_fraction``,
    ``cv_folds``, ``seed``): inside the training data, unless the run leaked the test set into
    fitness (``fitness_split="test"``, which needs ``test_set``); only the L1 strength is chosen
    on them. ``reference`` is the trained not-pruned head (trained here when needed and not
    given).
    """

    def __init__(
        self,
        encoding: Encoding,
        X_train: np.ndarray,
        y_train: np.ndarray,
        n_classes: int,
        *,
        trainer: str | TrainerConfig = "fast",
        seed: int = 0,
        fitness_split: str = "validation",
        val_fraction: float = 0.2,
        cv_folds: int = 5,
        test_set: tuple[np.ndarray, np.ndarray] | None = None,
        reference: CompactHead | None = None,
    ) -> None:
        self.encoding = encoding
        self.X = np.asarray(X_train, dtype=np.float32)
        self.y = np.asarray(y_train)
        self.n_classes = int(n_classes)
        self.leaked_test_set = fitness_split == "test"
        fitness = FitnessSettings(
            fitness_split=fitness_split, seed=seed, val_fraction=val_fraction, cv_folds=cv_folds
        )
        folds = make_folds(self.X, self.y, fitness, eval_set=test_set)
        self._setup(encoding, n_classes, folds, trainer, seed, feature_stats(self.X), reference)

    def _setup(
        self,
        encoding: Encoding,
        n_classes: int,
        folds: list[Fold],
        trainer: str | TrainerConfig,
        seed: int,
        stats: tuple[np.ndarray, np.ndarray],
        reference: CompactHead | None,
    ) -> None:
        self.problem = HeadProblem(encoding, n_classes, folds, trainer, seed)
        self.reference = reference
        self.trainer = trainer
        self.seed = int(seed)
        self.stats = stats
        self._scores: dict[tuple[str, int], np.ndarray] = {}
        self._l1: dict[tuple[float, int], object] = {}

    @classmethod
    def of_context(cls, context: RunContext, reference: CompactHead | None = None) -> Ranker:
        """The rankings of a run's :class:`~evoprune.runs.context.RunContext`: its training
        data, trainer, seed and fitness folds (made once, by the context)."""
        self = cls.__new__(cls)
        self.encoding = context.encoding
        self.X = np.asarray(context.X_train, dtype=np.float32)
        self.y = np.asarray(context.y_train)
        self.n_classes = context.n_classes
        self.leaked_test_set = context.leaked
        self._setup(
            context.encoding,
            context.n_classes,
            context.folds,
            context.trainer,
            context.cfg.seed,
            context.stats,
            reference,
        )
        return self

    @property
    def methods(self) -> tuple[str, ...]:
        return rankings_for(self.encoding)

    def retrain(self, chromosome: np.ndarray) -> CompactHead:
        """The head of ``chromosome`` trained from scratch on all training data."""
        masks = self.encoding.decode(chromosome)
        return train_head(
            self.X, self.y, masks, self.n_classes, self.trainer, seed=self.seed, stats=self.stats
        ).head

    def chromosome(self, method: str, keep: dict[int, int]) -> tuple[np.ndarray, dict]:
        """The chromosome keeping ``keep[layer]`` top-ranked units in each pruned layer, and
        what was chosen on the way (e.g. the L1 strength and its fitness)."""
        if method not in self.methods:
            raise ConfigError(
                f"ranking {method!r} does not apply to encoding {self.encoding.name!r}; "
                f"choose from {', '.join(self.methods)}"
            )
        ranking = RANKINGS[method]
        if ranking.choose is not None:
            return ranking.choose(self, keep)
        targets = self.encoding.prune_targets
        return self._join([top_k(self.scores(method, t), keep[t.layer]) for t in targets]), {}

    def scores(self, method: str, target: PruneTarget) -> np.ndarray:
        """One score per unit of ``target`` (higher: kept first), from the training data,
        computed once and reused for every number of kept units."""
        key = (method, target.layer)
        if key not in self._scores:
            score = RANKINGS[method].scores
            if score is None:
                raise ConfigError(f"ranking {method!r} chooses whole chromosomes, not scores")
            self._scores[key] = np.asarray(score(self, target))
        return self._scores[key]

    def reference_head(self) -> CompactHead:
        """The trained not-pruned head (trained here on first use when none was given)."""
        return self._reference()

    def _reference(self) -> CompactHead:
        if self.reference is None:
            self.reference = self.retrain(self.encoding.full())
        return self.reference

    def _join(self, masks: list[np.ndarray]) -> np.ndarray:
        """One gene per unit of each target, in target order (the default gene layout)."""
        chrom = np.concatenate(masks).astype(np.uint8)
        if chrom.size != self.encoding.n_genes:
            raise ConfigError(
                f"encoding {self.encoding.name!r} does not have one gene per unit; "
                "rankings need that layout"
            )
        return chrom

    def _l1_model(self, C: float, fold: int):
        """The L1 model of strength C on fold ``fold``'s fitting part (-1: all training data)."""
        if (C, fold) not in self._l1:
            f = self.problem.folds[fold] if fold >= 0 else None
            X, y = (self.X, self.y) if f is None else (f.X_fit, f.y_fit)
            self._l1[(C, fold)] = fit_l1(X, y, C, self.seed)
        return self._l1[(C, fold)]

    def l1_chromosome(self, k: int) -> tuple[np.ndarray, dict]:
        """L1 strength by the fitness of its top-k heads (selected and trained on each fold's
        fitting part, scored on its fitness part); then selected on all training data. Equal
        fitness goes to the stronger regularisation."""
        fitness = {}
        for C in L1_STRENGTHS:
            scores = [
                self.problem.evaluate_fold(self._join([l1_support(self._l1_model(C, i), k)]), i)
                for i in range(self.problem.n_folds)
            ]
            fitness[C] = float(np.mean([s.accuracy for s in scores]))
        best = max(L1_STRENGTHS, key=lambda C: (fitness[C], -C))
        chrom = self._join([l1_support(self._l1_model(best, -1), k)])
        return chrom, {
            "strength": best,
            "fitness_by_strength": {str(c): fitness[c] for c in fitness},
        }


@dataclass(frozen=True)
class Ranking:
    """One ranking: its name, its label in tables and plots, the kinds of unit it ranks
    (``"inputs"``, ``"neurons"``) and how it chooses them from the training data.

    Either ``scores(ranker, target)``: one score per unit of ``target`` (higher: kept first),
    computed once per layer and cut at every size; or ``choose(ranker, keep)``: the whole
    chromosome keeping ``keep[layer]`` units per layer and what was chosen on the way, for a
    choice that is not the top of fixed scores. ``uses_fitness_split``: something is chosen on
    the run's fitness folds (so a run that leaked the test set into fitness leaks it here too).
    """

    name: str
    label: str
    units: tuple[str, ...]
    scores: Callable[[Ranker, PruneTarget], np.ndarray] | None = None
    choose: Callable[[Ranker, dict[int, int]], tuple[np.ndarray, dict]] | None = None
    uses_fitness_split: bool = False

    def __post_init__(self) -> None:
        if (self.scores is None) == (self.choose is None):
            raise ConfigError(f"ranking {self.name!r}: give exactly one of scores and choose")


def _filter(method: str) -> Callable[[Ranker, PruneTarget], np.ndarray]:
    return lambda ranker, _target: filter_scores(method, ranker.X, ranker.y, ranker.seed)


#: Every ranking, in the order it is run and reported (a new ranking is one entry here; it is
#: then run by ``compare`` at the evolved head's size and drawn by ``--curves``).
RANKINGS: dict[str, Ranking] = {
    r.name: r
    for r in (
        Ranking("mutual_info", "Mutual information", ("inputs",), scores=_filter("mutual_info")),
        Ranking("anova_f", "ANOVA F", ("inputs",), scores=_filter("anova_f")),
        Ranking(
            "l1_logistic",
            "L1 logistic regression",
            ("inputs",),
            choose=lambda ranker, keep: ranker.l1_chromosome(int(keep[0])),
            uses_fitness_split=True,
        ),
        Ranking(
            "norm_retrained",
            "Weight norm, retrained",
            ("inputs", "neurons"),
            scores=lambda ranker, t: unit_norms(ranker.reference_head(), t).numpy(),
        ),
        Ranking(
            "activation_variance",
            "Activation variance",
            ("neurons",),
            scores=lambda ranker, t: activation_variance(
                ranker.reference_head(), ranker.X, t.layer
            ),
        ),
    )
}
#: The rankings that apply to each kind of unit a gene switches (read from :data:`RANKINGS`).
FOR_UNITS = {
    kind: tuple(name for name, r in RANKINGS.items() if kind in r.units)
    for kind in ("inputs", "neurons")
}


def select_features(
    X: np.ndarray,
    y: np.ndarray,
    k: int,
    method: str = "mutual_info",
    *,
    seed: int = 0,
    trainer: str | TrainerConfig = "fast",
    hidden_size: int = 512,
    val_fraction: float = 0.2,
) -> np.ndarray:
    """Boolean mask of the ``k`` columns of ``X`` that ``method`` ranks highest on (X, y).

    ``y`` holds class indices 0..C-1. ``norm_retrained`` trains a one-layer head of
    ``hidden_size`` on (X, y); ``l1_logistic`` chooses its strength on a stratified validation
    part of (X, y) (``val_fraction``).
    """
    y = np.asarray(y)
    encoding = make_encoding("fs", np.shape(X)[1], hidden_size)
    ranker = Ranker(
        encoding, X, y, int(y.max()) + 1, trainer=trainer, seed=seed, val_fraction=val_fraction
    )
    return ranker.chromosome(method, {0: int(k)})[0].astype(bool)
