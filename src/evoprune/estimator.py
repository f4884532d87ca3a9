"""A scikit-learn style classifier on feature matrices that evolves its own pruned head."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from evoprune.devices import resolve_device
from evoprune.encodings import make_encoding
from evoprune.model.head import predict_proba
from evoprune.progress import WorkBar
from evoprune.runs.config import (
    default_evaluations,
    validate_estimator_params,
)
from evoprune.runs.context import RunContext
from evoprune.runs.evolve import evolve
from evoprune.runs.front import choose
from evoprune.runs.store import HISTORY_FILE, RESULT_FILE, open_run, read_history
from evoprune.search import EvaluationRecord

from .errors import ConfigError, EvoPruneError

log = logging.getLogger(__name__)

__all__ = ["EvoPruneClassifier", "default_evaluations", "load"]

#: Parameters of the estimator that are not run settings (they change no result).
OUTPUT_PARAMS = {"verbose": 0}


class EvoPruneClassifier(ClassifierMixin, BaseEstimator):
    """EvoPruneDeepTL on features: a GA picks which head units to keep, then the best mask's
    head is retrained on all of ``X`` and used for prediction.

    Parameters are the estimator's share of the run settings declared in
    :mod:`evoprune.runs.config` (same names as the command-line options; ``random_state`` is
    ``--seed``), with the paper's defaults, and are validated there when ``fit`` starts.
    ``fitness_split`` is ``"validation"`` (a stratified ``val_fraction`` of the training data) or
    ``"cv"`` (``cv_folds``-fold cross-validation); pass ``eval_set=(X, y)`` to ``fit`` to score
    fitness on other data instead (the paper scored on its test set, which leaks it into the
    search). ``objectives``, ``algorithm``, ``select`` and ``ood_score`` choose the
    multi-objective search (see the command line's help). ``init="ranked"`` (the default for
    encodings that switch units) starts from the rankings of the units, scored on the fitness
    split's training part; ``variation="guided"`` (its default) varies children by those
    scores, learning from the evaluations; ``init="random", variation="paper"`` is the paper's
    GA. ``device`` (``auto``, ``cpu``,
    ``cuda``) is where heads train; the fitted head is always on the CPU. ``verbose`` (not a
    run setting: it changes nothing in the result) above 0 draws progress bars of the search
    and the final training.

    ``fidelity`` (``full``, ``shared``, ``multi``) is how the search scores a mask, with
    ``shared_evaluations`` its budget of shared-head evaluations; ``final_check`` (``none``,
    ``cv``, ``cv-prob``; default ``cv-prob`` unless ``fidelity`` is ``full``),
    ``final_check_folds`` and ``final_check_top`` re-score the best candidates by
    cross-validation on ``X`` before one is fitted (see the command line's help). ``sizes``
    (fractions of the units, e.g. ``(0.02, 0.05)``) puts every ranking's top-k at exactly those
    sizes in a ranked start and, with accuracy and size, has the final check re-score the best
    heads at or below each (and every ranking's top-k there).

    Learned attributes: ``classes_``, ``n_features_in_``, ``best_mask_`` (0/1 chromosome),
    ``best_fitness_``, ``check_accuracy_`` (the final check's cross-validated accuracy of
    ``best_mask_``, None without it: the score it was chosen by, a ranking's top-k scored as
    the ranking made again inside each fold; on the bundled image sets 0.30 points below
    held-out accuracy on average, per set from 1.35 below to 0.20 above; held-out images give
    the figure to report), ``history_`` (one dict per evaluation, its
    ``fidelity`` included), ``masks_`` (decoded unit masks),
    ``head_`` (the trained compact torch head), ``search_`` (the search result).

    When it knows its backbone (``backbone_``, set by :func:`evoprune.load`), ``predict``,
    ``predict_proba`` and ``score`` also take images: a list of paths or PIL images, a 4-d uint8
    array of HxWxC images, or a 4-d float array of preprocessed (N, 3, H, W) inputs.

    Examples
    --------
    >>> import numpy as np
    >>> from evoprune import EvoPruneClassifier
    >>> X = np.random.default_rng(0).normal(size=(60, 8)).astype("float32")
    >>> y = (X[:, 0] > 0).astype(int)
    >>> clf = EvoPruneClassifier(hidden_size=8, population=4, evaluations=6).fit(X, y)
    >>> clf.predict(X[:3]).shape
    (3,)
    """

    # Explicit (scikit-learn reads the signature); names and defaults must equal
    # evoprune.runs.config.estimator_defaults() followed by OUTPUT_PARAMS, which a test asserts.
    def __init__(
        self,
        encoding: str = "fs",
        hidden_size: int = 512,
        population: int = 30,
        evaluations: int | None = None,
        trainer: str = "fast",
        fitness_split: str = "validation",
        val_fraction: float = 0.2,
        cv_folds: int = 5,
        init: str | None = None,
        mutation_prob: float = 0.07,
        variation: str | None = None,
        random_state: int = 0,
        objectives: tuple[str, ...] = ("accuracy",),
        algorithm: str = "auto",
        select: str | None = None,
        ood_score: str = "energy",
        device: str = "auto",
        fidelity: str = "full",
        shared_evaluations: int | None = None,
        final_check: str | None = None,
        final_check_folds: int = 5,
        final_check_top: int = 16,
        sizes: tuple[float, ...] | str | None = None,
        verbose: int = 0,
    ):
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
        self.variation = variation
        self.random_state = random_state
        self.objectives = objectives
        self.algorithm = algorithm
        self.select = select
        self.ood_score = ood_score
        self.device = device
        self.fidelity = fidelity
        self.shared_evaluations = shared_evaluations
        self.final_check = final_check
        self.final_check_folds = final_check_folds
        self.final_check_top = final_check_top
        self.sizes = sizes
        self.verbose = verbose

    def _validated_params(self) -> dict:
        """The parameters checked by the run settings' one validation, resolved
        (``evaluations``, ``algorithm``, ``select`` filled in); ConfigError names the culprit."""
        return validate_estimator_params(self.get_params(deep=False))

    def fit(
        self,
        X,
        y,
        eval_set: tuple | None = None,
        on_evaluation: Callable[[EvaluationRecord], None] | None = None,
        known: dict | None = None,
        X_ood=None,
    ) -> EvoPruneClassifier:
        """Search on (X, y), then retrain the best mask's head on all of (X, y).

        ``on_evaluation`` is called with each evaluation's record (progress, logging).
        ``known`` maps chromosome bytes to the :class:`~evoprune.search.Evaluation` s of an
        interrupted run of the same configuration; they are reused instead of retraining
        (resuming). ``X_ood`` are features of out-of-distribution images, needed when the
        objectives include ``ood``.

        With several objectives, ``pareto_`` describes the front (one entry per non-dominated
        head, smallest first) and the head that ``select`` picks is the one fitted and used.
        """
        context = self._context(X, y, eval_set, X_ood)
        cfg = context.cfg
        evolved = evolve(
            context,
            callbacks=[on_evaluation] if on_evaluation else [],
            known=known,
            progress=bool(self.verbose),
        )
        enc = evolved.encoding
        self.search_ = evolved.result
        self.search_seconds_ = evolved.seconds
        self.encoding_ = enc
        self.history_ = [r.as_row() for r in self.search_.history]
        choice = choose(context, evolved, progress=bool(self.verbose))
        if len(cfg.objectives) > 1:
            self._pareto(choice)
        chosen = self.search_.history[choice.row]
        mask, fitness = chosen.mask(), chosen.fitness
        self.check_accuracy_ = None if choice.checked is None else choice.checked[choice.pick]
        self.best_mask_ = mask.astype(np.uint8)
        self.best_fitness_ = float(fitness)
        self.masks_ = enc.decode(self.best_mask_)
        t0 = time.perf_counter()
        with WorkBar(1, desc="final training", unit="head", enabled=bool(self.verbose)) as bar:
            self.head_ = context.train(self.best_mask_)
            bar.done()
        self.final_train_seconds_ = time.perf_counter() - t0
        return self

    def _context(self, X, y, eval_set: tuple | None, X_ood) -> RunContext:
        """The run context of a fit, after every check of the parameters and the data
        (``classes_`` set)."""
        params = self._validated_params()
        X, y = self._validate_data_xy(X, y)
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ConfigError(f"y has {len(self.classes_)} class; at least 2 are needed")
        if params["fitness_split"] == "test" and eval_set is None:
            raise ConfigError(
                "fitness_split='test' scores fitness on a test set: pass it to fit "
                "as eval_set=(X_test, y_test), or use 'validation' or 'cv'"
            )
        eval_idx = None if eval_set is None else self._checked_eval_set(eval_set)
        cfg = self._run_config()
        resolve_device(cfg.device)  # device="cuda" without a GPU stops here
        if X_ood is not None:
            X_ood = self._check_features(X_ood, "X_ood")
        elif "ood" in cfg.objectives:
            raise ConfigError(
                "objectives include ood: pass features of out-of-distribution "
                "images to fit as X_ood=..."
            )
        return RunContext.of_arrays(
            cfg, X, y_idx, [str(c) for c in self.classes_], eval_set=eval_idx, ood_search=X_ood
        )

    def _checked_eval_set(self, eval_set: tuple) -> tuple[np.ndarray, np.ndarray]:
        """``eval_set`` as (features, class indices), checked like ``X`` and ``y``."""
        X_eval, y_eval = eval_set
        X_eval = self._check_features(X_eval, "eval_set's X")
        y_eval = np.asarray(y_eval)
        if y_eval.ndim != 1 or len(y_eval) != len(X_eval):
            raise ConfigError(
                f"eval_set has {len(X_eval)} rows of X but y of shape "
                f"{y_eval.shape}; give one label per row"
            )
        return X_eval, self._encode_labels(y_eval)

    def _pareto(self, choice) -> None:
        """Set ``pareto_`` (the front, smallest head first; ``check_accuracy`` when the final
        check re-scored it) from the search's :class:`~evoprune.runs.front.Choice`."""
        idx, pick = choice.rows, choice.pick
        rows = [self.search_.history[i] for i in idx]
        self.pareto_ = {
            "active_fraction": np.array([r.active_fraction for r in rows]),
            "active_genes": np.array([r.active_genes for r in rows]),
            "fitness": np.array([r.fitness for r in rows]),
            "auroc": np.array([np.nan if r.auroc is None else r.auroc for r in rows]),
            "selected": np.arange(len(rows)) == pick,
            "mask": np.stack([r.mask() for r in rows]).astype(np.uint8),
        }
        if choice.checked is not None:
            self.pareto_["check_accuracy"] = np.asarray(choice.checked)
            self.pareto_["check_probability"] = np.asarray(choice.probability)

    def _run_config(self):
        """The estimator's parameters as a validated run configuration (one declaration)."""
        from evoprune.runs.config import config_from_estimator_params

        return config_from_estimator_params(self.get_params(deep=False))

    def _validate_data_xy(self, X, y):
        """(X, y) as scikit-learn validates them (2-d dense float X, 1-d y, same length, no
        empty data; sets ``n_features_in_``), finite features and classification labels."""
        try:
            X, y = validate_data(self, X, y, dtype=np.float32, ensure_all_finite=False)
            check_classification_targets(y)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        _refuse_non_finite(X, "X")
        return X, y

    def _check_features(self, X, what: str = "X") -> np.ndarray:
        """A 2-d finite float matrix with the fitted number of features (scikit-learn's
        message: "X has 5 features, but EvoPruneClassifier is expecting 24 ...")."""
        try:
            if what == "X":
                X = validate_data(self, X, reset=False, dtype=np.float32, ensure_all_finite=False)
            else:
                X = check_array(X, dtype=np.float32, ensure_all_finite=False)
                if X.shape[1] != self.n_features_in_:
                    raise ValueError(
                        f"{what} has {X.shape[1]} features, but "
                        f"{type(self).__name__} is expecting "
                        f"{self.n_features_in_} features as input."
                    )
        except ValueError as exc:
            hint = (
                ""
                if "features as input" not in str(exc)
                else " Give features from the same extractor the classifier was fitted on."
            )
            raise ConfigError(f"{exc}{hint}") from None
        _refuse_non_finite(X, what)
        return X

    def _encode_labels(self, y) -> np.ndarray:
        y = np.asarray(y)
        idx = np.searchsorted(self.classes_, y)
        idx = np.clip(idx, 0, len(self.classes_) - 1)
        unknown = self.classes_[idx] != y
        if unknown.any():
            raise ConfigError(
                f"labels {sorted(set(y[unknown].tolist()))[:5]} were not in the training labels"
            )
        return idx

    def _features(self, X) -> np.ndarray:
        check_is_fitted(self)
        if _looks_like_images(X):
            X = self._image_features(X)
        return self._check_features(X)

    def _image_features(self, X) -> np.ndarray:
        """Features of images computed with the backbone the head was trained on."""
        from .backbones import get_backbone
        from .features import ImageFeatures

        backbone = getattr(self, "backbone_", None)
        if backbone is None:
            raise ConfigError(
                "X looks like images, but this classifier was fitted on feature "
                "matrices and knows no backbone; pass features (for example from "
                "evoprune.features.ImageFeatures) or a classifier from "
                "evoprune.load(RUN_DIR)"
            )
        if getattr(X, "ndim", None) == 4 and np.asarray(X).dtype != np.uint8:
            return get_backbone(backbone).features(np.asarray(X, dtype=np.float32))
        return ImageFeatures(backbone, use_cache=False).transform(list(X))

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self)
        return predict_proba(self.head_, self._features(X))

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self)
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    @property
    def active_fraction_(self) -> float:
        check_is_fitted(self, "best_mask_")
        return float(self.best_mask_.mean())


