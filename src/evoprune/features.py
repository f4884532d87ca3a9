"""Image features from a frozen backbone, with a progress bar and a content-addressed disk cache.

The cache key covers the backbone (name, weights, preprocessing), the form it runs in
(onnxruntime on a CPU, channels-last torch on a GPU...: forms differ by up to 1e-4, enough for a
search to take another path) and the bytes of every image in order, so the same images hit the
cache wherever they lie, and any change to one, or another form, misses it.

A cache file ``<key>.npz`` holds the matrix and a JSON header with the key, the shape and the
sha256 of the matrix's bytes. Loading checks all three and that every value is finite, so a damaged
file (flipped bytes, rows zeroed or permuted, NaN, truncation, another key) is reported once and
recomputed instead of silently giving wrong results. Files are replaced atomically, so processes
filling one cache at the same time each leave a complete file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from sklearn.base import BaseEstimator, TransformerMixin
from tqdm.auto import tqdm

from evoprune.backbones import DEFAULT_BACKBONE, Backbone, get_backbone
from evoprune.backbones.runtime import Runner
from evoprune.data import open_rgb
from evoprune.data._messages import listed
from evoprune.devices import resolve_device
from evoprune.errors import BackboneError, ConfigError, DataError
from evoprune.io import atomic_write, entry_lock, file_sha256

__all__ = [
    "FeatureResult",
    "ImageFeatures",
    "cache_file_path",
    "cache_key",
    "default_cache_dir",
    "extract_features",
]

logger = logging.getLogger(__name__)

# v2: the cache file is an .npz with a checksummed header; v1 files (bare .npy) are simply misses.
_KEY_FORMAT = "evoprune-features-v2"
_CACHE_SUFFIX = ".npz"


@dataclass
class FeatureResult:
    """Features of a list of images, and how they were obtained."""

    X: np.ndarray  # float32 (n_images, feature_dim), rows in the order of the paths
    cached: bool  # True when no CNN forward pass was needed
    key: str  # the cache key
    seconds: float
    form: str = ""  # the backbone's form that computed X, "onnxruntime/cpu" (runtime.Runner)


def default_cache_dir() -> Path:
    """``$EVOPRUNE_CACHE_DIR`` if set, else ``~/.cache/evoprune/features``."""
    env = os.environ.get("EVOPRUNE_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "evoprune" / "features"


def _file_sha256(path: str) -> bytes:
    try:
        return file_sha256(path)
    except OSError as exc:
        raise DataError(f"Cannot read image file {path}: {exc}") from exc


def cache_key(backbone: Backbone, paths: Sequence[str], form: str | None = None) -> str:
    """sha256 over the backbone (name, weights, preprocessing), its form (``onnxruntime/cpu``;
    default: the form it runs in on this machine's CPU) and each image's bytes, in order."""
    if form is None:
        form = backbone.form_identity("cpu")
    digest = hashlib.sha256()
    header = (
        _KEY_FORMAT,
        backbone.name,
        backbone.weights_id,
        backbone.preprocess_id,
        form,
        len(paths),
    )
    for part in header:
        digest.update(f"{part}\0".encode())
    for path in paths:
        digest.update(_file_sha256(os.fspath(path)))
    return digest.hexdigest()


class _ImageFiles(torch.utils.data.Dataset):
    """Image paths -> preprocessed CHW arrays; picklable for DataLoader worker processes."""

    def __init__(self, paths: Sequence[str], backbone: Backbone) -> None:
        self.paths = list(paths)
        self.preprocessing = backbone.preprocessing  # picklable data, for the workers

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> np.ndarray:
        return self.preprocessing(open_rgb(self.paths[index]))

    def batch(self, start: int, stop: int) -> np.ndarray:
        return np.stack([self[i] for i in range(start, stop)])


def _run(runner: Runner, batch: np.ndarray) -> np.ndarray:
    """Features of a decoded batch, ``runner.forward_batch`` images a call."""
    step = runner.forward_batch
    return np.concatenate([runner(batch[i : i + step]) for i in range(0, len(batch), step)])


def _loader_chunks(
    images: _ImageFiles, runner: Runner, batch_size: int, num_workers: int
) -> Iterator[np.ndarray]:
    """Features batch by batch, the images decoded in ``num_workers`` worker processes."""
    loader = torch.utils.data.DataLoader(
        images, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=np.stack
    )
    for batch in loader:
        yield _run(runner, batch)


def _decode_threads(runner: Runner, decode_threads: int | None) -> int:
    """Threads that decode (and, for a concurrent runner, run the CNN) beside this one.

    Measured for EfficientNet-Lite0 on ELPV, 2 cores (benchmarks/features.json): onnxruntime
    runs best as one single-threaded call per core, each thread decoding its own images; torch
    on a CPU parallelises inside each call, so one thread decodes ahead of it; a GPU needs every
    core but one decoding to keep up.
    """
    if decode_threads is not None:
        return decode_threads
    if runner.concurrent:
        return torch.get_num_threads()
    if runner.device.type == "cpu":
        return 1
    return max(1, min(16, len(os.sched_getaffinity(0)) - 1))


def _threaded_chunks(images: _ImageFiles, runner: Runner, threads: int) -> Iterator[np.ndarray]:
    """Features chunk by chunk, in order; decoding overlaps the CNN in ``threads`` threads
    (Pillow and numpy release the GIL while they decode, resize and scale)."""
    n, step = len(images), runner.forward_batch
    starts = range(0, n, step)

    def decode(start: int) -> np.ndarray:
        return images.batch(start, min(start + step, n))

    if threads == 0:
        yield from (_run(runner, decode(start)) for start in starts)
        return
    task = (lambda start: runner(decode(start))) if runner.concurrent else decode
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="evoprune-decode")
    pending: deque[Future[np.ndarray]] = deque()
    try:
        for start in starts:
            pending.append(pool.submit(task, start))
            if len(pending) > 2 * threads:
                yield _finish(runner, pending.popleft().result())
        while pending:
            yield _finish(runner, pending.popleft().result())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _finish(runner: Runner, done: np.ndarray) -> np.ndarray:
    """A task's features (a concurrent runner's threads ran the CNN) or its decoded images'."""
    return done if runner.concurrent else runner(done)


