"""The problem the search solves: a batch of chromosomes -> the accuracy of their trained heads.

Fitness is measured on data the final test never sees: a validation split carved from the
training data (default) or k-fold cross-validation inside it. Scoring on the test set, as the
paper did, is available only when the caller passes that set explicitly, and is flagged leaked.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .encodings import Encoding
from .errors import ConfigError
from evoprune.model.head import TrainerConfig, accuracy, feature_stats, get_trainer, train_head

FITNESS_SPLITS = ("validation", "cv", "test")


@dataclass
class Fold:
    """Training data for one head and the data its accuracy is measured on."""

    X_fit: np.ndarray
    y_fit: np.ndarray
    X_score: np.ndarray
    y_score: np.ndarray
    stats: tuple[np.ndarray, np.ndarray]


def make_folds(X: np.ndarray, y: np.ndarray, fitness_split: str, *, seed: int,
               val_fraction: float = 0.2, cv_folds: int = 5,
               eval_set: tuple[np.ndarray, np.ndarray] | None = None) -> list[Fold]:
    """The folds that fitness is averaged over, all inside (X, y) unless ``eval_set`` is given.

    ``fitness_split="test"`` needs ``eval_set`` (the caller's test set): fit on all of (X, y),
    score on ``eval_set``.
    """
    from .data import kfold_splits, stratified_split

    if fitness_split not in FITNESS_SPLITS:
        raise ConfigError(
            f"fitness_split={fitness_split!r} is unknown; choose one of {', '.join(FITNESS_SPLITS)}")
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y)
    if fitness_split == "test":
        if eval_set is None:
            raise ConfigError("fitness_split='test' needs the test set passed as eval_set")
        return [Fold(X, y, np.asarray(eval_set[0], np.float32), np.asarray(eval_set[1]),
                     feature_stats(X))]
    if fitness_split == "validation":
        if not 0.0 < float(val_fraction) < 1.0:
            raise ConfigError(f"val_fraction={val_fraction} must be between 0 and 1")
        pairs = [stratified_split(y, val_fraction, seed)]
    else:
        if int(cv_folds) < 2:
            raise ConfigError(f"cv_folds={cv_folds} must be at least 2")
        pairs = kfold_splits(y, int(cv_folds), seed)
    return [Fold(X[a], y[a], X[b], y[b], feature_stats(X[a])) for a, b in pairs]


class HeadFitness:
    """Callable problem: (B, L) chromosomes -> B fitness values (mean accuracy over folds).

    Every evaluation trains from the same ``seed``, so a mask always gets the same fitness.
    """

    def __init__(self, encoding: Encoding, n_classes: int, folds: list[Fold],
                 trainer: str | TrainerConfig = "fast", seed: int = 0):
        self.encoding = encoding
        self.n_classes = int(n_classes)
        self.folds = folds
        self.trainer = get_trainer(trainer)
        self.seed = int(seed)

    def evaluate_one(self, chromosome: np.ndarray) -> float:
        masks = self.encoding.decode(chromosome)
        scores = []
        for fold in self.folds:
            trained = train_head(fold.X_fit, fold.y_fit, masks, self.n_classes, self.trainer,
                                 seed=self.seed, stats=fold.stats)
            scores.append(accuracy(trained.head, fold.X_score, fold.y_score))
        return float(np.mean(scores))

    def __call__(self, chromosomes: np.ndarray) -> np.ndarray:
        return np.array([self.evaluate_one(c) for c in np.atleast_2d(chromosomes)])
