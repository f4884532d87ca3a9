"""Reading single images: which files count as images, opening any of them as RGB, and a
parallel check that finds files that cannot be decoded before hours of work depend on them.

Memory stays bounded: an image over MAX_MEGAPIXELS is decoded at 1/2, 1/4 or 1/8 of its size when
it is a JPEG (libjpeg scales while decoding; the backbones see a few hundred pixels a side anyway),
and refused with a message naming the file otherwise. Pillow's own DecompressionBombWarning is
silenced while evoprune decodes, since these checks replace it.
"""

from __future__ import annotations

import logging
import os
import stat
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image, ImageOps

from evoprune.errors import DataError

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
)

_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_EXIF_ORIENTATION = 0x0112
# JPEGs are checked at 1/8 scale: libjpeg still reads every byte of the entropy-coded data, so a
# truncated or corrupt file still fails, but it skips most of the inverse DCT and colour work
# (200 2048x1536 JPEGs: 0.38 s instead of 1.0 s on 2 cores).
_CHECK_DRAFT_SIZE = (1, 1)
MAX_MEGAPIXELS = 50
_MAX_PIXELS = MAX_MEGAPIXELS * 1_000_000
_JPEG_SCALES = (2, 4, 8)  # the reductions libjpeg can apply while decoding


class ImageTooLarge(Exception):
    """An image over MAX_MEGAPIXELS that cannot be decoded at a reduced size."""


class NotAnImageFile(ValueError):
    """A path that names no image: a FIFO, socket, device or folder, or an empty image."""


def is_image_file(name: str) -> bool:
    """True when `name` has one of IMAGE_EXTENSIONS (any case) and is not a hidden file."""
    base = os.path.basename(name)
    return not base.startswith(".") and os.path.splitext(base)[1].lower() in IMAGE_EXTENSIONS


def open_rgb(path: str) -> Image.Image:
    """Open any image file as an 8-bit RGB image (first frame of animations, EXIF rotation applied).

    Grey images (L, 1, and the 16-bit/32-bit/float modes I;16, I, F) are scaled to 8 bits and
    repeated over three channels; images with transparency (RGBA, LA, palette with a transparent
    colour) are composited on white. Raises DataError naming the path if the file cannot be read.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return _decode(path, draft=False)
    except ImageTooLarge as exc:
        raise DataError(f"image {path!r} is too large: {exc}") from exc
    except Exception as exc:  # Pillow raises many types for damaged files; all mean "unusable"
        raise DataError(
            f"cannot read image {path!r} ({type(exc).__name__}: {exc}); replace or delete the file"
        ) from exc


def find_unreadable(paths: Sequence[str]) -> list[tuple[str, str]]:
    """Fully decode every file (in threads; Pillow's decoders release the GIL) and return
    (path, reason) for each one that fails, in the order of `paths`."""
    workers = min(8, max(2, os.cpu_count() or 1))
    # The filter is set here, in the calling thread, because warning filters are process-wide
    # and changing them from the worker threads would race.
    with warnings.catch_warnings(), ThreadPoolExecutor(max_workers=workers) as pool:
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        reasons = list(pool.map(_check_one, paths))
    return [(p, r) for p, r in zip(paths, reasons) if r is not None]


def _check_one(path: str) -> str | None:
    try:
        _decode(path, draft=True)
    except ImageTooLarge as exc:
        return f"too large: {exc}"
    except Exception as exc:  # any failure to decode makes the file unusable
        return f"{type(exc).__name__}: {exc}"
    return None


def _decode(path: str, *, draft: bool) -> Image.Image:
    # never open a FIFO, socket or device: reading one blocks forever (links are followed)
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        kind = (
            "a FIFO"
            if stat.S_ISFIFO(mode)
            else "a socket"
            if stat.S_ISSOCK(mode)
            else "a folder"
            if stat.S_ISDIR(mode)
            else "a device"
        )
        raise NotAnImageFile(f"{path} is {kind}, not a regular file; it was not opened")
    try:
        opened = Image.open(path)
    except Image.DecompressionBombError as exc:  # over twice Pillow's limit: refused at open
        raise ImageTooLarge(
            f"{exc}; downscale it (e.g. to at most 4000 pixels a side) or delete it"
        ) from exc
    with opened as img:
        if img.width < 1 or img.height < 1:
            raise NotAnImageFile(f"{path} is an empty {img.width}x{img.height} image")
        if draft and img.format == "JPEG":
            img.draft(None, _CHECK_DRAFT_SIZE)
        elif img.width * img.height > _MAX_PIXELS:
            _reduce_while_decoding(img, path)
        img.load()
        if img.getexif().get(_EXIF_ORIENTATION, 1) != 1:
            img = ImageOps.exif_transpose(img)
        return _to_rgb(img)


def _reduce_while_decoding(img: Image.Image, path: str) -> None:
    """Make a JPEG over MAX_MEGAPIXELS decode at the largest reduction that fits; raise
    ImageTooLarge for other formats, which Pillow can only decode whole."""
    width, height = img.size
    megapixels = f"{width}x{height} pixels ({width * height / 1e6:.0f} megapixels)"
    if img.format == "JPEG":
        for scale in _JPEG_SCALES:
            if -(-width // scale) * -(-height // scale) <= _MAX_PIXELS:
                img.draft(None, (width // scale, height // scale))
                logger.info(
                    "image %s is %s: decoding it at 1/%d size to bound memory",
                    path,
                    megapixels,
                    scale,
                )
                return
    raise ImageTooLarge(
        f"{megapixels}, over the {MAX_MEGAPIXELS}-megapixel limit ({img.format} images are "
        "decoded whole; only JPEGs are decoded at a reduced size); downscale it (e.g. to at "
        "most 4000 pixels a side) or delete it"
    )


def _to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I", "F") or mode.startswith("I;"):
        grey = Image.fromarray(_grey_to_uint8(np.asarray(img), mode), mode="L")
        return grey.convert("RGB")
    if mode in _ALPHA_MODES or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def _grey_to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    """Map high-depth grey values to 0..255: 16-bit modes by /257; 32-bit integers as 16-bit
    when they exceed 255 (min-max when beyond 16 bits), else as 8-bit; floats in [0, 1] by x255,
    other floats clipped."""
    a = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if mode.startswith("I;16"):
        a = a / 257.0
    elif mode == "I":
        if a.max(initial=0.0) > 65535.0:
            lo, hi = a.min(), a.max()
            a = (a - lo) * (255.0 / (hi - lo))
        elif a.max(initial=0.0) > 255.0:
            a = a / 257.0
    elif mode == "F" and a.max(initial=0.0) <= 1.0:
        a = a * 255.0
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)