def _compute(
    backbone: Backbone,
    paths: list[str],
    batch_size: int,
    progress: bool,
    num_workers: int,
    *,
    runner: Runner | None = None,
    decode_threads: int | None = None,
) -> np.ndarray:
    """Features of ``paths`` in order (see :func:`extract_features` for the arguments)."""
    runner = runner if runner is not None else backbone.runner("cpu")
    X = np.empty((len(paths), backbone.feature_dim), dtype=np.float32)
    images = _ImageFiles(paths, backbone)
    if num_workers > 0:
        chunks = _loader_chunks(images, runner, batch_size, num_workers)
    else:
        chunks = _threaded_chunks(images, runner, _decode_threads(runner, decode_threads))
    done = 0
    with tqdm(
        total=len(paths), unit="img", desc=f"{backbone.name} features", disable=not progress
    ) as bar:
        for features in chunks:
            _check_shape(features, backbone)
            X[done : done + len(features)] = features
            done += len(features)
            bar.update(len(features))
    _check_finite(X, backbone.name, paths)
    return X


def compute_rows(
    backbone: Backbone, paths: Sequence[str], batch_size: int = 32, device: str = "cpu"
) -> np.ndarray:
    """Features of ``paths`` in order, without the cache or a progress bar: the part of a
    sharded extraction that one worker computes (the caller writes the one cache file)."""
    runner = backbone.runner(resolve_device(device))
    return _compute(backbone, list(paths), batch_size, False, 0, runner=runner)


def _check_shape(features: np.ndarray, backbone: Backbone) -> None:
    if features.ndim != 2 or features.shape[1] != backbone.feature_dim:
        raise BackboneError(
            f'Backbone "{backbone.name}" gave features of shape {tuple(features.shape)}; it is '
            f"registered with feature_dim={backbone.feature_dim}: fix its module or its "
            "feature_dim"
        )


