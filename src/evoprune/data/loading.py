"""load_dataset: one entry point for built-in names, image folders and CSV manifests."""

from __future__ import annotations

import logging
import os
import time

from evoprune.data._messages import listed
from evoprune.data.builtin import is_builtin, list_datasets, load_builtin
from evoprune.data.dataset import ImageDataset, drop_paths
from evoprune.data.folders import load_folder
from evoprune.data.images import find_unreadable
from evoprune.data.manifest import load_manifest
from evoprune.errors import ConfigError, DataError

logger = logging.getLogger(__name__)


def load_dataset(
    source: str | os.PathLike[str], *, skip_bad: bool = False, check_images: bool = True
) -> ImageDataset:
    """Load image paths, labels and given splits from `source`.

    `source` is a built-in name (see list_datasets(); a folder of that name needs a path such as
    './elpv'), a folder in one of the layouts described in evoprune.data.folders, or a .csv
    manifest. With `check_images`, every image of a folder or manifest is fully decoded first
    (built-in sets ship inside a package and are not checked); unreadable files raise DataError,
    or with `skip_bad` are left out, logged and listed in the result's `skipped`.
    """
    source = os.fsdecode(source)
    if not source.strip():
        # "" would otherwise resolve to the current folder and load whatever lies there.
        raise ConfigError(
            "--data is empty; give a folder, a CSV or a built-in name "
            f"({', '.join(n for n, _ in list_datasets())})"
        )
    if is_builtin(source):
        return load_builtin(source)
    path = os.path.abspath(os.path.expanduser(source))
    if os.path.isdir(path):
        dataset = load_folder(path)
    elif os.path.isfile(path):
        if not path.lower().endswith(".csv"):
            raise DataError(
                f"{source!r} is a file but not a .csv manifest; give a folder of images, "
                "a .csv manifest with columns path,label[,split], or a built-in name "
                f"({', '.join(n for n, _ in list_datasets())})"
            )
        dataset = load_manifest(path)
    elif os.path.islink(path):
        raise DataError(
            f"dataset {source!r} is a symbolic link that loops or points to nothing "
            f"({os.readlink(path)!r}); point it at a folder of images or a .csv manifest"
        )
    else:
        raise DataError(
            f"dataset {source!r} does not exist (looked for {path!r}); give an existing folder "
            "of images, a .csv manifest, or a built-in name "
            f"({', '.join(n for n, _ in list_datasets())})"
        )
    if check_images:
        dataset = _handle_unreadable(dataset, skip_bad)
    return dataset


def _handle_unreadable(dataset: ImageDataset, skip_bad: bool) -> ImageDataset:
    start = time.perf_counter()
    bad = find_unreadable(dataset.paths)
    logger.debug(
        "decoded %d images of %r in %.2f s",
        len(dataset.paths),
        dataset.name,
        time.perf_counter() - start,
    )
    if not bad:
        return dataset
    described = [f"{path} ({reason})" for path, reason in bad]
    if not skip_bad:
        raise DataError(
            f"dataset {dataset.name!r}: {len(bad)} image file(s) cannot be read: "
            f"{listed(described)}; replace or delete them, or pass skip_bad=True "
            "(CLI: --skip-bad-images) to skip them"
        )
    logger.warning(
        "dataset %r: skipping %d unreadable image file(s): %s",
        dataset.name,
        len(bad),
        listed([path for path, _ in bad]),
    )
    return drop_paths(dataset, [path for path, _ in bad])


def source_roots(source: str | os.PathLike[str] | None) -> list[str]:
    """The folders whose images ``source`` reads (nothing may be written inside them): a
    folder itself; for a CSV manifest its folder and every folder holding a listed image; none
    for a built-in set or a source that does not exist (it is refused elsewhere)."""
    if not source or is_builtin(str(source)):
        return []
    path = os.fspath(source)
    if os.path.isdir(path):
        return [path]
    if not os.path.isfile(path):
        return []
    roots = [os.path.dirname(os.path.abspath(path))]
    if path.lower().endswith(".csv"):
        try:
            listed_paths = load_manifest(path).paths
        except (DataError, OSError, ValueError):
            listed_paths = []  # refused with its own message when the run loads it
        roots += sorted({os.path.dirname(p) for p in listed_paths})
    return roots
