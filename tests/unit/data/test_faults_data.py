"""Bad data that used to give a traceback, a silent wrong choice or a misleading message
(issue 8, items 5, 6 and 8): each test builds the case, then asserts the one clear message."""

from __future__ import annotations

import logging
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

from evoprune.data import kfold_splits, load_dataset, open_rgb, stratified_split
from evoprune.data.images import MAX_MEGAPIXELS
from evoprune.errors import ConfigError, DataError

SIDE = 32


@pytest.fixture(scope="module")
def crops() -> list[np.ndarray]:
    """Small real photo crops (RGB uint8)."""
    photo = skimage.data.chelsea()
    return [
        np.ascontiguousarray(photo[y : y + SIDE, x : x + SIDE])
        for y in (60, 120, 180)
        for x in (100, 200)
    ]


def make_classes(root: Path, crops: list[np.ndarray], classes=("cat", "dog"), per_class=3) -> Path:
    """root/<class>/<i>.png for each class, from the real crops."""
    for c, cls in enumerate(classes):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(crops[(c + i) % len(crops)]).save(root / cls / f"{i}.png")
    return root


def warning_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


# ---------------------------------------------------------------- symbolic link loops


@pytest.mark.parametrize("link", ["self-loop.png", "pair", "class"])
def test_a_symlink_loop_is_one_data_error_naming_it(tmp_path, crops, link):
    """Before: OSError 'Too many levels of symbolic links' with a traceback from scandir."""
    root = make_classes(tmp_path / "pets", crops)
    if link == "self-loop.png":
        culprits = [root / "cat" / "self-loop.png"]
        os.symlink(culprits[0].name, culprits[0])
    elif link == "pair":  # a -> b -> a; the folder listing decides which one is met first
        culprits = [root / "dog" / "a", root / "dog" / "b"]
        os.symlink("b", culprits[0])
        os.symlink("a", culprits[1])
    else:
        culprits = [root / "bird"]
        os.symlink("bird", culprits[0])
    with pytest.raises(DataError, match=r"symbolic link that loops.*delete it") as err:
        load_dataset(str(root))
    assert any(f"'{c}' is a symbolic link" in str(err.value) for c in culprits)
    assert isinstance(err.value.__cause__, OSError)


def test_a_dataset_path_that_is_a_looping_link(tmp_path):
    (tmp_path / "data").symlink_to("data")
    with pytest.raises(DataError, match=r"'.*data' is a symbolic link that loops"):
        load_dataset(str(tmp_path / "data"))


# ---------------------------------------------------------------- --data ""


@pytest.mark.parametrize("source", ["", "   "])
def test_an_empty_data_source_is_refused_not_the_current_folder(
    tmp_path, crops, monkeypatch, source
):
    """Before: '' resolved to the current folder and loaded whatever lay there."""
    make_classes(tmp_path, crops)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        ConfigError, match=r"^--data is empty; give a folder, a CSV or a built-in name"
    ):
        load_dataset(source)


# ---------------------------------------------------------------- labels differing in case


def test_class_folders_differing_only_in_case_are_warned_about(tmp_path, crops, caplog):
    root = make_classes(tmp_path / "pets", crops, classes=("cat", "Cat", "dog"))
    with caplog.at_level(logging.WARNING, logger="evoprune.data"):
        ds = load_dataset(str(root))
    assert ds.classes == ["Cat", "cat", "dog"]  # still separate classes, as the folders say
    lines = warning_lines(caplog)
    assert len(lines) == 1
    assert "'Cat' and 'cat'" in lines[0] and "differ only in case" in lines[0]
    assert str(root) in lines[0]


def test_csv_labels_differing_only_in_case_are_warned_about(tmp_path, crops, caplog):
    for i in range(4):
        Image.fromarray(crops[i]).save(tmp_path / f"{i}.png")
    csv = tmp_path / "m.csv"
    csv.write_text("path,label\n0.png,cat\n1.png,Cat\n2.png,DOG\n3.png,dog\n")
    with caplog.at_level(logging.WARNING, logger="evoprune.data"):
        ds = load_dataset(str(csv))
    assert ds.n_classes == 4
    lines = warning_lines(caplog)
    assert len(lines) == 2 and all(str(csv) in line for line in lines)
    assert "labels 'Cat' and 'cat'" in lines[0] and "labels 'DOG' and 'dog'" in lines[1]


def test_distinct_names_give_no_case_warning(tmp_path, crops, caplog):
    root = make_classes(tmp_path / "pets", crops)
    with caplog.at_level(logging.WARNING, logger="evoprune.data"):
        load_dataset(str(root))
    assert warning_lines(caplog) == []


# ---------------------------------------------------------------- very large images