def _check_finite(X: np.ndarray, backbone_name: str, names: Sequence[str]) -> None:
    """Raise DataError naming the backbone and the images whose features hold NaN or inf.

    Preprocessed pixels are always finite, so such features mean a broken backbone (damaged
    weights, a numerical fault); caching or training on them would only spread the damage.
    """
    bad_rows = np.flatnonzero(~np.isfinite(X).all(axis=1))
    if bad_rows.size:
        bad_names = listed([str(names[i]) for i in bad_rows.tolist()])
        raise DataError(
            f"backbone {backbone_name!r} gave NaN or infinite features for {bad_rows.size} of "
            f"{len(X)} image(s): {bad_names}; its weights are "
            "probably damaged: reinstall the backbone's package (or delete its downloaded "
            "weights) or choose another backbone"
        )


def _digest(X: np.ndarray) -> str:
    """Hex sha256 of the matrix's float32 bytes in C order."""
    return hashlib.sha256(np.ascontiguousarray(X, dtype=np.float32).tobytes()).hexdigest()


def cache_file_path(cache_dir: str | Path, key: str) -> Path:
    """Where the features of cache key ``key`` are stored in ``cache_dir``."""
    return Path(cache_dir) / f"{key}{_CACHE_SUFFIX}"


def _read_cache(path: Path, key: str, shape: tuple[int, int]) -> np.ndarray | None:
    """The verified cached matrix, or None when absent or damaged (one WARNING saying why)."""
    try:
        if not path.is_file():
            return None
    except OSError:  # an unreadable cache folder is a miss; the write then says why
        return None
    try:
        found = _load_and_check(path, key, shape)
    except Exception as exc:  # numpy, zipfile and json raise many types for a damaged file
        found = f"unreadable: {type(exc).__name__}: {exc}"
    if isinstance(found, np.ndarray):
        return found
    logger.warning(
        "Feature cache file %s is damaged (%s); recomputing its features and rewriting it",
        path,
        found,
    )
    return None


def _load_and_check(path: Path, key: str, shape: tuple[int, int]) -> np.ndarray | str:
    """The intact matrix of a cache file, or what is wrong with it."""
    loaded = np.load(path, allow_pickle=False)
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        return "unreadable: not an .npz archive"
    with loaded as archive:
        header = json.loads(str(archive["header"][()]))
        X = archive["features"]
    problem = _cache_problem(header, X, key, shape)
    return X if problem is None else problem


def _cache_problem(header: Any, X: np.ndarray, key: str, shape: tuple[int, int]) -> str | None:
    """What is wrong with a loaded cache entry, or None when it is intact."""
    if not isinstance(header, dict):
        return "its header is not a JSON object"
    if header.get("format") != _KEY_FORMAT:
        return f"format {header.get('format')!r}, expected {_KEY_FORMAT!r}"
    if header.get("key") != key:
        return f"it holds the features of key {header.get('key')!r}, not of this file's key"
    if X.dtype != np.float32 or X.shape != shape or list(shape) != header.get("shape"):
        return (
            f"it holds {X.dtype} {X.shape} (header says {header.get('shape')}), "
            f"expected float32 {shape}"
        )
    if _digest(X) != header.get("sha256"):
        return "the features do not match their sha256 checksum"
    if not np.isfinite(X).all():
        return "it holds NaN or infinite values"
    return None


def _write_cache(path: Path, key: str, X: np.ndarray) -> None:
    """Write matrix and checksummed header atomically; a failure is one WARNING, not an error."""
    header = {"format": _KEY_FORMAT, "key": key, "shape": list(X.shape), "sha256": _digest(X)}

    def save(tmp: Path) -> None:
        with tmp.open("wb") as handle:
            np.savez(handle, features=X, header=np.asarray(json.dumps(header)))

    try:
        atomic_write(path, save)
        logger.debug("Wrote feature cache %s", path)
    except OSError as exc:
        logger.warning(
            "Cannot write feature cache %s (%s); the features are used but not cached: make "
            "the folder writable or set EVOPRUNE_CACHE_DIR to a writable folder",
            path,
            exc,
        )


def _check_paths(paths: Sequence[str]) -> list[str]:
    if isinstance(paths, (str, bytes, os.PathLike)):
        raise ConfigError("paths must be a sequence of image paths, not a single path")
    return [os.fspath(p) for p in paths]


