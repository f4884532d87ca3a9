"""Tests of evoprune.data with real images: scikit-image's bundled photos and ELPV solar cells."""

from __future__ import annotations

import io
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

from evoprune.data import (
    IMAGE_EXTENSIONS,
    ImageDataset,
    kfold_splits,
    list_datasets,
    load_dataset,
    open_rgb,
    stratified_split,
)
from evoprune.errors import ConfigError, DataError

SIDE = 48  # fixtures are small crops: real content, fast to write and decode


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    """Small crops of scikit-image's bundled photos (RGB uint8, and camera as grey)."""

    def crop(a: np.ndarray, y: int, x: int) -> np.ndarray:
        return np.ascontiguousarray(a[y : y + SIDE, x : x + SIDE])

    chelsea, coffee, astronaut = (
        skimage.data.chelsea(),
        skimage.data.coffee(),
        skimage.data.astronaut(),
    )
    return {
        "chelsea": crop(chelsea, 100, 150),
        "chelsea2": crop(chelsea, 150, 200),
        "coffee": crop(coffee, 150, 250),
        "coffee2": crop(coffee, 200, 300),
        "astronaut": crop(astronaut, 100, 200),
        "astronaut2": crop(astronaut, 200, 150),
        "camera": crop(skimage.data.camera(), 100, 200),
    }


@pytest.fixture(scope="module")
def elpv_files() -> list[str]:
    """A few real ELPV cell images (300x300 grey PNG) from the installed package."""
    return load_dataset("elpv").paths[:4]