def _refuse_non_finite(X: np.ndarray, what: str) -> None:
    """NaN or inf features would train NaN heads without a word: refuse them, naming rows."""
    bad = ~np.isfinite(X)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise ConfigError(
            f"{what} contains NaN or infinite values (inf) in {len(rows)} row(s), the first "
            f"{rows[:5].tolist()}; features must be finite: recompute them (a damaged feature "
            "cache?) or drop those rows"
        )


def _looks_like_images(X) -> bool:
    """A non-empty list/tuple of paths or PIL images, or a 4-d array (a batch of images)."""
    if isinstance(X, (list, tuple)):
        from PIL import Image

        return bool(X) and all(isinstance(x, (str, os.PathLike, Image.Image)) for x in X)
    return getattr(X, "ndim", None) == 4


def load(run_dir: str | Path, rank: int | None = None) -> EvoPruneClassifier:
    """A fitted :class:`~evoprune.estimator.EvoPruneClassifier` from a run folder.

    It predicts on feature matrices of the run's backbone and, because it knows that backbone
    (``backbone_``), on images too: a list of paths or PIL images, or a 4-d array.
    ``classes_`` are the run's class names. ``rank`` takes front member ``rank`` of a
    multi-objective run (pareto.csv) instead of the shipped head.
    """
    run = open_run(run_dir)
    r, cfg = run.result, run.run_config
    params: dict[str, Any] = {"encoding": r.encoding, "hidden_size": r.hidden_size}
    accepted = EvoPruneClassifier().get_params()
    for name, value in cfg.items():
        if name in accepted and name not in params:
            params[name] = tuple(value) if isinstance(value, list) else value
    params["random_state"] = r.seed
    clf = EvoPruneClassifier(**params)
    head = run.head(rank=rank)
    encoding = make_encoding(r.encoding, r.feature_dim, r.hidden_size, r.n_classes)
    best_mask = run.mask(rank)
    try:
        masks = encoding.decode(best_mask)
    except EvoPruneError as exc:
        raise EvoPruneError(f"{run.path / RESULT_FILE}: best_mask does not fit: {exc}") from None
    expected = masks.sizes + (len(r.classes),)
    if head.sizes != expected or not np.array_equal(
        head.feature_index.numpy(), np.flatnonzero(masks.features)
    ):
        raise EvoPruneError(
            f"{run.head_path(rank=rank)} (layer sizes {head.sizes}) does not match the "
            f"{'best' if rank is None else f'rank {rank}'} mask in result.json (sizes "
            f"{expected}); the folder is "
            "inconsistent: run the experiment again"
        )
    clf.classes_ = np.asarray(r.classes)
    clf.n_features_in_ = r.feature_dim
    clf.encoding_ = encoding
    clf.best_mask_ = best_mask
    clf.masks_ = masks
    clf.head_ = head
    clf.backbone_ = run.backbone  # a spec's file resolved from the folder
    member = None if rank is None else run.front_member(rank)
    clf.best_fitness_ = float(r.fitness if member is None else member["fitness"])
    clf.check_accuracy_ = r.check_accuracy if member is None else member.get("check_accuracy")
    history = run.path / HISTORY_FILE
    clf.history_ = [rec.as_row() for rec in read_history(history)] if history.is_file() else []
    clf.run_dir_ = run.path
    return clf
