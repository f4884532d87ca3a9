"""Datasets stored as folders, in one of three layouts:

(a) root/<class>/<image>                         one folder per class
(b) root/train/<class>/<image>, root/test/...     a given train/test split (and, with a
    root/validation/ (or val/) folder of the same classes, a given validation set: the fitness
    split, its images part of the training data)
(c) root/<partition>/{train,test}/<class>/<image> k given partitions (the paper's 5-fold layout)

A root holding `train` and `test` among its subfolders is (b); a root whose every subfolder
holds `train` and `test` is (c); anything else is (a). A `train` folder of class folders without
its `test` (or the reverse) is an error rather than a class named "train".

A symbolic link that loops (or any entry that cannot be inspected) is an error naming it, not a
silent skip: the link was put there to bring in images, and leaving them out would change the
dataset without a word.
"""

from __future__ import annotations

import errno
import logging
import os

import numpy as np

from evoprune.data._messages import warn_case_clashes
from evoprune.data.dataset import ImageDataset
from evoprune.data.images import IMAGE_EXTENSIONS, is_image_file
from evoprune.errors import DataError

logger = logging.getLogger(__name__)

_TRAIN, _TEST = "train", "test"
_VALIDATION = ("validation", "val", "valid")
_LAYOUT_HELP = (
    "expected one subfolder per class holding the images (root/<class>/<image>), "
    "train/ and test/ folders each holding class folders, or partition folders each holding "
    "train/ and test/"
)


def load_folder(root: str) -> ImageDataset:
    """Load the folder dataset at `root` (an existing directory), detecting its layout."""
    root = os.path.abspath(root)
    name = os.path.basename(root.rstrip(os.sep)) or root
    subdirs = _subdirs(root)
    split_dirs = _train_test_dirs(root, subdirs)
    if split_dirs is not None:
        val_dir = next((d for d in subdirs if d.lower() in _VALIDATION), None)
        extra = sorted(set(subdirs) - set(split_dirs) - {val_dir})
        if extra:
            logger.warning(
                "%s: using only train/, test/ and validation/, ignoring folder(s) %s",
                root,
                ", ".join(extra),
            )
        return _load_train_test(root, name, *split_dirs, val_dir=val_dir)
    _check_half_split(root, subdirs)
    with_splits = [d for d in subdirs if _train_test_dirs(os.path.join(root, d)) is not None]
    if with_splits and len(with_splits) == len(subdirs):
        return _load_partitions(root, name, subdirs)
    for sub in subdirs:
        _check_half_split(os.path.join(root, sub))
    if with_splits:
        without = sorted(set(subdirs) - set(with_splits))
        raise DataError(
            f"{root!r} mixes layouts: partition folder(s) {', '.join(with_splits)} hold train/ "
            f"and test/ but {', '.join(without)} do not; give every partition folder train/ "
            "and test/, or move the others out"
        )
    return _load_class_folders(root, name)


def _load_class_folders(root: str, name: str) -> ImageDataset:
    by_class = _scan_classes(root)
    classes = _check_classes(root, sorted(by_class))
    paths, labels = _flatten(by_class, classes)
    logger.info("%s: %d images in %d class folders", root, len(paths), len(classes))
    return ImageDataset(name=name, paths=paths, labels=labels, classes=classes)


def _load_train_test(
    root: str, name: str, train_dir: str, test_dir: str, val_dir: str | None = None
) -> ImageDataset:
    train = _scan_classes(os.path.join(root, train_dir))
    test = _scan_classes(os.path.join(root, test_dir))
    _check_test_classes(os.path.join(root, test_dir), train, test)
    val = {} if val_dir is None else _scan_classes(os.path.join(root, val_dir))
    if val_dir is not None:
        _check_test_classes(os.path.join(root, val_dir), train, val)
    classes = _check_classes(os.path.join(root, train_dir), sorted(train))
    train_paths, train_labels = _flatten(train, classes)
    val_paths, val_labels = _flatten(val, classes) if val else ([], np.zeros(0, np.int64))
    test_paths, test_labels = _flatten(test, classes)
    n_train, n_val, n_test = len(train_paths), len(val_paths), len(test_paths)
    logger.info(
        "%s: %d train, %d validation and %d test images in %d classes",
        root,
        n_train,
        n_val,
        n_test,
        len(classes),
    )
    return ImageDataset(
        name=name,
        paths=train_paths + val_paths + test_paths,
        labels=np.concatenate([train_labels, val_labels, test_labels]).astype(np.int64),
        classes=classes,
        test_idx=np.arange(n_train + n_val, n_train + n_val + n_test, dtype=np.int64),
        val_idx=np.arange(n_train, n_train + n_val, dtype=np.int64) if val_dir else None,
    )