def save(array: np.ndarray, path: Path, kind: str = "png") -> Path:
    """Write `array` (RGB or grey uint8) to `path` as one of several formats and modes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(array)
    if kind == "png":
        img.save(path)
    elif kind == "jpg":
        img.convert("RGB").save(path, quality=90)
    elif kind == "grey":
        img.convert("L").save(path)
    elif kind == "rgba":
        rgba = img.convert("RGBA")
        rgba.putalpha(200)
        rgba.save(path)
    elif kind == "palette":
        pal = img.convert("RGB").quantize(colors=16)
        pal.info["transparency"] = 0
        pal.save(path, transparency=0)
    else:
        img.save(path, format=kind)
    return path


def class_tree(root: Path, spec: dict[str, list[tuple[np.ndarray, str, str]]]) -> Path:
    """root/<class>/<file> for each (array, file name, kind) of each class."""
    for cls, files in spec.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for array, name, kind in files:
            save(array, root / cls / name, kind)
    return root


def truncated_png(array: np.ndarray, path: Path) -> Path:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return path


def name_of(ds: ImageDataset, i: int) -> str:
    return os.path.basename(ds.paths[i])


# ---------------------------------------------------------------- open_rgb and extensions


def test_image_extensions_are_lowercase_dotted_and_complete():
    assert set(IMAGE_EXTENSIONS) == {
        ".jpg",
        ".jpeg",
        ".png",
        ".bmp",
        ".gif",
        ".tif",
        ".tiff",
        ".webp",
    }


@pytest.mark.parametrize(
    "kind,ext",
    [
        ("png", ".png"),
        ("jpg", ".jpg"),
        ("grey", ".png"),
        ("rgba", ".png"),
        ("palette", ".png"),
        ("GIF", ".gif"),
        ("BMP", ".bmp"),
        ("TIFF", ".tif"),
        ("WEBP", ".webp"),
    ],
)
def test_open_rgb_returns_rgb_of_the_same_size_for_every_format(tmp_path, photos, kind, ext):
    path = save(photos["chelsea"], tmp_path / f"img{ext}", kind)
    img = open_rgb(str(path))
    assert img.mode == "RGB"
    assert img.size == (SIDE, SIDE)
    # the content survives: close to the source for lossless colour formats
    if kind in ("png", "BMP", "TIFF"):
        np.testing.assert_array_equal(np.asarray(img), photos["chelsea"])


def test_open_rgb_grey_repeats_the_grey_values(tmp_path, photos, elpv_files):
    for path in (save(photos["camera"], tmp_path / "cam.png"), elpv_files[0]):
        grey = np.asarray(Image.open(path))
        rgb = np.asarray(open_rgb(str(path)))
        assert Image.open(path).mode == "L"
        assert rgb.shape == grey.shape + (3,)
        for channel in range(3):
            np.testing.assert_array_equal(rgb[..., channel], grey)


def test_open_rgb_composites_transparency_on_white(tmp_path, photos):
    rgba = np.dstack([photos["coffee"], np.full((SIDE, SIDE), 255, np.uint8)])
    rgba[0, 0] = (200, 10, 10, 0)  # fully transparent red -> white
    rgba[1, 1, 3] = 255  # opaque -> unchanged
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = np.asarray(open_rgb(str(tmp_path / "a.png")))
    assert tuple(out[0, 0]) == (255, 255, 255)
    assert tuple(out[1, 1]) == tuple(photos["coffee"][1, 1])

    la = Image.fromarray(np.dstack([photos["camera"], np.zeros((SIDE, SIDE), np.uint8)]), "LA")
    la.save(tmp_path / "la.png")
    assert np.all(np.asarray(open_rgb(str(tmp_path / "la.png"))) == 255)


def test_open_rgb_palette_transparent_index_becomes_white(tmp_path, photos):
    pal = Image.fromarray(photos["astronaut"]).quantize(colors=8)
    index = pal.getpixel((0, 0))
    assert pal.getpalette()[3 * index : 3 * index + 3] != [255, 255, 255]
    pal.save(tmp_path / "p.png", transparency=index)
    assert Image.open(tmp_path / "p.png").mode == "P"
    out = np.asarray(open_rgb(str(tmp_path / "p.png")))
    p = np.asarray(pal)
    assert np.all(out[p == index] == 255)
    assert np.any(out[p != index] != 255)


def test_open_rgb_scales_16_bit_32_bit_and_float_grey(tmp_path):
    values16 = np.array([[0, 257 * 100, 65535]], np.uint16)
    Image.fromarray(values16).save(tmp_path / "a16.png")
    assert Image.open(tmp_path / "a16.png").mode == "I;16"
    np.testing.assert_array_equal(
        np.asarray(open_rgb(str(tmp_path / "a16.png")))[0, :, 1], [0, 100, 255]
    )

    Image.fromarray(np.array([[0, 100, 255]], np.int32)).save(tmp_path / "i.tif")
    assert Image.open(tmp_path / "i.tif").mode == "I"
    np.testing.assert_array_equal(
        np.asarray(open_rgb(str(tmp_path / "i.tif")))[0, :, 2], [0, 100, 255]
    )

    Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32)).save(tmp_path / "f.tif")
    assert Image.open(tmp_path / "f.tif").mode == "F"
    np.testing.assert_array_equal(
        np.asarray(open_rgb(str(tmp_path / "f.tif")))[0, :, 0], [0, 128, 255]
    )


def test_open_rgb_bilevel_and_cmyk(tmp_path, photos):
    Image.fromarray(photos["camera"]).convert("1").save(tmp_path / "b.png")
    out = np.asarray(open_rgb(str(tmp_path / "b.png")))
    assert set(np.unique(out)) <= {0, 255} and out.shape == (SIDE, SIDE, 3)
    Image.fromarray(photos["coffee"]).convert("CMYK").save(tmp_path / "c.jpg")
    assert Image.open(tmp_path / "c.jpg").mode == "CMYK"
    assert open_rgb(str(tmp_path / "c.jpg")).mode == "RGB"


def test_open_rgb_raises_data_error_naming_the_path(tmp_path, photos):
    (tmp_path / "text.jpg").write_text("not an image")
    bad = truncated_png(photos["chelsea"], tmp_path / "cut.png")
    for path in (tmp_path / "text.jpg", bad, tmp_path / "missing.png"):
        with pytest.raises(DataError, match=str(path.name)):
            open_rgb(str(path))


# ---------------------------------------------------------------- layout (a): class folders


@pytest.fixture
def class_folders(tmp_path, photos, elpv_files) -> Path:
    root = class_tree(
        tmp_path / "pets",
        {
            "cat": [
                (photos["chelsea"], "c1.png", "png"),
                (photos["chelsea2"], "c2.JPG", "jpg"),
                (photos["chelsea"], "c3.png", "palette"),
            ],
            "cup": [(photos["coffee"], "k1.jpeg", "jpg"), (photos["coffee2"], "k2.png", "rgba")],
            "person": [
                (photos["astronaut"], "a1.webp", "WEBP"),
                (photos["camera"], "g1.png", "grey"),
                (photos["astronaut2"], "a2.bmp", "BMP"),
            ],
        },
    )
    shutil.copy(elpv_files[0], root / "person" / "cell.png")
    (root / "cat" / "notes.txt").write_text("ignored")
    (root / "cat" / ".hidden.png").write_bytes(b"ignored: hidden")
    (root / ".cache").mkdir()
    save(photos["coffee"], root / ".cache" / "x.png")
    return root


def test_layout_a_class_folders(class_folders):
    ds = load_dataset(str(class_folders))
    assert ds.name == "pets"
    assert ds.classes == ["cat", "cup", "person"] and ds.n_classes == 3
    assert ds.labels.dtype == np.int64
    names = {name_of(ds, i): ds.classes[ds.labels[i]] for i in range(len(ds.paths))}
    assert names == {
        "c1.png": "cat",
        "c2.JPG": "cat",
        "c3.png": "cat",
        "k1.jpeg": "cup",
        "k2.png": "cup",
        "a1.webp": "person",
        "g1.png": "person",
        "a2.bmp": "person",
        "cell.png": "person",
    }
    assert all(os.path.isabs(p) and os.path.isfile(p) for p in ds.paths)
    assert ds.test_idx is None and ds.folds is None and ds.skipped == []
    # every path opens as RGB
    assert {open_rgb(p).mode for p in ds.paths} == {"RGB"}


def test_layout_a_accepts_pathlike_and_is_deterministic(class_folders):
    a = load_dataset(class_folders)
    b = load_dataset(str(class_folders) + os.sep)
    assert a.paths == b.paths and np.array_equal(a.labels, b.labels)
    assert a.paths == sorted(a.paths)  # class folders sorted, files sorted within each


# ---------------------------------------------------------------- layout (b): train/ and test/


def test_layout_b_train_test(tmp_path, photos):
    root = tmp_path / "tt"
    class_tree(
        root / "train",
        {
            "cat": [(photos["chelsea"], "t1.png", "png"), (photos["chelsea2"], "t2.jpg", "jpg")],
            "cup": [(photos["coffee"], "t3.png", "png")],
            "person": [(photos["astronaut"], "t4.png", "png")],
        },
    )
    class_tree(
        root / "test",
        {
            "cat": [(photos["chelsea2"], "s1.png", "grey")],
            "cup": [(photos["coffee2"], "s2.jpg", "jpg"), (photos["coffee"], "s3.png", "rgba")],
        },
    )
    ds = load_dataset(str(root))
    assert ds.classes == ["cat", "cup", "person"]
    assert [name_of(ds, i) for i in range(len(ds.paths))] == [
        "t1.png",
        "t2.jpg",
        "t3.png",
        "t4.png",
        "s1.png",
        "s2.jpg",
        "s3.png",
    ]
    np.testing.assert_array_equal(ds.test_idx, [4, 5, 6])
    np.testing.assert_array_equal(ds.labels, [0, 0, 1, 2, 0, 1, 1])
    assert ds.folds is None
    assert all(f"{os.sep}test{os.sep}" in ds.paths[i] for i in ds.test_idx)


def test_layout_b_test_class_missing_from_train(tmp_path, photos):
    root = tmp_path / "tt"
    class_tree(
        root / "train",
        {"cat": [(photos["chelsea"], "a.png", "png")], "cup": [(photos["coffee"], "b.png", "png")]},
    )
    class_tree(
        root / "test",
        {
            "cat": [(photos["chelsea2"], "c.png", "png")],
            "dog": [(photos["astronaut"], "d.png", "png")],
        },
    )
    with pytest.raises(DataError, match=r"dog.*train folder lacks"):
        load_dataset(str(root))


# ---------------------------------------------------------------- layout (c): k partitions


@pytest.fixture
def partitions(tmp_path, photos) -> Path:
    """3 partitions; each image appears as a copy in several partitions (as in the paper)."""
    root = tmp_path / "folds"
    images = {"cat": ["chelsea", "chelsea2", "camera"], "cup": ["coffee", "coffee2", "astronaut"]}
    for k in range(3):
        for cls, keys in images.items():
            for j, key in enumerate(keys):
                split = "test" if j == k else "train"
                save(photos[key], root / f"part{k}" / split / cls / f"{key}.png")
    return root


def test_layout_c_partitions(partitions):
    ds = load_dataset(str(partitions))
    assert ds.classes == ["cat", "cup"]
    assert ds.test_idx is None
    assert len(ds.folds) == 3
    assert len(ds.paths) == len(set(ds.paths)) == 3 * 6  # every distinct file path
    expected_test = [
        ["chelsea.png", "coffee.png"],
        ["chelsea2.png", "coffee2.png"],
        ["astronaut.png", "camera.png"],
    ]
    for k, (train_idx, test_idx) in enumerate(ds.folds):
        part = f"{os.sep}part{k}{os.sep}"
        assert sorted(name_of(ds, i) for i in test_idx) == expected_test[k]
        assert all(part + "test" + os.sep in ds.paths[i] for i in test_idx)
        assert all(part + "train" + os.sep in ds.paths[i] for i in train_idx)
        assert len(train_idx) == 4 and not set(train_idx) & set(test_idx)
        for i in np.concatenate([train_idx, test_idx]):
            assert ds.classes[ds.labels[i]] == Path(ds.paths[i]).parent.name
    all_idx = np.concatenate([np.concatenate(f) for f in ds.folds])
    assert sorted(all_idx) == list(range(len(ds.paths)))


def test_layout_c_symlinked_file_is_one_sample(tmp_path, photos):
    store = tmp_path / "store"
    for key in ("chelsea", "chelsea2", "coffee", "coffee2"):
        save(photos[key], store / f"{key}.png")
    root = tmp_path / "linked"
    layout = {
        "p0": {"train": ["chelsea", "coffee"], "test": ["chelsea2", "coffee2"]},
        "p1": {"train": ["chelsea2", "coffee2"], "test": ["chelsea", "coffee"]},
    }
    for part, splits in layout.items():
        for split, keys in splits.items():
            for key in keys:
                cls = "cat" if key.startswith("chelsea") else "cup"
                (root / part / split / cls).mkdir(parents=True, exist_ok=True)
                os.symlink(store / f"{key}.png", root / part / split / cls / f"{key}.png")
    ds = load_dataset(str(root))
    assert len(ds.paths) == 4  # four real files, each linked into both partitions
    (tr0, te0), (tr1, te1) = ds.folds
    np.testing.assert_array_equal(np.sort(tr0), np.sort(te1))
    np.testing.assert_array_equal(np.sort(te0), np.sort(tr1))
    # the same real file under two class names is an error
    os.symlink(store / "coffee.png", root / "p1" / "test" / "cat" / "odd.png")
    with pytest.raises(DataError, match=r"odd.png.*same file.*give each image one class"):
        load_dataset(str(root))


def test_layout_c_mixed_with_a_plain_folder_is_an_error(partitions, photos):
    save(photos["coffee"], partitions / "extra" / "cup" / "x.png")
    with pytest.raises(DataError, match=r"mixes layouts.*extra"):
        load_dataset(str(partitions))


# ---------------------------------------------------------------- CSV manifests


@pytest.fixture
def manifest_images(tmp_path, photos) -> Path:
    base = tmp_path / "m"
    for key in ("chelsea", "chelsea2", "coffee", "coffee2", "astronaut"):
        save(photos[key], base / "img" / f"{key}.png")
    return base


def test_csv_without_split_relative_and_absolute_paths(manifest_images):
    absolute = manifest_images / "img" / "astronaut.png"
    (manifest_images / "list.csv").write_text(
        "path,label\n"
        "img/coffee.png,cup\n"
        "img/chelsea.png,cat\n"
        "./img/coffee2.png,cup\n"
        f"{absolute},person\n"
    )
    ds = load_dataset(str(manifest_images / "list.csv"))
    assert ds.name == "list"
    assert ds.classes == ["cat", "cup", "person"]
    assert [name_of(ds, i) for i in range(4)] == [
        "coffee.png",
        "chelsea.png",
        "coffee2.png",
        "astronaut.png",
    ]
    np.testing.assert_array_equal(ds.labels, [1, 0, 1, 2])
    assert ds.paths[0] == str(manifest_images / "img" / "coffee.png")
    assert ds.test_idx is None


def test_csv_with_split_column(manifest_images, monkeypatch, tmp_path):
    (manifest_images / "s.csv").write_text(
        "label,split,path\n"  # any column order, any case of split values
        "cat,train,img/chelsea.png\n"
        "cat,TEST,img/chelsea2.png\n"
        "cup,train,img/coffee.png\n"
        "cup,test,img/coffee2.png\n"
    )
    monkeypatch.chdir(tmp_path)  # relative paths resolve against the CSV folder, not the cwd
    ds = load_dataset(os.path.join("m", "s.csv"))
    np.testing.assert_array_equal(ds.test_idx, [1, 3])
    np.testing.assert_array_equal(ds.labels, [0, 0, 1, 1])


def test_csv_missing_columns_lists_found_and_needed(manifest_images):
    (manifest_images / "bad.csv").write_text("file,class\nimg/chelsea.png,cat\n")
    with pytest.raises(DataError) as err:
        load_dataset(str(manifest_images / "bad.csv"))
    msg = str(err.value)
    assert "bad.csv" in msg and "'file'" in msg and "'class'" in msg
    assert "lacks column(s) path, label" in msg


def test_csv_unknown_paths_listed_with_count(manifest_images):
    rows = "".join(f"img/missing{i:02d}.png,cat\n" for i in range(12))
    (manifest_images / "u.csv").write_text("path,label\nimg/coffee.png,cup\n" + rows)
    with pytest.raises(DataError) as err:
        load_dataset(str(manifest_images / "u.csv"))
    msg = str(err.value)
    assert "12 listed file(s) do not exist" in msg
    assert "img/missing00.png" in msg and "img/missing09.png" in msg
    assert "img/missing10.png" not in msg and "and 2 more" in msg


@pytest.mark.parametrize(
    "content,pattern",
    [
        ("", "is empty"),
        ("\n\n", "is empty"),
        ("path,label\n", "no rows"),
        ("path,label,split\nimg/chelsea.png,cat,train\nimg/coffee.png,cup,val\n", r"line\(s\) 3"),
        (
            "path,label,split\nimg/chelsea.png,cat,train\nimg/coffee.png,cup,train\n",
            "no row as 'test'",
        ),
        ("path,label\nimg/chelsea.png,cat\nimg/coffee.png,cat\n", "only 1 label"),
        (
            "path,label\nimg/chelsea.png,cat\nimg/coffee.png,\n",
            r"empty path or label on line\(s\) 3",
        ),
        (
            "path,label\nimg/chelsea.png,cat\nimg/coffee.png,cup\nimg/chelsea.png,cat\n",
            "more than once",
        ),
    ],
)
def test_csv_bad_content(manifest_images, content, pattern):
    (manifest_images / "x.csv").write_text(content)
    with pytest.raises(DataError, match=pattern) as err:
        load_dataset(str(manifest_images / "x.csv"))
    assert "x.csv" in str(err.value)


# ---------------------------------------------------------------- built-in ELPV


def test_list_datasets_names_the_builtins():
    listed = dict(list_datasets())
    assert {"elpv", "elpv2", "digits", "mnist", "mnist5k", "textures"} == set(listed)
    assert "working" in listed["elpv2"] and "defective" in listed["elpv2"]


def test_elpv_four_classes():
    ds = load_dataset("elpv")
    assert ds.name == "elpv" and len(ds.paths) == 2624
    assert ds.classes == ["p0.00", "p0.33", "p0.67", "p1.00"]
    np.testing.assert_array_equal(np.bincount(ds.labels), [1508, 295, 106, 715])
    assert ds.test_idx is None and ds.folds is None
    assert all(os.path.isabs(p) for p in ds.paths) and os.path.isfile(ds.paths[-1])
    with Image.open(ds.paths[0]) as img:
        assert img.size == (300, 300) and img.mode == "L"


def test_elpv2_two_classes_agree_with_elpv():
    four, two = load_dataset("elpv"), load_dataset("elpv2")
    assert two.classes == ["defective", "working"]
    counts = dict(zip(two.classes, np.bincount(two.labels)))
    assert counts == {"working": 1508, "defective": 1116}
    assert two.paths == four.paths
    np.testing.assert_array_equal(two.labels == two.classes.index("working"), four.labels == 0)


# ---------------------------------------------------------------- splits


def test_stratified_split_is_stratified_seeded_disjoint_complete():
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    keep, held = stratified_split(labels, 0.2, seed=3)
    assert not set(keep) & set(held)
    assert sorted(np.concatenate([keep, held])) == list(range(100))
    assert list(keep) == sorted(keep) and list(held) == sorted(held)
    np.testing.assert_array_equal(np.bincount(labels[held]), [10, 6, 4])
    again = stratified_split(labels, 0.2, seed=3)
    assert np.array_equal(again[1], held)
    assert not np.array_equal(stratified_split(labels, 0.2, seed=4)[1], held)


def test_stratified_split_gives_each_part_at_least_one_of_each_class():
    labels = np.array([0] * 20 + [1, 1])
    keep, held = stratified_split(labels, 0.1, seed=0)
    assert np.sum(labels[held] == 1) == 1 and np.sum(labels[keep] == 1) == 1


def test_stratified_split_too_few_names_the_class():
    labels = np.array([0, 0, 0, 1, 2, 2])
    with pytest.raises(DataError, match=r"class 'p1' has 1; each class needs at least 2"):
        stratified_split(labels, 0.3, seed=0, classes=["p0", "p1", "p2"])
    with pytest.raises(DataError, match="label 1 has 1"):
        stratified_split(labels, 0.3, seed=0)
    with pytest.raises(ConfigError, match="test_fraction"):
        stratified_split(np.array([0, 0, 1, 1]), 1.5, seed=0)


def test_kfold_splits_partition_and_stratify():
    labels = np.repeat([0, 1], [15, 10])
    folds = kfold_splits(labels, 5, seed=1)
    assert len(folds) == 5
    vals = np.concatenate([va for _, va in folds])
    assert sorted(vals) == list(range(25))
    for train, val in folds:
        assert not set(train) & set(val) and len(train) + len(val) == 25
        np.testing.assert_array_equal(np.bincount(labels[val]), [3, 2])
    same = kfold_splits(labels, 5, seed=1)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, same))
    other = kfold_splits(labels, 5, seed=2)
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(folds, other))


def test_kfold_splits_errors():
    with pytest.raises(DataError, match=r"5-fold split: class 'cup' has 3.*at least 5"):
        kfold_splits(np.repeat([0, 1], [10, 3]), 5, seed=0, classes=["cat", "cup"])
    with pytest.raises(ConfigError, match="k"):
        kfold_splits(np.repeat([0, 1], [10, 10]), 1, seed=0)


# ---------------------------------------------------------------- bad inputs


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match=r"does-not-exist.*does not exist.*elpv"):
        load_dataset(str(tmp_path / "does-not-exist"))


def test_non_csv_file_is_rejected(tmp_path, photos):
    path = save(photos["chelsea"], tmp_path / "one.png")
    with pytest.raises(DataError, match="not a .csv manifest"):
        load_dataset(str(path))


def test_empty_class_folder_is_named(class_folders):
    (class_folders / "empty_class").mkdir()
    (class_folders / "empty_class" / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"empty_class.*has no images"):
        load_dataset(str(class_folders))


def test_images_nested_below_a_class_folder_are_explained(class_folders, photos):
    save(photos["coffee"], class_folders / "deep" / "sub" / "x.png")
    with pytest.raises(DataError, match=r"deep.*subfolder\(s\) sub.*directly"):
        load_dataset(str(class_folders))


def test_one_class_only(tmp_path, photos):
    root = class_tree(tmp_path / "one", {"cat": [(photos["chelsea"], "a.png", "png")]})
    with pytest.raises(DataError, match=r"only 1 class folder \(cat\).*at least 2"):
        load_dataset(str(root))


def test_no_images_at_all(tmp_path, photos):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no images found in .*empty"):
        load_dataset(str(tmp_path / "empty"))
    save(photos["chelsea"], tmp_path / "flat" / "a.png")
    with pytest.raises(DataError, match="move them into one subfolder per class"):
        load_dataset(str(tmp_path / "flat"))


@pytest.fixture
def with_bad_files(class_folders, photos) -> tuple[Path, list[Path]]:
    bad = [
        truncated_png(photos["coffee"], class_folders / "cup" / "cut.png"),
        class_folders / "cat" / "text.jpg",
    ]
    bad[1].write_text("this is not a JPEG")
    buf = io.BytesIO()
    Image.fromarray(skimage.data.astronaut()).save(buf, format="JPEG")
    bad.append(class_folders / "person" / "cut.jpg")
    bad[2].write_bytes(buf.getvalue()[: len(buf.getvalue()) * 9 // 10])
    return class_folders, bad


def test_corrupt_files_raise_listing_them(with_bad_files):
    root, bad = with_bad_files
    with pytest.raises(DataError) as err:
        load_dataset(str(root))
    msg = str(err.value)
    assert "3 image file(s) cannot be read" in msg
    for path in bad:
        assert str(path) in msg
    assert "skip_bad=True (CLI: --skip-bad-images)" in msg


def test_skip_bad_drops_and_warns(with_bad_files, caplog):
    root, bad = with_bad_files
    with caplog.at_level(logging.WARNING, logger="evoprune.data"):
        ds = load_dataset(str(root), skip_bad=True)
    assert sorted(ds.skipped) == sorted(str(p) for p in bad)
    assert not set(ds.skipped) & set(ds.paths)
    assert len(ds.paths) == 9  # the good images of the class_folders fixture
    for i, path in enumerate(ds.paths):
        assert ds.classes[ds.labels[i]] == Path(path).parent.name
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert all(p.name in warning for p in bad)


def test_check_images_false_does_not_decode(with_bad_files):
    root, bad = with_bad_files
    ds = load_dataset(str(root), check_images=False)
    assert {str(p) for p in bad} <= set(ds.paths) and ds.skipped == []


def test_skip_bad_renumbers_test_idx_and_folds(tmp_path, photos, partitions):
    root = tmp_path / "tt"
    class_tree(
        root / "train",
        {
            "cat": [(photos["chelsea"], "t1.png", "png")],
            "cup": [(photos["coffee"], "t2.png", "png")],
        },
    )
    truncated_png(photos["chelsea2"], root / "train" / "cat" / "t0.png")
    class_tree(
        root / "test",
        {
            "cat": [(photos["chelsea2"], "s1.png", "png")],
            "cup": [(photos["coffee2"], "s2.png", "png")],
        },
    )
    ds = load_dataset(str(root), skip_bad=True)
    assert [name_of(ds, i) for i in ds.test_idx] == ["s1.png", "s2.png"]
    assert name_of(ds, 0) == "t1.png" and len(ds.paths) == 4

    truncated_png(photos["coffee"], partitions / "part1" / "train" / "cup" / "bad.png")
    ds = load_dataset(str(partitions), skip_bad=True)
    assert [os.path.basename(p) for p in ds.skipped] == ["bad.png"]
    for k, (train_idx, test_idx) in enumerate(ds.folds):
        assert all(f"part{k}" in ds.paths[i] for i in np.concatenate([train_idx, test_idx]))
        assert len(train_idx) == 4 and len(test_idx) == 2


def test_skip_bad_cannot_empty_a_class(tmp_path, photos):
    root = class_tree(tmp_path / "d", {"cat": [(photos["chelsea"], "a.png", "png")]})
    (root / "cup").mkdir()
    (root / "cup" / "x.jpg").write_text("text, not an image")
    with pytest.raises(DataError, match=r"every image of class\(es\) cup is unreadable"):
        load_dataset(str(root), skip_bad=True)


def test_corrupt_file_listing_is_capped(tmp_path, photos):
    root = class_tree(
        tmp_path / "d",
        {"cat": [(photos["chelsea"], "a.png", "png")], "cup": [(photos["coffee"], "b.png", "png")]},
    )
    for i in range(13):
        (root / "cup" / f"bad{i:02d}.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match="13 image file.*and 3 more"):
        load_dataset(str(root))
