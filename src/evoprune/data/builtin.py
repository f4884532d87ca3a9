"""The built-in datasets: the ELPV solar-cell images shipped inside the `elpv-dataset` package,
and the real image sets that other installed packages ship as arrays (evoprune.data.packaged)."""

from __future__ import annotations

import logging
import os

import numpy as np

from evoprune.data.dataset import ImageDataset
from evoprune.data.packaged import PACKAGED, load_packaged
from evoprune.errors import DataError

logger = logging.getLogger(__name__)

_ELPV_LEVELS = 3  # defect probabilities are k/3, k = 0..3
_ELPV_FOUR = [f"p{k / _ELPV_LEVELS:.2f}" for k in range(_ELPV_LEVELS + 1)]
_BUILTIN = {
    "elpv": "ELPV solar cells: 2,624 300x300 grey electroluminescence images, 4 classes by "
    "defect probability (p0.00, p0.33, p0.67, p1.00)",
    "elpv2": "ELPV solar cells: the same 2,624 images in 2 classes, 'working' (defect "
    "probability 0) and 'defective' (probability above 0)",
    **{name: spec.description for name, spec in PACKAGED.items()},
}


def list_datasets() -> list[tuple[str, str]]:
    """(name, one-line description) of each built-in dataset, usable as load_dataset's source."""
    return list(_BUILTIN.items())


def is_builtin(source: str) -> bool:
    return source in _BUILTIN


def load_builtin(name: str) -> ImageDataset:
    """Paths and labels of a built-in dataset (no pixels are read)."""
    if name not in _BUILTIN:
        raise DataError(f"unknown built-in dataset {name!r}; choose one of {', '.join(_BUILTIN)}")
    if name in PACKAGED:
        return load_packaged(name)
    rel_paths, probs = _read_elpv_labels()
    level = np.rint(probs * _ELPV_LEVELS).astype(np.int64)
    if name == "elpv":
        classes, labels = list(_ELPV_FOUR), level
    else:
        classes = ["defective", "working"]  # sorted names; working = probability 0
        labels = np.where(level == 0, 1, 0).astype(np.int64)
    return ImageDataset(name=name, paths=rel_paths, labels=labels, classes=classes)


def _read_elpv_labels() -> tuple[list[str], np.ndarray]:
    """Absolute image paths and defect probabilities from the package's labels.csv
    (whitespace-separated columns: path, probability, type)."""
    try:
        import elpv_dataset
    except ImportError as exc:
        raise DataError(
            "the built-in ELPV dataset needs the 'elpv-dataset' package: pip install elpv-dataset"
        ) from exc
    data_dir = os.path.join(os.path.dirname(os.path.abspath(elpv_dataset.__file__)), "data")
    labels_csv = os.path.join(data_dir, "labels.csv")
    fix = "reinstall it with: pip install --force-reinstall elpv-dataset"
    try:
        with open(labels_csv, encoding="utf-8") as fh:
            rows = [line.split() for line in fh if line.strip()]
    except OSError as exc:
        raise DataError(f"cannot read the ELPV label file {labels_csv!r} ({exc}); {fix}") from exc
    paths: list[str] = []
    probs: list[float] = []
    for lineno, row in enumerate(rows, start=1):
        try:
            prob = float(row[1])
        except (IndexError, ValueError) as exc:
            raise DataError(
                f"{labels_csv!r} line {lineno} is not 'path probability type': {row!r}; {fix}"
            ) from exc
        if abs(prob * _ELPV_LEVELS - round(prob * _ELPV_LEVELS)) > 1e-6 or not 0 <= prob <= 1:
            raise DataError(
                f"{labels_csv!r} line {lineno}: defect probability {prob} is not one of "
                f"0, 1/3, 2/3, 1; {fix}"
            )
        paths.append(os.path.join(data_dir, row[0]))
        probs.append(prob)
    missing = [p for p in paths if not os.path.isfile(p)]
    if not paths or missing:
        what = "no images" if not paths else f"{len(missing)} missing images, e.g. {missing[0]!r}"
        raise DataError(f"the installed ELPV dataset in {data_dir!r} has {what}; {fix}")
    logger.debug("ELPV: %d images listed in %s", len(paths), labels_csv)
    return paths, np.asarray(probs, dtype=np.float64)
