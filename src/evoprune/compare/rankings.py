"""Rank the units once, keep the top k, retrain: what a practitioner tries before a search.

For input features (the ``fs`` encoding): mutual information with the class
(:func:`sklearn.feature_selection.mutual_info_classif`), the ANOVA F statistic
(:func:`~sklearn.feature_selection.f_classif`), L1-regularised logistic regression through
:class:`~sklearn.feature_selection.SelectFromModel` (its strength chosen on the run's fitness
split, like best fixed's density), the weight norm of the trained not-pruned head, recursive
feature elimination on a linear probe (:class:`~sklearn.feature_selection.RFE` on logistic
regression), ReliefF (:func:`evoprune.unitscores.relieff_scores`), and with the ``selection``
extra mRMR (``mrmrs``: F-statistic relevance over mean absolute correlation with the features
already chosen) and the order in which features leave LassoNet's regularisation path
(``lassonet``). For hidden neurons
(``fc``, ``fc1``, ``fc2``, ``both``): the not-pruned head's weight norms and the variance of each
neuron's activation over the training images.

A ranking whose library is not installed is left out (one log line), not an error.

Every score comes from the training data only (never the held-out test set), and the kept units
are trained from scratch like any candidate, with the run's trainer and seed. ``neuron`` pruning
uses the same norms without retraining; these baselines compare *which* units are kept.

Example::

    >>> mask = select_features(X_train, y_train, k=64, method="mutual_info", seed=0)
    >>> int(mask.sum())
    64
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import overload

import numpy as np

from evoprune.encodings import Encoding, HeadMasks, PruneTarget
from evoprune.errors import ConfigError
from evoprune.model.head import CompactHead, TrainerConfig, feature_stats, get_trainer
from evoprune.problem import HeadProblem, HeadTraining
from evoprune.runs.config import RunConfig
from evoprune.runs.context import RunContext
from evoprune.unitscores import (  # the score computations' one owner, re-exported here
    activation_variance,
    filter_scores,
    fit_l1,
    gene_per_unit,
    l1_support,
    prunes_units,
    relieff_scores,
    top_k,
    unit_norms,
)

log = logging.getLogger(__name__)

#: Inverse regularisation strengths C tried for the L1 ranking (features standardised).
L1_STRENGTHS = (0.01, 0.03, 0.1, 0.3)
#: Recursive feature elimination: the fraction of all features dropped per step, and the
#: linear probe's inverse regularisation strength (features standardised).
RFE_STEP = 0.05
RFE_C = 1.0
RFE_MAX_ITER = 100
#: LassoNet's path: hidden layer, and the factor between consecutive penalties.
LASSONET_HIDDEN = (32,)
LASSONET_PATH_MULTIPLIER = 1.1
#: The extra that installs the optional rankings' libraries.
SELECTION_EXTRA = "selection"

__all__ = [
    "FOR_UNITS",
    "L1_STRENGTHS",
    "RANKINGS",
    "RFEPath",
    "Ranker",
    "Ranking",
    "activation_variance",
    "filter_scores",
    "feature_rankings",
    "fit_l1",
    "l1_support",
    "lassonet_scores",
    "mrmr_scores",
    "prunes_units",
    "ranking_available",
    "ranking_masks",
    "register_ranking",
    "rankings_for",
    "relieff_scores",
    "select_features",
    "top_k",
    "unit_norms",
]


def rankings_for(encoding: Encoding) -> tuple[str, ...]:
    """The rankings that apply to every layer ``encoding`` prunes, in :data:`RANKINGS` order."""
    if not gene_per_unit(encoding):
        return ()  # connections, or not one gene per unit: nothing to rank
    kinds = {t.units for t in encoding.prune_targets}
    return tuple(
        name for name, r in RANKINGS.items() if kinds <= set(r.units) and ranking_available(name)
    )


_reported_missing: set[str] = set()


def ranking_available(name: str) -> bool:
    """Whether the libraries ranking ``name`` needs are installed; a missing one is logged
    once per process (the ranking is then left out, not an error)."""
    missing = [m for m in RANKINGS[name].requires if importlib.util.find_spec(m) is None]
    if missing and name not in _reported_missing:
        _reported_missing.add(name)
        log.info(
            "ranking %s skipped: %s not installed (pip install 'evoprune[%s]')",
            name,
            ", ".join(missing),
            SELECTION_EXTRA,
        )
    return not missing


def standardised(X: np.ndarray) -> np.ndarray:
    """``X`` with every column at mean 0 and standard deviation 1 (constant columns: 0)."""
    mean, std = feature_stats(X)
    return (np.asarray(X, dtype=np.float32) - mean) / std


def mrmr_scores(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """mRMR (``mrmrs``; Zhao et al. 2019's F-test correlation quotient): features in the order
    the greedy selection adds them, scored n, n-1, ... (NaN: constant columns, never chosen).
    The first pick is the feature of the largest ANOVA F; each next one maximises F over the
    mean absolute correlation with those already chosen."""
    import polars as pl
    from mrmrs import mrmr

    X = np.asarray(X, dtype=np.float64)
    n = X.shape[1]
    frame = pl.DataFrame({str(i): X[:, i] for i in range(n)})
    picked = mrmr(frame, pl.Series("y", np.asarray(y)), n, "classification")
    scores = np.full(n, np.nan)
    for rank, feature in enumerate(picked):
        scores[int(feature.name)] = n - rank
    return scores


def lassonet_scores(X: np.ndarray, y: np.ndarray, seed: int = 0) -> np.ndarray:
    """LassoNet's path (``lassonet``): each feature's score is the penalty at which it leaves
    the model, so the top k are the k features still in at the point of the path that keeps k.
    The path's own validation part is drawn from ``X`` with ``seed``."""
    from lassonet import LassoNetClassifier

    model = LassoNetClassifier(
        hidden_dims=LASSONET_HIDDEN,
        path_multiplier=LASSONET_PATH_MULTIPLIER,
        random_state=int(seed),
        torch_seed=int(seed),
        verbose=0,
    )
    model.path(standardised(X), np.asarray(y), return_state_dicts=False)
    return np.asarray(model.feature_importances_, dtype=np.float64)


class RFEPath:
    """Recursive feature elimination on a linear probe, at every size from one elimination.

    The probe is multinomial logistic regression (C = :data:`RFE_C`) on standardised ``X``;
    each step refits it on the features left and drops the :data:`RFE_STEP` fraction of all
    features with the smallest summed squared coefficients, and a last, smaller step stops at
    exactly k: scikit-learn's :class:`~sklearn.feature_selection.RFE` rule (a test compares).
    The steps every size passes through are fitted once and shared, where scikit-learn's RFE
    would refit them for each size.
    """

    def __init__(self, X: np.ndarray, y: np.ndarray, seed: int = 0) -> None:
        self.X = standardised(X)
        self.y = np.asarray(y)
        self.seed = int(seed)
        self.step = max(1, int(RFE_STEP * self.X.shape[1]))
        self._importances: dict[int, np.ndarray] = {}  # features left -> their importances

    def support(self, k: int) -> np.ndarray:
        """Boolean mask of the ``k`` features the elimination keeps."""
        n = self.X.shape[1]
        if not 0 <= int(k) <= n:
            raise ConfigError(f"cannot keep {k} of {n} features")
        support = np.ones(n, dtype=bool)
        while support.sum() > int(k):
            features = np.flatnonzero(support)
            # reached by whole steps from all features: the same features for every k
            if features.size not in self._importances:
                self._importances[features.size] = self._fit(features)
            ranks = np.argsort(self._importances[features.size], kind="stable")
            support[features[ranks][: min(self.step, features.size - int(k))]] = False
        return support

    def _fit(self, features: np.ndarray) -> np.ndarray:
        from sklearn.linear_model import LogisticRegression

        probe = LogisticRegression(C=RFE_C, max_iter=RFE_MAX_ITER, random_state=self.seed)
        with warnings.catch_warnings():  # lbfgs stopping at max_iter
            warnings.simplefilter("ignore")
            probe.fit(self.X[:, features], self.y)
        return np.square(np.atleast_2d(probe.coef_)).sum(axis=0)


class Ranker:
    """The rankings of one run's training data, each score computed once and reused for every
    number of kept units (the comparison at the evolved size, the accuracy-size curves).

    Everything comes from the run's :class:`~evoprune.runs.context.RunContext`: the training
    data, the encoding, the trainer, the seed, the feature statistics and the fitness folds
    (made once, by the context, as the run's search made them: inside the training data unless
    the run leaked the test set into fitness); only the L1 strength is chosen on the folds.
    The ranker's heads train on the CPU. ``reference`` is the trained not-pruned head (trained
    here when needed and not given).
    """

    def __init__(self, context: RunContext, reference: CompactHead | None = None) -> None:
        self.context = context
        self.encoding = context.encoding
        self.X = np.asarray(context.X_train, dtype=np.float32)
        self.y = np.asarray(context.y_train)
        self.n_classes = context.n_classes
        self.leaked_test_set = context.leaked
        self.training = HeadTraining(context.trainer, int(context.cfg.seed))
        self.problem = HeadProblem(self.encoding, self.n_classes, context.folds, self.training)
        self.stats = context.stats
        self.reference = reference
        self._scores: dict[tuple[str, int], np.ndarray] = {}
        self._l1: dict[tuple[float, int], object] = {}
        self._rfe: RFEPath | None = None

    @property
    def trainer(self) -> TrainerConfig:
        return self.training.trainer

    @property
    def seed(self) -> int:
        return self.training.seed

    @property
    def methods(self) -> tuple[str, ...]:
        return rankings_for(self.encoding)

    def retrain(self, chromosome: np.ndarray) -> CompactHead:
        """The head of ``chromosome`` trained from scratch on all training data."""
        return self.train(self.encoding.decode(chromosome))

    def train(self, masks: HeadMasks) -> CompactHead:
        """A head of the units ``masks`` keep, built and trained from scratch on all training
        data with the run's trainer and seed."""
        return self.training.train(self.X, self.y, masks, self.n_classes, self.stats).head

    def rfe_chromosome(self, k: int) -> tuple[np.ndarray, dict]:
        """The ``k`` features recursive feature elimination keeps (:class:`RFEPath`, its steps
        shared by every size)."""
        if self._rfe is None:
            self._rfe = RFEPath(self.X, self.y, self.seed)
        return self._join([self._rfe.support(int(k))]), {"step": RFE_STEP, "C": RFE_C}

    def chromosome(self, method: str, keep: dict[int, int]) -> tuple[np.ndarray, dict]:
        """The chromosome keeping ``keep[layer]`` top-ranked units in each pruned layer, and
        what was chosen on the way (e.g. the L1 strength and its fitness)."""
        if method in RANKINGS and not ranking_available(method):
            raise ConfigError(
                f"ranking {method!r} needs {', '.join(RANKINGS[method].requires)}: "
                f"pip install 'evoprune[{SELECTION_EXTRA}]'"
            )
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
    ``requires``: the modules it imports (lazily), from the ``selection`` extra; while one is
    missing the ranking is left out with a log line.
    """

    name: str
    label: str
    units: tuple[str, ...]
    scores: Callable[[Ranker, PruneTarget], np.ndarray] | None = None
    choose: Callable[[Ranker, dict[int, int]], tuple[np.ndarray, dict]] | None = None
    uses_fitness_split: bool = False
    requires: tuple[str, ...] = ()  # modules of an optional extra; missing: left out

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
            "rfe",
            "RFE, linear probe",
            ("inputs",),
            choose=lambda ranker, keep: ranker.rfe_chromosome(int(keep[0])),
        ),
        Ranking(
            "relieff",
            "ReliefF",
            ("inputs",),
            scores=lambda ranker, _t: relieff_scores(ranker.X, ranker.y),
        ),
        Ranking(
            "mrmr",
            "mRMR",
            ("inputs",),
            scores=lambda ranker, _t: mrmr_scores(ranker.X, ranker.y),
            requires=("mrmrs", "polars"),
        ),
        Ranking(
            "lassonet",
            "LassoNet path",
            ("inputs",),
            scores=lambda ranker, _t: lassonet_scores(ranker.X, ranker.y, ranker.seed),
            requires=("lassonet",),
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


def register_ranking(ranking: Ranking, *, replace: bool = False) -> None:
    """Add ``ranking`` after the others (``replace``: overwrite one of the same name); it is
    then a comparison method too, run by ``compare`` and drawn by ``--curves``. Raises
    ConfigError if the name is taken."""
    if ranking.name in RANKINGS and not replace:
        raise ConfigError(
            f"ranking {ranking.name!r} exists already; pick another name or pass replace=True"
        )
    RANKINGS[ranking.name] = ranking


class _ForUnits(Mapping[str, tuple[str, ...]]):
    """kind of unit -> the rankings that rank it, in :data:`RANKINGS` order (always current)."""

    KINDS = ("inputs", "neurons")

    def __getitem__(self, kind: str) -> tuple[str, ...]:
        if kind not in self.KINDS:
            raise KeyError(kind)
        return tuple(name for name, r in RANKINGS.items() if kind in r.units)

    def __iter__(self) -> Iterator[str]:
        return iter(self.KINDS)

    def __len__(self) -> int:
        return len(self.KINDS)


#: The rankings that apply to each kind of unit a gene switches (a view of :data:`RANKINGS`).
FOR_UNITS: Mapping[str, tuple[str, ...]] = _ForUnits()


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
    return ranking_masks(
        method,
        X,
        y,
        int(k),
        seed,
        trainer=trainer,
        hidden_size=hidden_size,
        val_fraction=val_fraction,
    )


def feature_rankings() -> tuple[str, ...]:
    """The rankings of input features installed here, in :data:`RANKINGS` order (those
    :func:`ranking_masks` takes)."""
    return tuple(m for m in FOR_UNITS["inputs"] if ranking_available(m))


@overload
def ranking_masks(
    method: str,
    X_fit: np.ndarray,
    y_fit: np.ndarray,
    k: int,
    seed: int = 0,
    *,
    trainer: str | TrainerConfig = "fast",
    hidden_size: int = 512,
    val_fraction: float = 0.2,
) -> np.ndarray: ...


@overload
def ranking_masks(
    method: str,
    X_fit: np.ndarray,
    y_fit: np.ndarray,
    k: Sequence[int],
    seed: int = 0,
    *,
    trainer: str | TrainerConfig = "fast",
    hidden_size: int = 512,
    val_fraction: float = 0.2,
) -> list[np.ndarray]: ...


def ranking_masks(
    method: str,
    X_fit: np.ndarray,
    y_fit: np.ndarray,
    k: int | Sequence[int],
    seed: int = 0,
    *,
    trainer: str | TrainerConfig = "fast",
    hidden_size: int = 512,
    val_fraction: float = 0.2,
) -> np.ndarray | list[np.ndarray]:
    """Boolean masks of the ``k`` columns of ``X_fit`` that feature ranking ``method`` (one of
    :func:`feature_rankings`) keeps, scored on (X_fit, y_fit) alone: one mask for an int ``k``,
    one per size for a sequence (the scores computed once). ``y_fit`` holds class indices
    0..C-1; ``seed`` seeds every random choice (mutual information's neighbours, the L1
    strength's validation part of ``val_fraction``, LassoNet, the ``norm_retrained`` head of
    ``hidden_size`` trained with ``trainer``)."""
    X, y = np.asarray(X_fit, dtype=np.float32), np.asarray(y_fit)
    if method not in FOR_UNITS["inputs"]:
        raise ConfigError(
            f"ranking {method!r} does not apply to encoding 'fs'; "
            f"choose from {', '.join(feature_rankings())}"
        )
    cfg = RunConfig(encoding="fs", hidden_size=hidden_size, seed=seed, val_fraction=val_fraction)
    classes = [str(c) for c in range(int(y.max()) + 1)]
    ranker = Ranker(RunContext.of_arrays(cfg, X, y, classes, trainer=get_trainer(trainer)))
    sizes = [int(k)] if isinstance(k, (int, np.integer)) else [int(s) for s in k]
    masks = [ranker.chromosome(method, {0: s})[0].astype(bool) for s in sizes]
    return masks[0] if isinstance(k, (int, np.integer)) else masks
