"""Feature extraction, its content-addressed cache, and the scikit-learn transformer."""

import hashlib
import json
import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import skimage.data
from PIL import Image
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from evoprune.backbones import Backbone, get_backbone
from evoprune.backbones.runtime import Runner
from evoprune.errors import ConfigError, DataError
from evoprune.features import (
    FeatureResult,
    ImageFeatures,
    cache_file_path,
    cache_key,
    default_cache_dir,
    extract_features,
)

# (skimage photo, file format); colour ones are class 1, grey ones class 0
PHOTOS = [
    ("chelsea", "png"),
    ("coffee", "jpg"),
    ("astronaut", "png"),
    ("rocket", "jpg"),
    ("immunohistochemistry", "bmp"),
    ("camera", "png"),
    ("coins", "jpg"),
    ("moon", "png"),
    ("page", "bmp"),
    ("text", "png"),
]
N = len(PHOTOS)


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    for name, fmt in PHOTOS:
        Image.fromarray(getattr(skimage.data, name)()).save(folder / f"{name}.{fmt}")
    return folder


@pytest.fixture(scope="module")
def paths(image_dir) -> list[str]:
    return [str(image_dir / f"{name}.{fmt}") for name, fmt in PHOTOS]


@pytest.fixture(scope="module")
def labels() -> np.ndarray:
    return np.array([getattr(skimage.data, name)().ndim == 3 for name, _ in PHOTOS], dtype=int)


@pytest.fixture(scope="module")
def backbone() -> Backbone:
    return get_backbone("efficientnet-lite0")


@pytest.fixture(scope="module")
def reference(backbone, paths) -> FeatureResult:
    """Features computed once, without any cache."""
    result = extract_features(backbone, paths, use_cache=False, progress=False)
    assert not result.cached
    return result


