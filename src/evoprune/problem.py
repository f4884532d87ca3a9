"""The problem the search solves: a (B, L) batch of 0/1 chromosomes -> a (B, M) matrix of named
objectives of their trained heads.

Convention: every objective is minimised and lies in [0, 1] (see :mod:`evoprune.pareto`):
``accuracy`` as the error 1 - accuracy, ``size`` as the fraction of active genes, ``ood`` as
1 - AUROC of telling the fitness split's images from out-of-distribution images by the head's
score. The natural values a person reads (accuracy, AUROC) are kept beside them in
the :class:`~evoprune.search.evaluator.Evaluation` so that nothing is rounded twice.

Fitness is measured on data the final test never sees: a validation split carved from the
training data (default) or k-fold cross-validation inside it. Scoring on the test set, as the
paper did, is available only when the caller passes that set explicitly, and is flagged leaked.
The unit of work is one chromosome on one fold (:meth:`HeadProblem.evaluate_fold`), so that an
executor may spread folds over workers; :meth:`HeadProblem.evaluate_fold_batch` is its batch form
(rows of one fold sent together) and :meth:`HeadProblem.combine` averages a row's folds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from evoprune.encodings import Encoding, HeadMasks
from evoprune.errors import ConfigError
from evoprune.model.head import (
    TrainedHead,
    TrainerConfig,
    feature_stats,
    get_trainer,
    logits,
    softmax,
    train_head,
)
from evoprune.pareto import OBJECTIVES, objective, to_minimised
from evoprune.progress import report_work
from evoprune.search.evaluator import Evaluation
from evoprune.search.fidelity import FOLD, FULL, SHARED
from evoprune.settings import FitnessSettings, ObjectiveSettings

if TYPE_CHECKING:
    from evoprune.model.shared import SharedRecipe

FITNESS_SPLITS = ("validation", "cv", "test")
#: The objectives measured on the trained heads, here (every other one from the chromosome,
#: by its ``of_mask``: :class:`evoprune.pareto.Objective`).
_ON_HEADS = ("accuracy", "ood")


@dataclass
class Fold:
    """Training data for one head and the data its objectives are measured on."""

    X_fit: np.ndarray
    y_fit: np.ndarray
    X_score: np.ndarray
    y_score: np.ndarray
    stats: tuple[np.ndarray, np.ndarray]


def make_folds(
    X: np.ndarray,
    y: np.ndarray,
    fitness: FitnessSettings,
    *,
    eval_set: tuple[np.ndarray, np.ndarray] | None = None,
    classes: list[str] | None = None,
) -> list[Fold]:
    """The folds that fitness is averaged over (``fitness``: the split, its fraction or number
    of folds, the seed), all inside (X, y) unless ``eval_set`` is given. ``classes`` (names of
    the class indices in ``y``) make split errors name the class.

    ``fitness_split="test"`` needs ``eval_set`` (the caller's test set): fit on all of (X, y),
    score on ``eval_set``.
    """
    from evoprune.data import kfold_splits, stratified_split

    fitness_split, seed = fitness.fitness_split, fitness.seed
    val_fraction, cv_folds = fitness.val_fraction, fitness.cv_folds
    if fitness_split not in FITNESS_SPLITS:
        raise ConfigError(
            f"fitness_split={fitness_split!r} is unknown; choose one of {', '.join(FITNESS_SPLITS)}"
        )
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y)
    if fitness_split == "test":
        if eval_set is None:
            raise ConfigError("fitness_split='test' needs the test set passed as eval_set")
        return [
            Fold(
                X, y, np.asarray(eval_set[0], np.float32), np.asarray(eval_set[1]), feature_stats(X)
            )
        ]
    if fitness_split == "validation":
        if not 0.0 < float(val_fraction) < 1.0:
            raise ConfigError(f"val_fraction={val_fraction} must be between 0 and 1")
        pairs = [stratified_split(y, val_fraction, seed, classes=classes)]
    else:
        if int(cv_folds) < 2:
            raise ConfigError(f"cv_folds={cv_folds} must be at least 2")
        pairs = kfold_splits(y, int(cv_folds), seed, classes=classes)
    return [Fold(X[a], y[a], X[b], y[b], feature_stats(X[a])) for a, b in pairs]


@dataclass
class FoldScore:
    """One chromosome on one fold: the unit of work an executor runs (``probability``: the
    mean probability the trained head gives the true class, a finer score than accuracy)."""

    accuracy: float
    auroc: float | None = None
    probability: float | None = None


@dataclass(frozen=True)
class HeadTraining:
    """How every head of a problem is trained: the trainer's settings (:meth:`of` takes a name
    of :data:`~evoprune.model.head.TRAINERS`), the seed every head starts from and the device it
    trains on (``auto``, ``cpu``, ``cuda``). A run's is
    :attr:`evoprune.runs.context.RunContext.training`."""

    trainer: TrainerConfig = field(default_factory=lambda: get_trainer("fast"))
    seed: int = 0
    device: str = "cpu"

    @classmethod
    def of(cls, trainer: str | TrainerConfig, seed: int = 0, device: str = "cpu") -> HeadTraining:
        """The training with the trainer called ``trainer`` (or that config itself)."""
        return cls(get_trainer(trainer), int(seed), device)

    def train(
        self,
        X: np.ndarray,
        y: np.ndarray,
        masks: HeadMasks,
        n_classes: int,
        stats: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> TrainedHead:
        """The head of ``masks`` trained from scratch on (X, y) (:func:`train_head`)."""
        return train_head(
            X, y, masks, n_classes, self.trainer, seed=self.seed, stats=stats, device=self.device
        )


class HeadProblem:
    """(B, L) chromosomes -> (B, M) minimised objectives of heads trained on each fold.

    Heads of ``encoding`` for ``n_classes`` classes are trained on each of ``folds`` as
    ``training`` says (:class:`HeadTraining`); every evaluation trains from the same seed, so a
    mask always gets the same objectives. ``scoring`` (a run's
    :class:`~evoprune.settings.ObjectiveSettings`) gives the objectives and the OOD score
    (:data:`evoprune.ood.OOD_SCORES`); ``ood_features`` (the search's part of an
    out-of-distribution image set, as backbone features) is needed when they include ``ood``.
    With ``batch_heads`` the heads of a batch train together where the trainer and the encoding
    allow it (:func:`evoprune.model.batched.train_heads`), else one by one; ``shared_recipe``
    is the shared fidelity's recipe (:data:`evoprune.model.shared.DEFAULT_RECIPE` if None).
    """

    def __init__(
        self,
        encoding: Encoding,
        n_classes: int,
        folds: list[Fold],
        training: HeadTraining | None = None,
        scoring: ObjectiveSettings | None = None,
        *,
        ood_features: np.ndarray | None = None,
        batch_heads: bool = True,
        shared_recipe: SharedRecipe | None = None,
    ) -> None:
        self.encoding = encoding
        self.n_classes = int(n_classes)
        self.folds = folds
        self.training = training if training is not None else HeadTraining()
        self.batch_heads = bool(batch_heads)
        scoring = scoring if scoring is not None else ObjectiveSettings()
        names = tuple(scoring.objectives)
        unknown = [n for n in names if n not in OBJECTIVES]
        if unknown or "accuracy" not in names:
            raise ConfigError(
                f"objectives={','.join(names)}: choose from {', '.join(OBJECTIVES)}"
                " (accuracy always included)"
            )
        self.objectives = tuple(n for n in OBJECTIVES if n in names)
        unmeasured = [
            n for n in self.objectives if objective(n).of_mask is None and n not in _ON_HEADS
        ]
        if unmeasured:
            raise ConfigError(
                f"objective(s) {', '.join(unmeasured)} give no of_mask, and the heads measure "
                f"only {', '.join(_ON_HEADS)}: declare how to measure them (evoprune.pareto)"
            )
        if "ood" in self.objectives and (ood_features is None or len(ood_features) == 0):
            raise ConfigError(
                "the ood objective needs out-of-distribution images (--ood PATH "
                "or a built-in set: digits, photos, faces)"
            )
        self.ood_features = None if ood_features is None else np.asarray(ood_features, np.float32)
        self.ood_score = scoring.ood_score
        self.shared_recipe = shared_recipe
        self._shared_heads: list | None = None
        self.shared_seconds = 0.0

    @property
    def trainer(self) -> TrainerConfig:
        return self.training.trainer

    @property
    def seed(self) -> int:
        return self.training.seed

    @property
    def device(self) -> str:
        return self.training.device

    @property
    def n_genes(self) -> int:
        return self.encoding.n_genes

    @property
    def n_obj(self) -> int:
        return len(self.objectives)

    def evaluate_fold(self, chromosome: np.ndarray, fold: int) -> FoldScore:
        """Train the head of ``chromosome`` on fold ``fold`` and score it there."""
        return self.evaluate_fold_batch(np.atleast_2d(chromosome), fold)[0]

    @property
    def batched(self) -> bool:
        """Whether heads train together (the trainer and the encoding are batchable)."""
        from evoprune.model.batched import batchable

        return self.batch_heads and self.encoding.spec.switches_units and batchable(self.trainer)

    def _score(self, head, f: Fold) -> FoldScore:
        """A trained head's accuracy, mean probability of the true class (and OOD AUROC when
        asked) on the fold's scoring part."""
        z = logits(head, f.X_score)  # one forward pass for every score below
        proba = softmax(z)
        y = np.asarray(f.y_score)
        acc = float((proba.argmax(axis=1) == y).mean()) if len(y) else float("nan")
        prob = float(proba[np.arange(len(y)), y].mean()) if len(y) else float("nan")
        auroc = None
        if "ood" in self.objectives and self.ood_features is not None:  # given, by __init__
            from evoprune.ood import auroc as auroc_of
            from evoprune.ood import ood_score

            auroc = auroc_of(
                ood_score(self.ood_score, z),
                ood_score(self.ood_score, logits(head, self.ood_features)),
            )
        return FoldScore(acc, auroc, prob)

    def combine(self, chromosome: np.ndarray, scores: list[FoldScore]) -> Evaluation:
        """The chromosome's objectives from its per-fold scores (means over folds)."""
        acc = float(np.mean([s.accuracy for s in scores]))
        auroc = float(np.mean([s.auroc for s in scores])) if "ood" in self.objectives else None
        on_heads = {"accuracy": acc, "ood": auroc}

        def natural(name: str) -> float | None:
            of_mask = objective(name).of_mask
            return on_heads[name] if of_mask is None else of_mask(chromosome)

        F = np.array([to_minimised(name, natural(name)) for name in self.objectives])
        return Evaluation(F=F, accuracy=acc, auroc=auroc)

    @property
    def n_folds(self) -> int:
        return len(self.folds)

    def evaluate_fold_batch(self, chromosomes: np.ndarray, fold: int) -> list[FoldScore]:
        """Each row of ``chromosomes`` trained and scored on fold ``fold``: the batch form of
        :meth:`evaluate_fold`, what an executor sends to one worker. A row's score does not
        depend on the other rows of the batch (batched heads are padded to shapes of their own;
        a test checks it exactly). Each trained head is reported as ``1 / n_folds`` of an
        evaluation's work (:func:`~evoprune.progress.report_work`) as soon as it is trained."""
        f = self.folds[fold]
        share = 1.0 / self.n_folds
        masks = [self.encoding.decode(c) for c in np.atleast_2d(chromosomes)]
        args = (f.X_fit, f.y_fit)
        if self.batched:
            from evoprune.model.batched import train_heads

            trained = train_heads(
                *args,
                masks,
                self.n_classes,
                self.trainer,
                self.seed,
                f.stats,
                self.device,
                on_trained=lambda k: report_work(k * share),
            )
        else:
            trained = []
            for m in masks:
                trained.append(self.training.train(*args, m, self.n_classes, f.stats))
                report_work(share)
        return [self._score(t.head, f) for t in trained]

    def evaluate_one(self, chromosome: np.ndarray) -> Evaluation:
        return self.evaluate(np.atleast_2d(chromosome))[0]

    def evaluate(self, chromosomes: np.ndarray) -> list[Evaluation]:
        """Every row on every fold (one batch per fold), combined per row."""
        chromosomes = np.atleast_2d(chromosomes)
        per_fold = [self.evaluate_fold_batch(chromosomes, k) for k in range(self.n_folds)]
        return [
            self.combine(c, [scores[i] for scores in per_fold]) for i, c in enumerate(chromosomes)
        ]

    def accuracy(self, chromosomes: np.ndarray) -> np.ndarray:
        """The fitness (mean accuracy over folds) of each chromosome."""
        return np.array([e.accuracy for e in self.evaluate(chromosomes)])

    # --- fidelities: how else a mask can be scored than by training it on every fold ---------

    @property
    def fidelities(self) -> tuple[str, ...]:
        """The levels a mask can be scored at, cheapest first (the rungs of a multi-fidelity
        search): ``shared`` (a forward pass of the fold's shared head), ``fold`` (full
        training on the first fold; only when there are several) and ``full`` (every fold)."""
        return (SHARED, FOLD, FULL) if self.n_folds > 1 else (SHARED, FULL)

    def evaluate_at(self, chromosomes: np.ndarray, fidelity: str) -> list[Evaluation]:
        """Each row scored at ``fidelity`` (one of :attr:`fidelities`)."""
        chromosomes = np.atleast_2d(chromosomes)
        if fidelity == FULL:
            return self.evaluate(chromosomes)
        if fidelity == FOLD and FOLD in self.fidelities:
            scores = self.evaluate_fold_batch(chromosomes, 0)
            return [self.combine(c, [s]) for c, s in zip(chromosomes, scores)]
        if fidelity != SHARED:
            raise ConfigError(
                f"fidelity {fidelity!r} is unknown here; choose one of {', '.join(self.fidelities)}"
            )
        per_fold = [self._shared_fold(chromosomes, k) for k in range(self.n_folds)]
        return [
            self.combine(c, [scores[i] for scores in per_fold]) for i, c in enumerate(chromosomes)
        ]

    def shared_heads(self) -> list:
        """One shared head per fold, trained on the fold's training part on first use
        (:func:`evoprune.model.shared.train_shared_head`)."""
        if self._shared_heads is None:
            import time

            from evoprune.model.shared import DEFAULT_RECIPE, train_shared_head

            t0 = time.perf_counter()
            self._shared_heads = [
                train_shared_head(
                    f.X_fit,
                    f.y_fit,
                    self.encoding,
                    self.n_classes,
                    seed=self.seed,
                    stats=f.stats,
                    recipe=self.shared_recipe or DEFAULT_RECIPE,
                )
                for f in self.folds
            ]
            self.shared_seconds = time.perf_counter() - t0
        return self._shared_heads

    def _shared_fold(self, chromosomes: np.ndarray, fold: int) -> list[FoldScore]:
        """Each row's score on fold ``fold`` by a masked forward pass of its shared head: the
        mean probability it gives the true class (or its accuracy, as the recipe says)."""
        from evoprune.model.shared import DEFAULT_RECIPE, shared_logits, shared_scores

        f, head = self.folds[fold], self.shared_heads()[fold]
        recipe = self.shared_recipe or DEFAULT_RECIPE
        rescale = recipe.rescale
        logits = shared_logits(head, self.encoding, chromosomes, f.X_score, rescale=rescale)
        acc = shared_scores(head, self.encoding, chromosomes, f.X_score, f.y_score, recipe, logits)
        aurocs: list[float | None] = [None] * len(chromosomes)
        if "ood" in self.objectives and self.ood_features is not None:
            from evoprune.ood import auroc as auroc_of
            from evoprune.ood import ood_score

            out = shared_logits(
                head, self.encoding, chromosomes, self.ood_features, rescale=rescale
            )
            aurocs = [
                auroc_of(ood_score(self.ood_score, a), ood_score(self.ood_score, b))
                for a, b in zip(logits, out)
            ]
        return [FoldScore(float(a), u) for a, u in zip(acc, aurocs)]

    def __call__(self, chromosomes: np.ndarray) -> np.ndarray:
        """(B, M) minimised objectives."""
        return np.stack([e.F for e in self.evaluate(chromosomes)])
