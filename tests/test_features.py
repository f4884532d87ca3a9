"""Feature extraction, its content-addressed cache, and the scikit-learn transformer."""

import logging
import shutil
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
from evoprune.errors import ConfigError, DataError
from evoprune.features import (
    FeatureResult,
    ImageFeatures,
    cache_key,
    default_cache_dir,
    extract_features,
)

# (skimage photo, file format); colour ones are class 1, grey ones class 0
PHOTOS = [("chelsea", "png"), ("coffee", "jpg"), ("astronaut", "png"), ("rocket", "jpg"),
          ("immunohistochemistry", "bmp"), ("camera", "png"), ("coins", "jpg"), ("moon", "png"),
          ("page", "bmp"), ("text", "png")]
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
    assert [p.name for p in tmp_path.iterdir()] == [f"{first.key}.npy"]  # no temp files left

    _no_forward(monkeypatch)
    with caplog.at_level(logging.INFO, logger="evoprune.features"):
        second = extract_features(backbone, paths, cache_dir=tmp_path, progress=False)
    assert second.cached and second.key == first.key
    np.testing.assert_array_equal(second.X, first.X)
    assert "cache hit" in caplog.text


def test_batches_and_worker_processes_give_the_same_features(backbone, paths, reference):
    small = extract_features(backbone, paths, use_cache=False, batch_size=3, progress=False)
    np.testing.assert_allclose(small.X, reference.X, rtol=1e-4, atol=1e-5)
    workers = extract_features(backbone, paths[:4], use_cache=False, batch_size=2,
                               num_workers=1, progress=False)
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
    other = SimpleNamespace(name=backbone.name, weights_id=backbone.weights_id,
                            preprocess_id=backbone.preprocess_id + ";other")
    assert cache_key(other, paths) != key
    other = SimpleNamespace(name=backbone.name, weights_id="0" * 16,
                            preprocess_id=backbone.preprocess_id)
    assert cache_key(other, paths) != key
    assert len(key) == 64


@pytest.mark.parametrize("content", ["garbage", "wrong shape"])
def test_a_corrupt_cache_file_is_recomputed(backbone, paths, reference, tmp_path, caplog, content):
    cache_file = tmp_path / f"{reference.key}.npy"
    if content == "garbage":
        cache_file.write_bytes(b"\x93NUMPY not really")
    else:
        np.save(cache_file, np.zeros((N, 7), dtype=np.float32))
    with caplog.at_level(logging.WARNING, logger="evoprune.features"):
        result = extract_features(backbone, paths, cache_dir=tmp_path, progress=False)
    assert not result.cached and "recomputing" in caplog.text
    np.testing.assert_array_equal(result.X, reference.X)
    np.testing.assert_array_equal(np.load(cache_file), reference.X)
    assert sorted(p.name for p in tmp_path.iterdir()) == [cache_file.name]


def test_use_cache_false_writes_nothing(backbone, paths, tmp_path):
    result = extract_features(backbone, paths[:2], cache_dir=tmp_path, use_cache=False,
                              progress=False)
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
    pipe = Pipeline([
        ("features", ImageFeatures(cache_dir=tmp_path)),
        ("clf", LogisticRegression(max_iter=2000)),
    ])
    pipe.fit(paths, labels)
    assert pipe.named_steps["features"].n_features_out_ == 1280
    predicted = pipe.predict(paths)
    assert predicted.shape == (N,) and (predicted == labels).mean() >= 0.8
    assert len(list(tmp_path.glob("*.npy"))) == 1  # paths went through the cache
    assert clone(pipe.named_steps["features"]).get_params()["cache_dir"] == tmp_path
    np.testing.assert_array_equal(pipe.named_steps["features"].transform(paths), reference.X)


def test_image_features_from_pil_images_and_arrays(paths, reference, tmp_path):
    transformer = ImageFeatures(cache_dir=tmp_path, batch_size=2).fit(paths)
    colour = [0, 2]  # chelsea and astronaut, lossless PNG
    arrays = [np.asarray(Image.open(paths[i]).convert("RGB")) for i in colour]
    images = [Image.fromarray(a) for a in arrays]
    for inputs in (arrays, images):
        np.testing.assert_allclose(transformer.transform(inputs), reference.X[colour],
                                   rtol=1e-4, atol=1e-5)
    assert list(tmp_path.iterdir()) == []  # in-memory images are not cached
    assert len(transformer.get_feature_names_out()) == 1280
    with pytest.raises(ConfigError, match="uint8"):
        transformer.transform([np.zeros((8, 8, 3), dtype=np.float64)])