def _no_forward(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("the CNN ran although the features were cached")

    monkeypatch.setattr(Backbone, "features", boom)
    monkeypatch.setattr(Backbone, "feature_extractor", boom)
    monkeypatch.setattr(Backbone, "runner", boom)  # the CNN in its fast form (issue 12)


def _copy(paths: list[str], folder: Path) -> list[str]:
    folder.mkdir()
    return [str(shutil.copy(p, folder / f"copy_{i}{Path(p).suffix}")) for i, p in enumerate(paths)]


def test_features_shape_dtype_and_second_call_is_cached(
    backbone, paths, reference, tmp_path, monkeypatch, caplog
):
    first = extract_features("efficientnet-lite0", paths, cache_dir=tmp_path, progress=True)
    assert first.X.shape == (N, 1280) and first.X.dtype == np.float32
    assert not first.cached and first.seconds > 0
    np.testing.assert_array_equal(first.X, reference.X)
    assert first.key == reference.key == cache_key(backbone, paths)
    assert [p.name for p in tmp_path.iterdir()] == [f"{first.key}.npz"]  # no temp files left

    _no_forward(monkeypatch)
    with caplog.at_level(logging.INFO, logger="evoprune.features"):
        second = extract_features(backbone, paths, cache_dir=tmp_path, progress=False)
    assert second.cached and second.key == first.key
    np.testing.assert_array_equal(second.X, first.X)
    assert "cache hit" in caplog.text


def test_batches_and_worker_processes_give_the_same_features(backbone, paths, reference):
    small = extract_features(backbone, paths, use_cache=False, batch_size=3, progress=False)
    np.testing.assert_allclose(small.X, reference.X, rtol=1e-4, atol=1e-5)
    workers = extract_features(
        backbone, paths[:4], use_cache=False, batch_size=2, num_workers=1, progress=False
    )
    np.testing.assert_allclose(workers.X, reference.X[:4], rtol=1e-4, atol=1e-5)


def test_copied_images_hit_the_cache(backbone, paths, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = extract_features(backbone, paths, cache_dir=cache, progress=False)
    copies = _copy(paths, tmp_path / "elsewhere")
    _no_forward(monkeypatch)
    again = extract_features(backbone, copies, cache_dir=cache, progress=False)
    assert again.cached and again.key == first.key
    np.testing.assert_array_equal(again.X, first.X)


def test_changing_one_byte_or_the_order_misses_the_cache(backbone, paths, reference, tmp_path):
    cache = tmp_path / "cache"
    first = extract_features(backbone, paths, cache_dir=cache, progress=False)
    copies = _copy(paths, tmp_path / "changed")
    bmp = next(i for i, p in enumerate(copies) if p.endswith(".bmp"))
    data = bytearray(Path(copies[bmp]).read_bytes())
    data[-1] ^= 0xFF  # the last pixel byte: still a valid image
    Path(copies[bmp]).write_bytes(bytes(data))
    changed = extract_features(backbone, copies, cache_dir=cache, progress=False)
    assert not changed.cached and changed.key != first.key
    others = [i for i in range(N) if i != bmp]
    np.testing.assert_allclose(changed.X[others], reference.X[others], rtol=1e-4, atol=1e-5)
    assert cache_key(backbone, paths[::-1]) != first.key


def test_cache_key_covers_the_backbone(backbone, paths):
    key = cache_key(backbone, paths)
    form = backbone.form_identity("cpu")
    assert cache_key(backbone, paths, form) == key  # the default: this machine's CPU form
    other = SimpleNamespace(
        name=backbone.name,
        weights_id=backbone.weights_id,
        preprocess_id=backbone.preprocess_id + ";other",
    )
    assert cache_key(other, paths, form) != key
    other = SimpleNamespace(
        name=backbone.name, weights_id="0" * 16, preprocess_id=backbone.preprocess_id
    )
    assert cache_key(other, paths, form) != key
    assert cache_key(backbone, paths, "eager/cpu") != key  # another form: another key
    assert len(key) == 64


def test_use_cache_false_writes_nothing(backbone, paths, tmp_path):
    result = extract_features(
        backbone, paths[:2], cache_dir=tmp_path, use_cache=False, progress=False
    )
    assert not result.cached and result.X.shape == (2, 1280)
    assert list(tmp_path.iterdir()) == []


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("EVOPRUNE_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("EVOPRUNE_CACHE_DIR")
    assert default_cache_dir() == Path.home() / ".cache" / "evoprune" / "features"


def test_bad_arguments(backbone, paths, tmp_path):
    with pytest.raises(DataError, match="missing.png"):
        extract_features(backbone, [str(tmp_path / "missing.png")], cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="batch_size"):
        extract_features(backbone, paths, batch_size=0, cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="single path"):
        extract_features(backbone, paths[0], cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="known backbones"):
        extract_features("no-such-net", paths, cache_dir=tmp_path)


def test_image_features_in_a_pipeline(paths, labels, reference, tmp_path):
    pipe = Pipeline(
        [
            ("features", ImageFeatures(cache_dir=tmp_path)),
            ("clf", LogisticRegression(max_iter=2000)),
        ]
    )
    pipe.fit(paths, labels)
    assert pipe.named_steps["features"].n_features_out_ == 1280
    predicted = pipe.predict(paths)
    assert predicted.shape == (N,) and (predicted == labels).mean() >= 0.8
    assert len(list(tmp_path.glob("*.npz"))) == 1  # paths went through the cache
    assert clone(pipe.named_steps["features"]).get_params()["cache_dir"] == tmp_path
    np.testing.assert_array_equal(pipe.named_steps["features"].transform(paths), reference.X)


def test_image_features_from_pil_images_and_arrays(paths, reference, tmp_path):
    transformer = ImageFeatures(cache_dir=tmp_path, batch_size=2).fit(paths)
    colour = [0, 2]  # chelsea and astronaut, lossless PNG
    arrays = [np.asarray(Image.open(paths[i]).convert("RGB")) for i in colour]
    images = [Image.fromarray(a) for a in arrays]
    for inputs in (arrays, images):
        np.testing.assert_allclose(
            transformer.transform(inputs), reference.X[colour], rtol=1e-4, atol=1e-5
        )
    assert list(tmp_path.iterdir()) == []  # in-memory images are not cached
    assert len(transformer.get_feature_names_out()) == 1280
    with pytest.raises(ConfigError, match="uint8"):
        transformer.transform([np.zeros((8, 8, 3), dtype=np.float64)])


# ---------------------------------------------------------------- cache faults (issue 8)


def _save_entry(path: Path, X: np.ndarray, header: dict) -> None:
    """Write a cache entry by hand, as a damaged or forged file would look."""
    with path.open("wb") as handle:
        np.savez(handle, features=X, header=np.asarray(json.dumps(header)))


def _load_entry(path: Path) -> tuple[np.ndarray, dict]:
    with np.load(path, allow_pickle=False) as archive:
        return archive["features"], json.loads(str(archive["header"][()]))


def _flip_byte(path: Path, X: np.ndarray, header: dict) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # inside the feature bytes: one bit of one float
    path.write_bytes(bytes(data))


def _edit_rows(edit):
    def damage(path: Path, X: np.ndarray, header: dict) -> None:
        _save_entry(path, edit(X.copy()), header)  # the header keeps the old checksum

    return damage


def _nan_with_matching_checksum(path: Path, X: np.ndarray, header: dict) -> None:
    X = X.copy()
    X[1, 5] = np.nan
    forged = dict(header, sha256=_sha256(X))
    _save_entry(path, X, forged)


def _sha256(X: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(X, dtype=np.float32).tobytes()).hexdigest()


def _with_x(value):
    def edit(X):
        X[2] = value
        return X

    return edit


def _truncate(path: Path, X: np.ndarray, header: dict) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _zeros_over_file(path: Path, X: np.ndarray, header: dict) -> None:
    path.write_bytes(bytes(path.stat().st_size))


def _wrong_key(path: Path, X: np.ndarray, header: dict) -> None:
    # A valid entry of other images (a different key) under this key's file name.
    other = X[::-1].copy()
    _save_entry(path, other, dict(header, key="0" * 64, sha256=_sha256(other)))


def _wrong_shape(path: Path, X: np.ndarray, header: dict) -> None:
    small = X[:, :7].copy()
    _save_entry(path, small, dict(header, shape=list(small.shape), sha256=_sha256(small)))


def _old_npy(path: Path, X: np.ndarray, header: dict) -> None:
    with path.open("wb") as handle:
        np.save(handle, X)


FEW = 3  # the fault tests use the first few photos: each recomputation costs a CNN pass


@pytest.fixture(scope="module")
def pristine(backbone, paths, tmp_path_factory) -> tuple[list[str], FeatureResult, Path]:
    """(paths, clean features, a pristine cache file of them), computed once for the module."""
    few, folder = paths[:FEW], tmp_path_factory.mktemp("pristine")
    first = extract_features(backbone, few, cache_dir=folder, progress=False)
    assert not first.cached
    return few, first, cache_file_path(folder, first.key)


DAMAGES = {
    "flipped byte": (_flip_byte, "unreadable"),
    "NaN written": (_edit_rows(_with_x(np.nan)), "sha256 checksum"),
    "NaN with a matching checksum": (_nan_with_matching_checksum, "NaN or infinite"),
    "inf written": (_edit_rows(_with_x(np.inf)), "sha256 checksum"),
    "rows zeroed": (_edit_rows(lambda X: np.zeros_like(X)), "sha256 checksum"),
    "rows permuted": (_edit_rows(lambda X: X[np.roll(np.arange(len(X)), 1)]), "sha256 checksum"),
    "truncated": (_truncate, "unreadable"),
    "zeros over the file": (_zeros_over_file, "unreadable"),
    "wrong key": (_wrong_key, "key"),
    "wrong shape": (_wrong_shape, "expected float32"),
    "not an npz": (_old_npy, "not an .npz"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_cache_file_is_reported_recomputed_and_rewritten(
    backbone, pristine, tmp_path, monkeypatch, caplog, damage
):
    """Each damage used to be a silent "cache hit" with wrong features (or a crash)."""
    few, first, pristine_file = pristine
    cache_file = Path(shutil.copy(pristine_file, tmp_path))
    X, header = _load_entry(cache_file)
    assert header["key"] == first.key and header["shape"] == [FEW, 1280]
    damage_file, reason = DAMAGES[damage]
    damage_file(cache_file, X, header)

    with caplog.at_level(logging.WARNING, logger="evoprune.features"):
        result = extract_features(backbone, few, cache_dir=tmp_path, progress=False)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, caplog.text
    message = warnings[0].getMessage()
    assert str(cache_file) in message and "damaged" in message and reason in message
    assert not result.cached
    np.testing.assert_array_equal(result.X, first.X)

    # The file was rewritten intact: the next call is a verified hit, with no forward pass.
    assert sorted(p.name for p in tmp_path.iterdir()) == [cache_file.name]
    _no_forward(monkeypatch)
    again = extract_features(backbone, few, cache_dir=tmp_path, progress=False)
    assert again.cached
    np.testing.assert_array_equal(again.X, first.X)


def test_a_v1_cache_file_is_a_plain_miss(backbone, pristine, tmp_path, caplog):
    """Files of the old format (bare .npy, old key) are ignored, not trusted or warned about."""
    few, first, _ = pristine
    np.save(tmp_path / f"{first.key}.npy", np.zeros_like(first.X))  # even under this key
    with caplog.at_level(logging.WARNING, logger="evoprune.features"):
        result = extract_features(backbone, few, cache_dir=tmp_path, progress=False)
    assert not result.cached and caplog.text == ""
    np.testing.assert_array_equal(result.X, first.X)


def test_non_finite_backbone_features_are_refused(backbone, pristine, tmp_path, monkeypatch):
    """A broken backbone used to fill the cache (and the heads) with NaN."""
    real = Backbone.runner

    def broken(self, *args, **kwargs):  # extraction runs the CNN through a Runner (issue 12)
        runner = real(self, *args, **kwargs)

        def run(batch):
            out = runner(batch).copy()
            out[1 % len(out), 0] = np.nan
            return out

        return Runner(runner.form, runner.device, run, runner.forward_batch, runner.concurrent)

    monkeypatch.setattr(Backbone, "runner", broken)
    few = pristine[0]
    with pytest.raises(DataError, match=r"efficientnet-lite0.*NaN.*coffee\.jpg.*reinstall"):
        extract_features(backbone, few, cache_dir=tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []  # nothing cached
    transformer = ImageFeatures(use_cache=False).fit(few)
    arrays = [np.asarray(Image.open(p).convert("RGB")) for p in few[:2]]
    with pytest.raises(DataError, match=r"efficientnet-lite0.*image #1"):
        transformer.transform(arrays)


@pytest.mark.parametrize("how", ["folder under a regular file", "write raises PermissionError"])
def test_an_unwritable_cache_is_used_without_caching(
    backbone, pristine, tmp_path, monkeypatch, caplog, how
):
    """Tests run as root, which may write anywhere, so the read-only folder is simulated: a cache
    folder below a regular file (a real OS error, NotADirectoryError), or the atomic write
    raising PermissionError as it does in a read-only folder."""
    cache = tmp_path / "cache"
    if how == "folder under a regular file":
        (tmp_path / "plain-file").write_text("not a folder")
        cache = tmp_path / "plain-file" / "cache"
    else:

        def read_only(path, write):
            raise PermissionError(13, "Permission denied", str(path))

        monkeypatch.setattr("evoprune.features.atomic_write", read_only)
    few, first, _ = pristine
    with caplog.at_level(logging.WARNING, logger="evoprune.features"):
        result = extract_features(backbone, few, cache_dir=cache, progress=False)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, caplog.text
    assert "not cached" in warnings[0].getMessage()
    assert str(cache_file_path(cache, result.key)) in warnings[0].getMessage()
    assert not result.cached
    np.testing.assert_array_equal(result.X, first.X)


_CHILD = """
import sys, time
from pathlib import Path
import numpy as np
from evoprune.features import extract_features
cache, out, go, paths = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4:]
from evoprune.backbones import get_backbone
backbone = get_backbone("efficientnet-lite0")
out.with_suffix(".ready").touch()
while not go.exists():
    time.sleep(0.01)
result = extract_features(backbone, paths, cache_dir=cache, progress=False)
np.save(out, result.X)
"""


def test_two_processes_filling_one_cache(backbone, pristine, tmp_path, monkeypatch):
    """Both compute at the same moment; each gets correct features and the cache ends as one
    intact file (each writer renames its own complete temporary file into place)."""
    few, first, _ = pristine
    clean = first.X
    cache, go = tmp_path / "cache", tmp_path / "go"
    outs = [tmp_path / f"child{i}.npy" for i in range(2)]
    children = [
        subprocess.Popen([sys.executable, "-c", _CHILD, str(cache), str(out), str(go), *few])
        for out in outs
    ]
    deadline = time.monotonic() + 120
    while not all(o.with_suffix(".ready").exists() for o in outs):
        assert time.monotonic() < deadline and all(c.poll() is None for c in children)
        time.sleep(0.05)
    go.touch()
    assert [c.wait(timeout=120) for c in children] == [0, 0]
    for out in outs:
        np.testing.assert_array_equal(np.load(out), clean)
    key = cache_key(backbone, few)
    assert [p.name for p in cache.iterdir()] == [cache_file_path(cache, key).name]
    _no_forward(monkeypatch)
    again = extract_features(backbone, few, cache_dir=cache, progress=False)
    assert again.cached
    np.testing.assert_array_equal(again.X, clean)
