"""One run's context, built once: the settings, the training (and held-out) features, the
encoding, the trainer, the fitness folds, the not-pruned reference head and ``train(mask)``.

The run (:mod:`evoprune.runs.experiment`), the search (:func:`evoprune.runs.evolve.evolve`),
the final heads, ensembles, analyses, the comparison's baselines and curves and the estimator
all take a :class:`RunContext` instead of rebuilding the encoding, the folds, the trainer or
the reference head from the settings by hand (which made the same folds twice per run).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol

import numpy as np

from evoprune.encodings import Encoding, make_encoding
from evoprune.errors import ConfigError
from evoprune.model.head import CompactHead, TrainerConfig, feature_stats, get_trainer
from evoprune.problem import Fold, HeadProblem, HeadTraining, make_folds
from evoprune.runs.config import RunConfig
from evoprune.settings import FitnessSettings, group_of
from evoprune.unitscores import search_rankings

log = logging.getLogger(__name__)


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


def fold_rankings(
    encoding: Encoding, fold: Fold, n_classes: int, training: HeadTraining
) -> dict[str, np.ndarray]:
    """The search's gene scores (:func:`~evoprune.unitscores.search_rankings`) of ``fold``'s
    fitting part alone, their heads trained as ``training`` trains."""
    return search_rankings(
        encoding,
        fold.X_fit,
        fold.y_fit,
        n_classes,
        trainer=training.trainer,
        seed=training.seed,
        device=training.device,
    )


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


class TrainTestData(Protocol):
    """Features split into training and held-out images (a
    :class:`~evoprune.runs.experiment.PreparedData`)."""

    @property
    def classes(self) -> list[str]: ...
    @property
    def X(self) -> np.ndarray: ...
    @property
    def X_train(self) -> np.ndarray: ...
    @property
    def y_train(self) -> np.ndarray: ...
    @property
    def X_test(self) -> np.ndarray: ...
    @property
    def y_test(self) -> np.ndarray: ...
    @property
    def validation(self) -> np.ndarray | None: ...


@dataclass
class RunContext:
    """What every head of one run is built from, made once per run.

    ``X_train``/``y_train`` (class indices) are the training features; ``X_test``/``y_test``
    the held-out ones when the run has them (None for the estimator). ``fitness_eval_set`` is
    the set fitness is scored on instead of a split of the training data (the leaked ``test``
    fitness split; the estimator's ``eval_set``); ``validation``: the rows of the training data
    that are a given validation set (a validation/ folder), the ``validation`` fitness split.
    ``ood_search``: out-of-distribution features the search scores heads on. ``trainer`` is
    the trainer's settings (the named trainer's, or those a saved run recorded).
    """

    cfg: RunConfig
    X_train: np.ndarray
    y_train: np.ndarray
    classes: list[str]
    encoding: Encoding
    trainer: TrainerConfig
    X_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    fitness_eval_set: tuple[np.ndarray, np.ndarray] | None = None
    ood_search: np.ndarray | None = None
    validation: np.ndarray | None = None
    reference_seconds: float = field(default=0.0, init=False)

    @classmethod
    def of_data(
        cls,
        cfg: RunConfig,
        data: TrainTestData,
        *,
        trainer: TrainerConfig | None = None,
        ood_search: np.ndarray | None = None,
    ) -> RunContext:
        """The context of a run of ``cfg`` on prepared data (held-out test set included)."""
        leaked = cfg.fitness_split == "test"
        n_classes = len(data.classes)
        return cls(
            cfg=cfg,
            X_train=data.X_train,
            y_train=data.y_train,
            classes=list(data.classes),
            encoding=make_encoding(cfg.encoding, data.X.shape[1], cfg.hidden_size, n_classes),
            trainer=get_trainer(cfg.trainer) if trainer is None else trainer,
            X_test=data.X_test,
            y_test=data.y_test,
            fitness_eval_set=(data.X_test, data.y_test) if leaked else None,
            ood_search=ood_search,
            validation=data.validation,
        )

    @classmethod
    def of_arrays(
        cls,
        cfg: RunConfig,
        X: np.ndarray,
        y: np.ndarray,
        classes: list[str],
        *,
        eval_set: tuple[np.ndarray, np.ndarray] | None = None,
        ood_search: np.ndarray | None = None,
        trainer: TrainerConfig | None = None,
        held_out: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> RunContext:
        """The context of a search on features (X, y) (``y`` class indices into ``classes``);
        ``eval_set`` scores fitness on that set. ``trainer``: the trainer's settings (default:
        the trainer ``cfg`` names); ``held_out``: the (X_test, y_test) that final heads and
        baselines are scored on, if any (never used for fitness)."""
        return cls(
            cfg=cfg,
            X_train=X,
            y_train=y,
            classes=list(classes),
            encoding=make_encoding(cfg.encoding, X.shape[1], cfg.hidden_size, len(classes)),
            trainer=get_trainer(cfg.trainer) if trainer is None else trainer,
            X_test=None if held_out is None else held_out[0],
            y_test=None if held_out is None else held_out[1],
            fitness_eval_set=eval_set,
            ood_search=ood_search,
        )

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def held_out(self) -> tuple[np.ndarray, np.ndarray]:
        """The held-out (X_test, y_test) the final heads are scored on."""
        if self.X_test is None or self.y_test is None:
            raise ValueError("this run context has no held-out images (built from arrays)")
        return self.X_test, self.y_test

    @property
    def leaked(self) -> bool:
        """Whether fitness is scored on the held-out test set (the paper's protocol)."""
        return self.cfg.fitness_split == "test"

    @cached_property
    def folds(self) -> list[Fold]:
        """The fitness folds, made once (inside the training data, or on the fitness
        evaluation set)."""
        return fitness_folds(
            self.cfg,
            self.X_train,
            self.y_train,
            eval_set=self.fitness_eval_set,
            classes=self.classes,
            validation=self.validation,
        )

    @cached_property
    def unit_rankings(self) -> dict[str, np.ndarray]:
        """Per-unit gene scores by ranking name for ``init="ranked"`` and
        ``variation="guided"`` (:func:`evoprune.unitscores.search_rankings`), from the first
        fitness fold's training part alone: never the rows fitness is measured on there, never
        held-out images (with ``cv``, the other folds' scoring rows are in it). Empty for
        encodings whose genes do not switch whole units."""
        return fold_rankings(self.encoding, self.folds[0], self.n_classes, self.training)

    @property
    def guiding_rankings(self) -> dict[str, np.ndarray] | None:
        """:attr:`unit_rankings` when the search uses them (a ranked start or guided
        variation), else None: what the search knew of the units, and what the final check
        computes again inside its folds."""
        cfg = self.cfg
        return self.unit_rankings if cfg.init == "ranked" or cfg.variation == "guided" else None

    @cached_property
    def stats(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) of the training features."""
        return feature_stats(self.X_train)

    @cached_property
    def training(self) -> HeadTraining:
        """How the run trains every head: its trainer, seed and device."""
        return HeadTraining(self.trainer, int(self.cfg.seed), self.cfg.device)

    @cached_property
    def problem(self) -> HeadProblem:
        """The problem the search solves: heads trained on the fitness folds."""
        return HeadProblem(
            self.encoding,
            self.n_classes,
            self.folds,
            self.training,
            self.cfg,
            ood_features=self.ood_search,
        )

    def train(self, mask: np.ndarray) -> CompactHead:
        """The head of ``mask`` trained from scratch on all training images, as the run trains
        its final heads (same trainer, seed, feature statistics and device)."""
        masks = self.encoding.decode(mask)
        return self.training.train(
            self.X_train, self.y_train, masks, self.n_classes, self.stats
        ).head

    def train_on(self, fold: Fold, mask: np.ndarray) -> CompactHead:
        """The head of ``mask`` trained on ``fold``'s fitting part, as the search trains it."""
        masks = self.encoding.decode(mask)
        return self.training.train(fold.X_fit, fold.y_fit, masks, self.n_classes, fold.stats).head

    def reuse_reference(self, head: CompactHead, seconds: float = 0.0) -> RunContext:
        """This context, with ``head`` as its not-pruned head (:attr:`reference`): one the run
        trained already, in ``seconds``, so that it is not trained again. ConfigError when
        ``head`` is not the not-pruned head of the run's encoding."""
        enc = self.encoding
        sizes = (enc.n_features,) + enc.hidden + (self.n_classes,)
        if head.sizes != sizes:
            raise ConfigError(
                f"the reference head has layer sizes {head.sizes}, not those of "
                f"the not-pruned head of encoding {enc.name!r}: {sizes}"
            )
        self.__dict__["reference"] = head  # the cached property's value
        self.reference_seconds = float(seconds)
        return self

    @cached_property
    def reference(self) -> CompactHead:
        """The not-pruned head, trained once (its seconds in :attr:`reference_seconds`)."""
        t0 = time.perf_counter()
        head = self.train(self.encoding.full())
        self.reference_seconds = time.perf_counter() - t0
        return head