def _check_positive(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")


def extract_features(
    backbone: Backbone | str,
    paths: Sequence[str],
    *,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    batch_size: int = 32,
    progress: bool = True,
    num_workers: int = 0,
    device: str | torch.device = "auto",
    form: str = "auto",
    decode_threads: int | None = None,
    compute: Callable[[Backbone, list[str]], np.ndarray] | None = None,
) -> FeatureResult:
    """Features of the images at ``paths`` (rows in order), from the disk cache when possible.

    The CNN runs on ``device`` (``auto``: a GPU when torch sees one) in its fastest ``form``
    (see :mod:`evoprune.backbones.runtime`); every form and device gives the features of eager
    float32 on the CPU within 1e-4, but not bit for bit, so the form and the kind of device are
    part of the cache key (a cache filled by one form is never reused by another) and of the
    result (``FeatureResult.form``). ``compute`` (sharded elsewhere) runs the form planned on
    a CPU. Images are decoded in ``decode_threads`` threads beside the CNN (None: as measured
    best; 0: in this thread), or, with ``num_workers`` > 0, in that many worker processes,
    ``batch_size`` images at a time.
    """
    start = time.perf_counter()
    _check_options(batch_size, num_workers, decode_threads)
    torch_device = resolve_device(device)
    backbone = get_backbone(backbone) if isinstance(backbone, str) else backbone
    paths = _check_paths(paths)
    cache = _CachedExtraction(backbone, paths, cache_dir, use_cache, start)
    form_id = _planned_form(backbone, torch_device, form, sharded=compute is not None)
    key = cache_key(backbone, paths, form_id)
    with contextlib.ExitStack() as stack:
        hit = cache.hit_or_lock(stack, key, form_id)
        if hit is not None:
            return hit
        if compute is not None:  # sharded elsewhere (evoprune.cluster), checked and cached here
            X = compute(backbone, paths)
            _check_finite(X, backbone.name, paths)
            return cache.computed(X, key, form_id, None)
        runner = backbone.runner(torch_device, form)
        if runner.identity != form_id:  # the planned form failed its check: another key
            form_id, key = runner.identity, cache_key(backbone, paths, runner.identity)
            hit = cache.hit(key, form_id)
            if hit is not None:
                return hit
        X = _compute(
            backbone,
            paths,
            batch_size,
            progress,
            num_workers,
            runner=runner,
            decode_threads=decode_threads,
        )
        return cache.computed(X, key, form_id, runner)


def _planned_form(backbone: Backbone, device: torch.device, form: str, *, sharded: bool) -> str:
    """The identity of the form planned to compute the features: the one of a CPU when
    ``compute`` shards the extraction elsewhere, else of ``form`` on ``device``."""
    return backbone.form_identity("cpu") if sharded else backbone.form_identity(device, form)


def _check_options(batch_size: int, num_workers: int, decode_threads: int | None) -> None:
    _check_positive("batch_size", batch_size, 1)
    _check_positive("num_workers", num_workers, 0)
    if decode_threads is not None:
        _check_positive("decode_threads", decode_threads, 0)


class _CachedExtraction:
    """One call of :func:`extract_features`: its images, and its cache entries' reads and
    writes (none without ``use_cache``); ``start``: ``time.perf_counter()`` when it began."""

    def __init__(
        self,
        backbone: Backbone,
        paths: list[str],
        cache_dir: str | Path | None,
        use_cache: bool,
        start: float,
    ) -> None:
        self.backbone, self.paths, self.use_cache, self.start = backbone, paths, use_cache, start
        self.cache_dir = cache_dir if cache_dir is not None else default_cache_dir()

    def file(self, key: str) -> Path:
        return cache_file_path(self.cache_dir, key)

    def hit(self, key: str, form_id: str) -> FeatureResult | None:
        """The cached features of ``key``, or None (a miss, or no cache)."""
        shape = (len(self.paths), self.backbone.feature_dim)
        X = _read_cache(self.file(key), key, shape) if self.use_cache else None
        if X is None:
            return None
        logger.info(
            "Feature cache hit: %d images, %s as %s (%s)",
            len(self.paths),
            self.backbone.name,
            form_id,
            self.file(key),
        )
        return FeatureResult(X, True, key, time.perf_counter() - self.start, form_id)

    def hit_or_lock(
        self, stack: contextlib.ExitStack, key: str, form_id: str
    ) -> FeatureResult | None:
        """The cached features of ``key``; on a miss, ``key``'s entry held on ``stack`` (one
        process computes an entry; another waits, then reads it) and the features when another
        process wrote them meanwhile, else None."""
        entry = self.file(key)
        seen = _signature(entry)
        hit = self.hit(key, form_id)
        if hit is not None or not self.use_cache:
            return hit
        stack.enter_context(entry_lock(entry, f"the {self.backbone.name} features of these images"))
        if _signature(entry) != seen:  # written meanwhile by another process
            hit = self.hit(key, form_id)
            if hit is not None:
                return hit
        logger.info(
            "Feature cache miss: computing %s features of %d images as %s",
            self.backbone.name,
            len(self.paths),
            form_id,
        )
        return None

    def computed(
        self, X: np.ndarray, key: str, form_id: str, runner: Runner | None
    ) -> FeatureResult:
        """The features just computed, written to the cache under ``key``."""
        if self.use_cache:
            _write_cache(self.file(key), key, X)
        seconds = time.perf_counter() - self.start
        logger.info(
            "Computed %d %s features in %.1f s (%s)",
            len(self.paths),
            self.backbone.name,
            seconds,
            runner or "sharded",
        )
        return FeatureResult(X, cached=False, key=key, seconds=seconds, form=form_id)


def _signature(path: Path) -> tuple[int, int, int] | None:
    """Which version of a file is there (inode, size, modification time), None if absent."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _as_pil(item: Any) -> Image.Image:
    if isinstance(item, Image.Image):
        return item
    array = np.asarray(item)
    if array.dtype != np.uint8 or not (
        array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))
    ):
        raise ConfigError(
            "ImageFeatures.transform takes image paths, PIL images or HxWx3 uint8 arrays; "
            f"got an array of dtype {array.dtype} and shape {array.shape}"
        )
    return Image.fromarray(array)


class ImageFeatures(TransformerMixin, BaseEstimator):
    """scikit-learn transformer: images -> frozen-backbone features.

    Paths go through the disk cache; PIL images and HxWx3 uint8 arrays are computed directly.
    ``device``: where the CNN runs (``auto``: a GPU when torch sees one).
    Stateless: ``fit`` only records the feature size.
    """

    def __init__(
        self,
        backbone: str = DEFAULT_BACKBONE,
        cache_dir: str | Path | None = None,
        use_cache: bool = True,
        batch_size: int = 32,
        progress: bool = False,
        device: str = "auto",
    ) -> None:
        self.backbone = backbone
        self.cache_dir = cache_dir
        self.use_cache = use_cache
        self.batch_size = batch_size
        self.progress = progress
        self.device = device

    def fit(self, X: Sequence[Any], y: Any = None) -> ImageFeatures:
        """No learning; sets ``n_features_out_`` and ``feature_dim_``."""
        self.feature_dim_ = get_backbone(self.backbone).feature_dim
        self.n_features_out_ = self.feature_dim_
        return self

    def transform(self, X: Sequence[Any]) -> np.ndarray:
        """float32 (n_images, feature_dim) features of image paths, PIL images or uint8 arrays."""
        backbone = get_backbone(self.backbone)
        items = list(X)
        if all(isinstance(item, (str, os.PathLike)) for item in items):
            return extract_features(
                backbone,
                items,
                cache_dir=self.cache_dir,
                use_cache=self.use_cache,
                batch_size=self.batch_size,
                progress=self.progress,
                device=self.device,
            ).X
        _check_positive("batch_size", self.batch_size, 1)
        runner = backbone.runner(resolve_device(self.device))
        X_out = np.empty((len(items), backbone.feature_dim), dtype=np.float32)
        for start in range(0, len(items), self.batch_size):
            chunk = items[start : start + self.batch_size]
            batch = np.stack([backbone.preprocess(_as_pil(item)) for item in chunk])
            features = _run(runner, batch)
            _check_shape(features, backbone)
            X_out[start : start + len(chunk)] = features
        _check_finite(X_out, backbone.name, [f"image #{i}" for i in range(len(items))])
        return X_out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """``<backbone>_0`` ... ``<backbone>_<feature_dim - 1>``."""
        dim = get_backbone(self.backbone).feature_dim
        return np.asarray([f"{self.backbone}_{i}" for i in range(dim)], dtype=object)