def png_claiming(path: Path, width: int, height: int) -> Path:
    """A 1x1 PNG whose header claims width x height: as cheap to write as a tiny file, and as
    large as a real one to anything that reads the header and then decides to decode."""
    Image.new("L", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


@pytest.fixture(scope="module")
def big_jpeg(tmp_path_factory) -> Path:
    """A real 51-megapixel JPEG (uniform grey with a stripe: small file, quick to write)."""
    pixels = np.full((5100, 10000), 128, dtype=np.uint8)
    pixels[:, :100] = 20
    path = tmp_path_factory.mktemp("big") / "huge.jpg"
    Image.fromarray(pixels).save(path, quality=50)
    return path


def test_a_large_jpeg_is_decoded_at_reduced_size(big_jpeg, monkeypatch, caplog):
    """Before: decoded whole (about 830 MB at 100 megapixels) after a raw Pillow warning.
    Pillow's own limit is lowered here so that its warning would fire on this file."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 30_000_000)
    with warnings.catch_warnings(), caplog.at_level(logging.INFO, logger="evoprune.data"):
        warnings.simplefilter("error")  # any warning that escapes fails the test
        image = open_rgb(str(big_jpeg))
    assert image.mode == "RGB" and image.size == (5000, 2550)
    assert image.width * image.height <= MAX_MEGAPIXELS * 1_000_000
    assert any(str(big_jpeg) in line and "1/2 size" in line for line in caplog.messages)
    assert image.getpixel((10, 10)) == pytest.approx((20, 20, 20), abs=3)


def test_a_large_png_is_refused_with_the_fix(tmp_path):
    path = png_claiming(tmp_path / "poster.png", 8000, 7000)
    with pytest.raises(
        DataError,
        match=r"poster\.png' is too large: 8000x7000 pixels \(56 "
        r"megapixels\), over the 50-megapixel limit.*downscale",
    ):
        open_rgb(str(path))


def test_an_image_over_pillows_hard_limit_gets_our_message(tmp_path):
    path = png_claiming(tmp_path / "bomb.png", 20000, 10000)
    with pytest.raises(DataError, match=r"bomb\.png' is too large: .*200000000 pixels.*downscale"):
        open_rgb(str(path))


def test_a_large_image_in_a_dataset_is_listed_by_the_check(tmp_path, crops):
    root = make_classes(tmp_path / "pets", crops)
    png_claiming(root / "dog" / "poster.png", 8000, 7000)
    with pytest.raises(
        DataError,
        match=r"poster\.png \(too large: 8000x7000 pixels.*"
        r"--skip-bad-images",
    ):
        load_dataset(str(root))
    ds = load_dataset(str(root), skip_bad=True)
    assert [os.path.basename(p) for p in ds.skipped] == ["poster.png"]


# ---------------------------------------------------------------- class names in messages


def test_split_errors_name_the_class_not_an_index_or_a_function():
    """Before: 'class 2 has 1; stratified_split needs at least 2 ...'."""
    labels = np.array([0, 0, 0, 1, 1, 2])
    with pytest.raises(DataError, match=r"class 'cup' has 1; each class needs at least 2") as err:
        stratified_split(labels, 0.3, seed=0, classes=["cat", "dog", "cup"])
    assert "stratified_split" not in str(err.value) and "class 2" not in str(err.value)
    with pytest.raises(
        DataError,
        match=r"3-fold split: class 'dog' has 2, class 'cup' has 1; "
        r".*use fewer folds",
    ) as err:
        kfold_splits(labels, 3, seed=0, classes=["cat", "dog", "cup"])
    assert "kfold_splits" not in str(err.value)
    with pytest.raises(DataError, match=r"label 2 has 1"):  # no names known: the label value
        stratified_split(labels, 0.3, seed=0)


# ---------------------------------------------------------------- train/ without test/


@pytest.mark.parametrize("present,missing", [("train", "test"), ("test", "train")])
def test_train_without_test_says_so(tmp_path, crops, present, missing):
    """Before: 'class folder .../train has no images (it has subfolder(s) cat, dog ...)'."""
    root = tmp_path / "split"
    make_classes(root / present, crops)
    with pytest.raises(
        DataError,
        match=rf"^{root}/{present} exists but {root}/{missing} does "
        rf"not; .*add {root}/{missing}",
    ) as err:
        load_dataset(str(root))
    assert "has no images" not in str(err.value)


def test_partitions_without_test_say_so(tmp_path, crops):
    root = tmp_path / "folds"
    for part in ("p0", "p1"):
        make_classes(root / part / "train", crops)
    with pytest.raises(DataError, match=rf"{root}/p0/train exists but {root}/p0/test does not"):
        load_dataset(str(root))


def test_a_class_named_train_is_still_a_class(tmp_path, crops):
    root = make_classes(tmp_path / "vehicles", crops, classes=("bus", "train"))
    assert load_dataset(str(root)).classes == ["bus", "train"]


# ---------------------------------------------------------------- unclosed CSV quote


@pytest.mark.parametrize("row", ['"1.png,dog', '1.png,"dog'])
def test_an_unclosed_csv_quote_is_reported_where_it_opened(tmp_path, crops, row):
    """Before: the quote swallowed the rest of the file and the error named the last line."""
    for i in range(4):
        Image.fromarray(crops[i]).save(tmp_path / f"{i}.png")
    csv = tmp_path / "m.csv"
    csv.write_text(f"path,label\n0.png,cat\n{row}\n2.png,cat\n3.png,dog\n")
    with pytest.raises(
        DataError,
        match=r"m\.csv' line 3: a quote opened on this line is not "
        r"closed, so the row runs on to line 5",
    ):
        load_dataset(str(csv))


def test_csv_line_numbers_count_blank_lines(tmp_path, crops):
    """Quoted cells and blank lines keep the line numbers an editor shows."""
    for i in range(2):
        Image.fromarray(crops[i]).save(tmp_path / f"{i}.png")
    csv = tmp_path / "m.csv"
    csv.write_text('path,label\n"0.png","cat"\n\n"1.png",\n')
    with pytest.raises(DataError, match=r"empty path or label on line\(s\) 4"):
        load_dataset(str(csv))
