"""Seeded, stratified splits of a label vector: one hold-out split, or k folds."""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral, Real

import numpy as np
from sklearn.model_selection import StratifiedKFold

from evoprune.errors import ConfigError, DataError


def stratified_split(
    labels: np.ndarray,
    test_fraction: float,
    seed: int,
    *,
    classes: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Split positions 0..len(labels)-1 into (keep_idx, held_idx), both sorted.

    Each class puts round(n_c * test_fraction) of its n_c samples in the held part, but at least
    one and at most n_c - 1, so both parts see every class. The same labels and seed always give
    the same split. `classes` (index -> name) only makes error messages name the class.
    """
    y = _check_labels(labels)
    if (
        isinstance(test_fraction, bool)
        or not isinstance(test_fraction, Real)
        or not 0.0 < float(test_fraction) < 1.0
    ):
        raise ConfigError(
            f"test_fraction must be a number strictly between 0 and 1, got {test_fraction!r}"
        )
    _require_per_class(
        y,
        2,
        classes,
        "a stratified hold-out split",
        "so that both the kept and the held-out part get one",
        (),
    )
    rng = np.random.default_rng(seed)
    held: list[np.ndarray] = []
    for value in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == value))
        n_held = min(max(int(round(len(members) * float(test_fraction))), 1), len(members) - 1)
        held.append(members[:n_held])
    held_idx = np.sort(np.concatenate(held)).astype(np.int64)
    keep_mask = np.ones(len(y), dtype=bool)
    keep_mask[held_idx] = False
    return np.flatnonzero(keep_mask).astype(np.int64), held_idx


def kfold_splits(
    labels: np.ndarray,
    k: int,
    seed: int,
    *,
    classes: Sequence[str] | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified k-fold: k pairs (train_pos, val_pos), sorted, the val parts partition all
    positions. Seeded shuffling; `classes` (index -> name) only makes error messages name the class.
    """
    y = _check_labels(labels)
    if isinstance(k, bool) or not isinstance(k, Integral) or k < 2:
        raise ConfigError(f"k (number of folds) must be an integer of at least 2, got {k!r}")
    _require_per_class(
        y,
        int(k),
        classes,
        f"a {k}-fold split",
        "so that every fold validates on each class",
        ("use fewer folds",),
    )
    splitter = StratifiedKFold(n_splits=int(k), shuffle=True, random_state=seed)
    return [
        (np.sort(tr).astype(np.int64), np.sort(va).astype(np.int64))
        for tr, va in splitter.split(np.zeros(len(y)), y)
    ]


def _check_labels(labels: np.ndarray) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1 or y.size == 0:
        raise DataError(f"labels must be a non-empty 1-D array, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"labels must be integer class indices, got dtype {y.dtype}")
    return y


def _require_per_class(
    y: np.ndarray,
    minimum: int,
    classes: Sequence[str] | None,
    split: str,
    why: str,
    more_fixes: Sequence[str],
) -> None:
    """DataError naming each class (its folder or label name when `classes` is given) that has
    fewer than `minimum` samples."""
    values, counts = np.unique(y, return_counts=True)
    short = [(int(v), int(n)) for v, n in zip(values, counts) if n < minimum]
    if short:
        one = len(short) == 1
        listed = ", ".join(f"{_class_name(v, classes)} has {n}" for v, n in short)
        fixes = [
            f"add images to {'that class' if one else 'those classes'}",
            f"remove {'it' if one else 'them'}",
            *more_fixes,
        ]
        raise DataError(
            f"too few images for {split}: {listed}; each class needs at least {minimum} {why}: "
            f"{', '.join(fixes[:-1])} or {fixes[-1]}"
        )


def _class_name(value: int, classes: Sequence[str] | None) -> str:
    """'class 'cup'' when the names are known, else 'label 2' (the value is all we have)."""
    if classes is not None and 0 <= value < len(classes):
        return f"class {classes[value]!r}"
    return f"label {value}"