def _load_partitions(root: str, name: str, partitions: list[str]) -> ImageDataset:
    scanned = [_scan_partition(os.path.join(root, part)) for part in partitions]
    classes = _check_classes(root, sorted({c for tr, _ in scanned for c in tr}))

    paths: list[str] = []
    labels: list[int] = []
    index_of: dict[str, int] = {}  # real path -> index, so a file linked twice is one sample
    label_of = {cls: i for i, cls in enumerate(classes)}

    def indices(by_class: dict[str, list[str]]) -> np.ndarray:
        out = []
        for cls, files in sorted(by_class.items()):
            label = label_of[cls]
            for path in files:
                real = os.path.realpath(path)
                if real not in index_of:
                    index_of[real] = len(paths)
                    paths.append(path)
                    labels.append(label)
                elif labels[index_of[real]] != label:
                    raise DataError(
                        f"{path!r} is the same file as {paths[index_of[real]]!r} but sits in "
                        f"class {cls!r}, not {classes[labels[index_of[real]]]!r}; "
                        "give each image one class"
                    )
                out.append(index_of[real])
        return np.asarray(out, dtype=np.int64)

    folds = []
    for part, (train, test) in zip(partitions, scanned):
        train_idx, test_idx = indices(train), indices(test)
        overlap = np.intersect1d(train_idx, test_idx)
        if overlap.size:
            logger.warning(
                "partition %s: %d file(s) are in both train/ and test/, e.g. %s",
                part,
                overlap.size,
                paths[overlap[0]],
            )
        folds.append((train_idx, test_idx))
    logger.info(
        "%s: %d partitions, %d distinct images in %d classes",
        root,
        len(folds),
        len(paths),
        len(classes),
    )
    return ImageDataset(
        name=name,
        paths=paths,
        labels=np.asarray(labels, dtype=np.int64),
        classes=classes,
        folds=folds,
    )


def _scan_partition(part_dir: str) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """The (train, test) images by class of one partition folder."""
    train_dir, test_dir = _train_test_dirs(part_dir)  # type: ignore[misc]
    extra = sorted(set(_subdirs(part_dir)) - {train_dir, test_dir})
    if extra:
        logger.warning(
            "%s: using only train/ and test/, ignoring folder(s) %s", part_dir, ", ".join(extra)
        )
    train = _scan_classes(os.path.join(part_dir, train_dir))
    test = _scan_classes(os.path.join(part_dir, test_dir))
    _check_test_classes(os.path.join(part_dir, test_dir), train, test)
    return train, test


def _entries(folder: str) -> list[os.DirEntry[str]]:
    """The non-hidden entries of `folder`; DataError naming the folder if it cannot be listed."""
    try:
        with os.scandir(folder) as entries:
            return [e for e in entries if not e.name.startswith(".")]
    except OSError as exc:
        raise _os_error(folder, exc) from exc


def _is_dir(entry: os.DirEntry[str]) -> bool:
    """entry.is_dir(), following links; DataError naming a looping or uninspectable link."""
    try:
        return entry.is_dir()
    except OSError as exc:
        raise _os_error(entry.path, exc) from exc


def _is_regular(entry: os.DirEntry[str]) -> bool:
    """A regular file, links followed (a dangling link counts, to be reported unreadable)."""
    try:
        return entry.is_file() or not os.path.exists(entry.path)
    except OSError:
        return True  # reported as unreadable by the image check


def _os_error(path: str, exc: OSError) -> DataError:
    if exc.errno == errno.ELOOP:
        return DataError(
            f"{path!r} is a symbolic link that loops ({exc.strerror}): following it leads back "
            "to itself; point it at a real image or folder, or delete it"
        )
    return DataError(
        f"cannot read {path!r} ({exc.strerror or exc}); make it readable or move it out of the "
        "data folder"
    )


def _subdirs(folder: str) -> list[str]:
    """Sorted names of the non-hidden subfolders of `folder`."""
    return sorted(e.name for e in _entries(folder) if _is_dir(e))


