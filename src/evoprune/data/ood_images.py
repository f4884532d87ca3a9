"""The out-of-distribution images that a run's ``ood`` objective and OOD metrics are judged on:
built-in sets made from images that ship inside scikit-learn and scikit-image, or the user's
folder or CSV of images; and the seeded split into the search's part and a held-out part.
The scores and metrics are in :mod:`evoprune.ood`."""

from __future__ import annotations

import csv
import functools
import logging
import os
from collections.abc import Callable
from numbers import Integral, Real

import numpy as np
from PIL import Image

from evoprune.data._messages import listed
from evoprune.data.images import find_unreadable, is_image_file
from evoprune.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------- OOD images

_BUILTIN_OOD = {
    "digits": "scikit-learn's 1,797 handwritten digits (8x8 greys, upscaled)",
    "photos": "scikit-image's bundled photographs and micrographs, 9 crops each",
    "faces": "scikit-image's 100 LFW face crops (25x25 greys)",
}
# skimage.data images that ship inside the package (no download). Whichever load offline are
# used; each gives 9 crops, so 12 or more of them give the ~100 images a split needs.
_PHOTOS = (
    "astronaut",
    "camera",
    "coffee",
    "chelsea",
    "rocket",
    "coins",
    "moon",
    "page",
    "text",
    "clock",
    "horse",
    "immunohistochemistry",
    "hubble_deep_field",
    "retina",
    "brick",
    "grass",
    "gravel",
    "colorwheel",
    "cell",
)
_GRID = 3  # crops per side: 3 x 3 overlapping square crops of half the short side
_CROP_MAX_SIDE = 256  # crops are downscaled to at most this (backbones resize to ~224 anyway)
_DIGIT_SCALE = 4  # 8x8 -> 32x32, nearest neighbour: keeps the pixel blocks of the digits
_OOD_HELP = (
    "give --ood a folder of images (searched recursively), a CSV with a 'path' column, "
    f"or a built-in set: {', '.join(_BUILTIN_OOD)}"
)


def builtin_ood_names() -> tuple[str, ...]:
    """Names of the built-in OOD image sets, usable as :func:`load_ood_images`'s source."""
    return tuple(_BUILTIN_OOD)


def builtin_ood_sets() -> list[tuple[str, str]]:
    """(name, one-line description) of each built-in OOD set, for help texts."""
    return list(_BUILTIN_OOD.items())


def load_ood_images(
    source: str | os.PathLike, *, limit: int | None = None, seed: int = 0
) -> list[Image.Image] | list[str]:
    """The OOD images named by ``source``.

    Parameters
    ----------
    source : str or path
        A built-in name (see :func:`builtin_ood_names`): returns PIL RGB images made in memory
        (the name wins over a folder of that name; write ./digits for the folder).
        A folder: every image file below it (recursively, sorted), as paths.
        A ``.csv`` file: the paths in its first column, which must be headed ``path``
        (relative paths are relative to the CSV's folder); as paths.
    limit : int, optional
        Keep at most this many images, a seeded random subset in the original order (to bound
        feature extraction time on large sets).
    seed : int
        Seed of that subset.

    Files that cannot be decoded are skipped with a warning; none readable, none found, or a
    path that does not exist raise DataError naming the path and the fix.
    """
    text = os.fspath(source)
    if text in _BUILTIN_OOD:
        images: list = _BUILTIN_LOADERS[text]()
    elif os.path.isdir(text):
        images = _readable(text, _scan_folder(text))
    elif os.path.isfile(text) and text.lower().endswith(".csv"):
        images = _readable(text, _read_csv(text))
    elif os.path.isfile(text):
        raise DataError(f"OOD images {text!r} is a file but not a CSV list of images; {_OOD_HELP}")
    else:
        raise DataError(
            f"OOD images {text!r}: no such folder or file, and not a built-in OOD set; {_OOD_HELP}"
        )
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, Integral) or limit < 1:
            raise ConfigError(f"limit must be an integer >= 1, got {limit!r}")
        if len(images) > limit:
            keep = np.sort(np.random.default_rng(seed).choice(len(images), limit, replace=False))
            images = [images[i] for i in keep]
    logger.info("OOD images %s: %d", text, len(images))
    return images


