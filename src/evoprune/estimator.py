"""A scikit-learn style classifier on feature matrices that evolves its own pruned head."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from .encodings import ENCODINGS, make_encoding
from .errors import ConfigError
from evoprune.problem import FITNESS_SPLITS, HeadFitness, make_folds
from evoprune.model.head import feature_stats, get_trainer, predict_proba, train_head
from .search import EvaluationRecord, SteadyStateGA

log = logging.getLogger(__name__)

#: The paper's budgets: 200 evaluations for one-layer encodings and FS, 300 for both layers.
DEFAULT_EVALUATIONS = {"both": 300}


def default_evaluations(encoding: str) -> int:
    return DEFAULT_EVALUATIONS.get(encoding, 200)


class EvoPruneClassifier(ClassifierMixin, BaseEstimator):
    """EvoPruneDeepTL on features: a GA picks which head units to keep, then the best mask's
    head is retrained on all of ``X`` and used for prediction.

    Parameters follow the paper's defaults. ``fitness_split`` is ``"validation"`` (a stratified
    ``val_fraction`` of the training data) or ``"cv"`` (``cv_folds``-fold cross-validation); pass
    ``eval_set=(X, y)`` to ``fit`` to score fitness on other data instead (the paper scored on its
    test set, which leaks it into the search).

    Learned attributes: ``classes_``, ``n_features_in_``, ``best_mask_`` (0/1 chromosome),
    ``best_fitness_``, ``history_`` (one dict per evaluation), ``masks_`` (decoded unit masks),
    ``head_`` (the trained compact torch head), ``search_`` (the GA result).

    When it knows its backbone (``backbone_``, set by :func:`evoprune.load`), ``predict``,
    ``predict_proba`` and ``score`` also take images: a list of paths or PIL images, a 4-d uint8
    array of HxWxC images, or a 4-d float array of preprocessed (N, 3, H, W) inputs.
    """

    def __init__(self, encoding: str = "fs", hidden_size: int = 512, population: int = 30,
                 evaluations: int | None = None, trainer: str = "fast",
                 fitness_split: str = "validation", val_fraction: float = 0.2,
                 cv_folds: int = 5, init: str = "random", mutation_prob: float = 0.07,
                 random_state: int = 0):
        self.encoding = encoding
        self.hidden_size = hidden_size
        self.population = population
        self.evaluations = evaluations
        self.trainer = trainer
        self.fitness_split = fitness_split
        self.val_fraction = val_fraction
        self.cv_folds = cv_folds
        self.init = init
        self.mutation_prob = mutation_prob
        self.random_state = random_state

    def _check_params(self) -> None:
        if self.encoding not in ENCODINGS:
            raise ConfigError(
                f"encoding={self.encoding!r} is unknown; choose one of {', '.join(ENCODINGS)}")
        get_trainer(self.trainer)
        if self.fitness_split not in FITNESS_SPLITS:
            raise ConfigError(f"fitness_split={self.fitness_split!r} is unknown; choose "
                              "'validation', 'cv' or 'test' (the last needs eval_set)")

    def fit(self, X, y, eval_set: tuple | None = None,
            on_evaluation: Callable[[EvaluationRecord], None] | None = None,
            known_fitness: dict[bytes, float] | None = None) -> "EvoPruneClassifier":
        """Search on (X, y), then retrain the best mask's head on all of (X, y).

        ``on_evaluation`` is called with each evaluation's record (progress, logging).
        ``known_fitness`` maps chromosome bytes to fitness values from an interrupted run of the
        same configuration; they are reused instead of retraining (resuming).
        """
        self._check_params()
        X, y = self._validate_data_xy(X, y)
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ConfigError(f"y has {len(self.classes_)} class; at least 2 are needed")
        fitness_split = "test" if eval_set is not None else self.fitness_split
        eval_idx = None
        if eval_set is not None:
            X_eval, y_eval = eval_set
            eval_idx = (np.asarray(X_eval, dtype=np.float32), self._encode_labels(y_eval))
        seed = int(self.random_state)
        enc = make_encoding(self.encoding, X.shape[1], self.hidden_size)
        evaluations = self.evaluations or default_evaluations(self.encoding)
        folds = make_folds(X, y_idx, fitness_split, seed=seed, val_fraction=self.val_fraction,
                           cv_folds=self.cv_folds, eval_set=eval_idx)
        problem = HeadFitness(enc, len(self.classes_), folds, self.trainer, seed)
        evaluate = problem if not known_fitness else _with_known(problem, known_fitness)
        ga = SteadyStateGA(population=self.population, evaluations=evaluations,
                           mutation_prob=self.mutation_prob, init=self.init, seed=seed)
        t0 = time.perf_counter()
        self.search_ = ga.run(enc.n_genes, evaluate, on_evaluation)
        self.search_seconds_ = time.perf_counter() - t0
        self.encoding_ = enc
        self.best_mask_ = self.search_.best.astype(np.uint8)
        self.best_fitness_ = float(self.search_.best_fitness)
        self.history_ = [r.as_row() for r in self.search_.history]
        self.masks_ = enc.decode(self.best_mask_)
        t0 = time.perf_counter()
        self.head_ = train_head(X, y_idx, self.masks_, len(self.classes_), self.trainer,
                                seed=seed, stats=feature_stats(X)).head
        self.final_train_seconds_ = time.perf_counter() - t0
        return self

    def _validate_data_xy(self, X, y):
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2:
            raise ConfigError(f"X must be a 2-d feature matrix, got shape {X.shape}")
        y = np.asarray(y)
        if len(y) != len(X):
            raise ConfigError(f"X has {len(X)} rows but y has {len(y)} labels")
        check_classification_targets(y)
        self.n_features_in_ = X.shape[1]
        return X, y

    def _encode_labels(self, y) -> np.ndarray:
        y = np.asarray(y)
        idx = np.searchsorted(self.classes_, y)
        idx = np.clip(idx, 0, len(self.classes_) - 1)
        unknown = self.classes_[idx] != y
        if unknown.any():
            raise ConfigError(f"labels {sorted(set(y[unknown].tolist()))[:5]} were not in the "
                              "training labels")
        return idx

    def _features(self, X) -> np.ndarray:
        check_is_fitted(self, "head_")
        if _looks_like_images(X):
            X = self._image_features(X)
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ConfigError(f"X has shape {X.shape}; expected (n, {self.n_features_in_})")
        return X

    def _image_features(self, X) -> np.ndarray:
        """Features of images computed with the backbone the head was trained on."""
        from .backbones import get_backbone
        from .features import ImageFeatures

        backbone = getattr(self, "backbone_", None)
        if backbone is None:
            raise ConfigError("X looks like images, but this classifier was fitted on feature "
                              "matrices and knows no backbone; pass features (for example from "
                              "evoprune.features.ImageFeatures) or a classifier from "
                              "evoprune.load(RUN_DIR)")
        if getattr(X, "ndim", None) == 4 and np.asarray(X).dtype != np.uint8:
            return get_backbone(backbone).features(np.asarray(X, dtype=np.float32))
        return ImageFeatures(backbone, use_cache=False).transform(list(X))

    def predict_proba(self, X) -> np.ndarray:
        return predict_proba(self.head_, self._features(X))

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    @property
    def active_fraction_(self) -> float:
        check_is_fitted(self, "best_mask_")
        return float(self.best_mask_.mean())


def _looks_like_images(X) -> bool:
    """A non-empty list/tuple of paths or PIL images, or a 4-d array (a batch of images)."""
    if isinstance(X, (list, tuple)):
        from PIL import Image

        return bool(X) and all(isinstance(x, (str, os.PathLike, Image.Image)) for x in X)
    return getattr(X, "ndim", None) == 4


def _with_known(problem: Callable[[np.ndarray], np.ndarray], known: dict[bytes, float]):
    """An evaluate function that takes fitness from ``known`` where it can."""
    def evaluate(chroms: np.ndarray) -> np.ndarray:
        out = np.empty(len(chroms))
        missing = [i for i, c in enumerate(chroms) if c.tobytes() not in known]
        for i, c in enumerate(chroms):
            out[i] = known.get(c.tobytes(), np.nan)
        if missing:
            out[missing] = problem(chroms[missing])
        return out
    return evaluate