def _check_half_split(folder: str, subdirs: list[str] | None = None) -> None:
    """DataError when `folder` has a train/ (or test/) folder of class folders but not the other:
    without this, train/ would be taken for a class and reported as an empty class folder."""
    names = {d.lower(): d for d in (_subdirs(folder) if subdirs is None else subdirs)}
    for present, missing in ((_TRAIN, _TEST), (_TEST, _TRAIN)):
        if (
            present in names
            and missing not in names
            and _subdirs(os.path.join(folder, names[present]))
        ):
            have = os.path.join(folder, names[present])
            lack = os.path.join(folder, missing)
            raise DataError(
                f"{have} exists but {lack} does not; a given split needs both {_TRAIN}/ and "
                f"{_TEST}/, each holding the same class folders: add {lack}, or move the class "
                f"folders out of {have} into {folder} to let evoprune make the split"
            )


def _train_test_dirs(folder: str, subdirs: list[str] | None = None) -> tuple[str, str] | None:
    """The actual names of the train and test subfolders (any case), or None if either is absent."""
    names = {d.lower(): d for d in (_subdirs(folder) if subdirs is None else subdirs)}
    if _TRAIN in names and _TEST in names:
        return names[_TRAIN], names[_TEST]
    return None


def _scan_classes(folder: str) -> dict[str, list[str]]:
    """Class name -> sorted absolute image paths, from the class subfolders of `folder`."""
    class_dirs = _subdirs(folder)
    loose = [e.name for e in _entries(folder) if is_image_file(e.name)]
    if not class_dirs:
        hint = (
            f"; it holds {len(loose)} image(s) directly: move them into one subfolder per class"
            if loose
            else ""
        )
        raise DataError(f"no images found in {folder!r}: {_LAYOUT_HELP}{hint}")
    if loose:
        logger.debug("%s: ignoring %d image(s) outside the class folders", folder, len(loose))
    by_class: dict[str, list[str]] = {}
    for cls in class_dirs:
        class_dir = os.path.join(folder, cls)
        images, nested = [], []
        for entry in _entries(class_dir):
            if _is_dir(entry):
                nested.append(entry.name)
            elif is_image_file(entry.name) and _is_regular(entry):
                images.append(entry.path)
            elif is_image_file(entry.name):
                logger.warning(
                    "%s is not a regular file (a FIFO, socket or device): skipped, never opened",
                    entry.path,
                )
            else:
                logger.debug("%s: not an image file, ignored", entry.path)
        if nested:
            logger.debug(
                "%s: subfolder(s) %s ignored; images must sit directly in the class folder",
                class_dir,
                ", ".join(sorted(nested)),
            )
        if not images:
            found = (
                f" (it has subfolder(s) {', '.join(sorted(nested))}: images must sit "
                "directly in the class folder)"
                if nested
                else ""
            )
            raise DataError(
                f"class folder {class_dir!r} has no images{found}; add images with one of "
                f"the extensions {' '.join(IMAGE_EXTENSIONS)} or delete the folder"
            )
        by_class[cls] = sorted(images)
    return by_class


def _check_classes(where: str, classes: list[str]) -> list[str]:
    if len(classes) < 2:
        raise DataError(
            f"{where!r} has only {len(classes)} class folder ({', '.join(classes)}); "
            "a classifier needs at least 2 classes: add a folder of images for each class"
        )
    warn_case_clashes(logger, where, "class folders", classes)
    return classes


def _check_test_classes(
    test_dir: str, train: dict[str, list[str]], test: dict[str, list[str]]
) -> None:
    unknown = sorted(set(test) - set(train))
    if unknown:
        raise DataError(
            f"{test_dir!r} has class folder(s) {', '.join(unknown)} that the train folder lacks; "
            "add training images for them or remove them from the test folder"
        )


def _flatten(by_class: dict[str, list[str]], classes: list[str]) -> tuple[list[str], np.ndarray]:
    label_of = {cls: i for i, cls in enumerate(classes)}
    paths: list[str] = []
    labels: list[int] = []
    for cls in sorted(by_class):
        paths.extend(by_class[cls])
        labels.extend([label_of[cls]] * len(by_class[cls]))
    return paths, np.asarray(labels, dtype=np.int64)