def write_ood_images(source: str | os.PathLike, folder: str | os.PathLike) -> list[str]:
    """Paths of the OOD images of ``source``, built-in sets first written as PNGs to ``folder``.

    Feature extraction caches by file content, so a built-in set written once to a fixed
    folder is extracted once. Files already there are reused; user folders and CSVs are
    returned as their paths, untouched.
    """
    from evoprune.io import atomic_write

    text = os.fspath(source)
    if text not in _BUILTIN_OOD:
        return load_ood_images(text)  # type: ignore[return-value]
    out = os.path.join(os.fspath(folder), text)
    images = _BUILTIN_LOADERS[text]()
    paths = []
    for i, img in enumerate(images):
        path = os.path.join(out, f"{text}-{i:04d}.png")
        if not os.path.isfile(path):
            atomic_write(path, functools.partial(img.save, format="PNG"))
        paths.append(path)
    return paths


def ood_split(n: int, seed: int, test_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Split OOD image positions 0..n-1 into (search_idx, heldout_idx), both sorted.

    The search scores heads on the first part only; held-out reports use the second, so the
    reported AUROC is on OOD images the search never saw. round(n * test_fraction) images are
    held out, at least 1 and at most n - 1; the same n and seed always give the same split.
    """
    if isinstance(n, bool) or not isinstance(n, Integral) or n < 2:
        raise DataError(
            f"an OOD split needs at least 2 OOD images, got {n!r}; add more images to the OOD set"
        )
    if (
        isinstance(test_fraction, bool)
        or not isinstance(test_fraction, Real)
        or not 0.0 < float(test_fraction) < 1.0
    ):
        raise ConfigError(
            f"test_fraction must be a number strictly between 0 and 1, got {test_fraction!r}"
        )
    n = int(n)
    n_held = min(max(round(n * float(test_fraction)), 1), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_held:]).astype(np.int64), np.sort(order[:n_held]).astype(np.int64)


# ----------------------------------------------------------------------- user-given images


def _scan_folder(root: str) -> list[str]:
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(os.path.join(dirpath, f) for f in sorted(filenames) if is_image_file(f))
    if not found:
        raise DataError(
            f"OOD folder {root!r} holds no image files (searched recursively for "
            "jpg, png, bmp, gif, tif, webp); put images of other kinds there or "
            "choose another --ood"
        )
    return found


def _read_csv(csv_path: str) -> list[str]:
    base = os.path.dirname(os.path.abspath(csv_path))
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            rows = [r for r in csv.reader(fh) if any(c.strip() for c in r)]
    except UnicodeDecodeError as exc:
        raise DataError(
            f"OOD list {csv_path!r} is not UTF-8 text ({exc}); save it as UTF-8 CSV"
        ) from exc
    except (OSError, csv.Error) as exc:
        raise DataError(f"cannot read OOD list {csv_path!r} ({exc}); check the file") from exc
    if not rows or rows[0][0].strip().lower() != "path":
        first = rows[0][0] if rows else ""
        raise DataError(
            f"OOD list {csv_path!r} must start with a header whose first column is "
            f"'path' (found {first!r}); write 'path' on the first line and one image "
            "path per line below it"
        )
    written = [r[0].strip() for r in rows[1:] if r and r[0].strip()]
    if not written:
        raise DataError(
            f"OOD list {csv_path!r} lists no images; add one image path per line "
            "under the 'path' header"
        )
    paths = [os.path.normpath(os.path.join(base, os.path.expanduser(p))) for p in written]
    missing = [w for w, p in zip(written, paths) if not os.path.isfile(p)]
    if missing:
        raise DataError(
            f"OOD list {csv_path!r}: {len(missing)} listed file(s) do not exist: "
            f"{listed(missing)} (relative paths are relative to {base!r}); fix the "
            "paths or remove those lines"
        )
    return paths


def _readable(source: str, paths: list[str]) -> list[str]:
    bad = find_unreadable(paths)
    if len(bad) == len(paths):
        raise DataError(
            f"none of the {len(paths)} OOD image(s) in {source!r} can be read (e.g. "
            f"{bad[0][0]!r}: {bad[0][1]}); replace them with readable image files"
        )
    if bad:
        logger.warning(
            "OOD images %s: skipping %d unreadable file(s): %s",
            source,
            len(bad),
            listed([p for p, _ in bad]),
        )
        unreadable = {p for p, _ in bad}
        paths = [p for p in paths if p not in unreadable]
    return paths


# ------------------------------------------------------------------------ built-in sets


def _skimage_data():
    try:
        import skimage.data
    except ImportError as exc:
        raise DataError(
            "the built-in OOD sets 'photos' and 'faces' need scikit-image; install "
            "it (pip install scikit-image), or give --ood a folder of images or "
            "the built-in set 'digits'"
        ) from exc
    return skimage.data


def _to_rgb_uint8(a: np.ndarray) -> np.ndarray:
    """Any skimage.data array (bool, float in [0, 1], uint8; grey, RGB or RGBA) as HxWx3 uint8."""
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        a = np.clip(np.rint(a.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    return np.ascontiguousarray(a[:, :, :3])


def _digits() -> list[Image.Image]:
    from sklearn.datasets import load_digits

    grey = load_digits().images  # (1797, 8, 8), values 0..16
    scaled = np.clip(np.rint(grey * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    side = 8 * _DIGIT_SCALE
    return [
        Image.fromarray(g).resize((side, side), Image.Resampling.NEAREST).convert("RGB")
        for g in scaled
    ]


def _crops(a: np.ndarray) -> list[Image.Image]:
    h, w = a.shape[:2]
    s = min(h, w) // 2
    out = []
    for top in np.linspace(0, h - s, _GRID).round().astype(int):
        for left in np.linspace(0, w - s, _GRID).round().astype(int):
            crop = Image.fromarray(a[top : top + s, left : left + s])
            if s > _CROP_MAX_SIDE:
                crop = crop.resize((_CROP_MAX_SIDE, _CROP_MAX_SIDE), Image.Resampling.LANCZOS)
            out.append(crop)
    return out


def _photos() -> list[Image.Image]:
    data = _skimage_data()
    images: list[Image.Image] = []
    used = []
    for name in _PHOTOS:
        loader = getattr(data, name, None)
        if loader is None:
            continue
        try:
            a = loader()
        except (ImportError, OSError, ValueError, RuntimeError) as exc:
            # an image that needs a download (pooch missing, no network) or is broken: skip it
            logger.debug("skimage.data.%s not available offline: %s", name, exc)
            continue
        images.extend(_crops(_to_rgb_uint8(np.asarray(a))))
        used.append(name)
    if not images:
        raise DataError(
            "the built-in OOD set 'photos' found none of scikit-image's bundled "
            "images in this installation; reinstall scikit-image, or give --ood a "
            "folder of images or the built-in set 'digits'"
        )
    logger.debug("OOD photos from skimage.data: %s", ", ".join(used))
    return images


def _faces() -> list[Image.Image]:
    data = _skimage_data()
    faces = data.lfw_subset()[:100]  # the first 100 are faces, the rest are not
    return [Image.fromarray(_to_rgb_uint8(f)) for f in faces]


_BUILTIN_LOADERS: dict[str, Callable[[], list[Image.Image]]] = {
    "digits": _digits,
    "photos": _photos,
    "faces": _faces,
}
