"""The dataset record every loader returns: image paths, integer labels and any given splits."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import numpy as np

from evoprune.errors import DataError


@dataclass
class ImageDataset:
    """Paths and labels of a set of images; pixels stay on disk.

    `paths[i]` has class `classes[labels[i]]`. `test_idx` holds the indices of a test set that
    came with the data (train/ and test/ folders, or a CSV split column), `val_idx` those of a
    given validation set (a validation/ folder beside them: the fitness split); `folds` holds
    the (train_idx, test_idx) pair of each partition of a k-fold layout. `skipped` lists the
    files left out as unreadable when loading with skip_bad=True.
    """

    name: str
    paths: list[str]
    labels: np.ndarray
    classes: list[str]
    test_idx: np.ndarray | None = None
    folds: list[tuple[np.ndarray, np.ndarray]] | None = None
    skipped: list[str] = field(default_factory=list)
    val_idx: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if self.labels.shape != (len(self.paths),):
            raise ValueError(
                f"labels has shape {self.labels.shape}, expected ({len(self.paths)},) "
                "to match paths"
            )

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.paths)

    def class_counts(self) -> dict[str, int]:
        """Number of images per class name, in class index order."""
        counts = np.bincount(self.labels, minlength=self.n_classes)
        return {name: int(n) for name, n in zip(self.classes, counts)}


def drop_paths(dataset: ImageDataset, bad: Collection[str]) -> ImageDataset:
    """A copy of `dataset` without the paths in `bad`, with test_idx and folds renumbered and the
    dropped paths appended to `skipped`. Raises DataError if a class loses all of its images."""
    bad_set = set(bad)
    keep = np.array([p not in bad_set for p in dataset.paths], dtype=bool)
    new_index = np.cumsum(keep) - 1  # old index -> new index, valid where keep is True

    def renumber(idx: np.ndarray) -> np.ndarray:
        return new_index[idx[keep[idx]]].astype(np.int64)

    labels = dataset.labels[keep]
    emptied = [c for i, c in enumerate(dataset.classes) if not np.any(labels == i)]
    if emptied:
        raise DataError(
            f"dataset {dataset.name!r}: every image of class(es) {', '.join(emptied)} is "
            "unreadable; replace those files or remove the class"
        )
    return ImageDataset(
        name=dataset.name,
        paths=[p for p, k in zip(dataset.paths, keep) if k],
        labels=labels,
        classes=list(dataset.classes),
        test_idx=None if dataset.test_idx is None else renumber(dataset.test_idx),
        val_idx=None if dataset.val_idx is None else renumber(dataset.val_idx),
        folds=None
        if dataset.folds is None
        else [(renumber(tr), renumber(te)) for tr, te in dataset.folds],
        skipped=[*dataset.skipped, *(p for p in dataset.paths if p in bad_set)],
    )


def identical_files(reference: Sequence[str], others: Sequence[str]) -> list[tuple[str, str]]:
    """``(other, reference)`` for each of ``others`` whose bytes equal one of ``reference``
    (copies and links alike: compared by sha256 of the content), in the order of ``others``.
    Files that cannot be read are left to the image checks."""
    from evoprune.io import file_sha256

    def digest(path: str) -> bytes | None:
        try:
            return file_sha256(path)
        except OSError:
            return None

    seen: dict[bytes, str] = {}
    for path in reference:
        d = digest(path)
        if d is not None:
            seen.setdefault(d, path)
    pairs = []
    for path in others:
        d = digest(path)
        if d is not None and d in seen:
            pairs.append((path, seen[d]))
    return pairs
