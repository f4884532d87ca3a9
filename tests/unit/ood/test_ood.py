"""OOD scores, AUROC and FPR at 95 % TPR on constructed scores, and the OOD image sets."""

import numpy as np
import pytest
import torch
from PIL import Image

from evoprune.data.ood_images import (
    builtin_ood_names,
    load_ood_images,
    ood_split,
    write_ood_images,
)
from evoprune.errors import ConfigError, DataError
from evoprune.ood import (
    DEFAULT_OOD_SCORE,
    OOD_SCORES,
    auroc,
    energy_score,
    fpr_at_95_tpr,
    msp_score,
    ood_score,
    temperature_score,
)

LOGITS = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 0.5], [10.0, 9.0, -3.0]])


def test_energy_score_is_temperature_times_logsumexp():
    expected = np.log(np.exp(LOGITS).sum(axis=1))
    assert energy_score(LOGITS) == pytest.approx(expected)
    assert energy_score(LOGITS, T=2.0) == pytest.approx(
        2.0 * np.log(np.exp(LOGITS / 2.0).sum(axis=1))
    )


def test_msp_and_temperature_scores():
    p = np.exp(LOGITS) / np.exp(LOGITS).sum(axis=1, keepdims=True)
    assert msp_score(LOGITS) == pytest.approx(p.max(axis=1))
    assert msp_score(LOGITS)[1] == pytest.approx(1 / 3)
    q = np.exp(LOGITS / 1000) / np.exp(LOGITS / 1000).sum(axis=1, keepdims=True)
    assert temperature_score(LOGITS) == pytest.approx(q.max(axis=1))
    # Large logits do not overflow.
    assert np.isfinite(energy_score(np.array([[1000.0, 999.0]]))).all()


def test_scores_take_torch_tensors_and_return_numpy():
    t = torch.tensor(LOGITS, dtype=torch.float32, requires_grad=True)
    out = ood_score("energy", t)
    assert isinstance(out, np.ndarray)
    assert out == pytest.approx(energy_score(LOGITS), rel=1e-6)


def test_ood_score_by_name_and_unknown_name():
    assert DEFAULT_OOD_SCORE == "energy"
    assert set(OOD_SCORES) == {"energy", "msp", "temperature"}
    assert ood_score("msp", LOGITS) == pytest.approx(msp_score(LOGITS))
    with pytest.raises(ConfigError, match="energy, msp, temperature"):
        ood_score("odin", LOGITS)
    with pytest.raises(ConfigError, match="> 0"):
        energy_score(LOGITS, T=0)
    with pytest.raises(ConfigError, match=r"\(N images, C classes\)"):
        msp_score(np.zeros(3))


def test_auroc_known_answers():
    inside = np.array([0.6, 0.7, 0.8, 0.9])
    outside = np.array([0.1, 0.2, 0.3])
    assert auroc(inside, outside) == 1.0
    assert auroc(outside, inside) == 0.0
    same = np.array([0.1, 0.5, 0.9])
    assert auroc(same, same) == pytest.approx(0.5)
    # One of 4 x 2 pairs is ordered wrongly: 7/8.
    assert auroc([0.3, 0.6, 0.7, 0.8], [0.1, 0.4]) == pytest.approx(7 / 8)
    with pytest.raises(ConfigError, match="out_scores is empty"):
        auroc([0.1], [])


def test_fpr_at_95_tpr_known_answers():
    inside = np.arange(1.0, 21.0)  # 20 scores; keeping 95 % = 19 of them -> threshold 2
    assert fpr_at_95_tpr(inside, [-5.0, 0.0, 0.5]) == 0.0  # perfectly separated
    # OOD scores >= 2 are accepted; the one EQUAL to the threshold counts: 2 of 5.
    assert fpr_at_95_tpr(inside, [0.0, 1.0, 1.5, 2.0, 3.0]) == pytest.approx(0.4)
    assert fpr_at_95_tpr(inside, inside + 100) == 1.0  # reversed: every OOD image passes
    # tpr=1 keeps every in-distribution score: the threshold is the lowest one, 1.
    assert fpr_at_95_tpr(inside, [0.0, 1.0, 1.5, 2.0, 3.0], tpr=1.0) == pytest.approx(0.8)


def test_builtin_ood_sets_load_as_rgb_images():
    assert builtin_ood_names() == ("digits", "photos", "faces")
    for name, at_least in (("digits", 1000), ("photos", 100), ("faces", 100)):
        images = load_ood_images(name)
        assert len(images) >= at_least, name
        assert all(isinstance(im, Image.Image) and im.mode == "RGB" for im in images[:5])
    digit = np.asarray(load_ood_images("digits")[0])
    assert digit.shape == (32, 32, 3) and digit.dtype == np.uint8 and digit.max() > 200


def test_limit_takes_a_seeded_subset():
    a = load_ood_images("faces", limit=10, seed=3)
    b = load_ood_images("faces", limit=10, seed=3)
    assert len(a) == 10
    assert [np.asarray(x).tobytes() for x in a] == [np.asarray(x).tobytes() for x in b]


def _png(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, dtype=np.uint8)).save(path)


def test_folder_is_searched_recursively_and_unreadable_files_are_skipped(tmp_path, caplog):
    _png(tmp_path / "a.png", 10)
    _png(tmp_path / "deep" / "er" / "b.png", 20)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    paths = load_ood_images(tmp_path)
    assert sorted(p.rsplit("/", 1)[-1] for p in paths) == ["a.png", "b.png"]
    assert "broken.jpg" in caplog.text


def test_csv_manifest_paths_are_relative_to_the_csv(tmp_path):
    _png(tmp_path / "img" / "x.png", 10)
    _png(tmp_path / "img" / "y.png", 20)
    (tmp_path / "ood.csv").write_text("path,kind\nimg/x.png,a\nimg/y.png,b\n")
    paths = load_ood_images(str(tmp_path / "ood.csv"))
    assert paths == [str(tmp_path / "img" / "x.png"), str(tmp_path / "img" / "y.png")]
    (tmp_path / "bad.csv").write_text("file\nimg/x.png\n")
    with pytest.raises(DataError, match="first column is 'path'"):
        load_ood_images(str(tmp_path / "bad.csv"))
    (tmp_path / "gone.csv").write_text("path\nimg/z.png\n")
    with pytest.raises(DataError, match=r"img/z\.png.*fix the paths"):
        load_ood_images(str(tmp_path / "gone.csv"))


def test_bad_ood_sources_name_the_path_and_the_fix(tmp_path):
    with pytest.raises(DataError, match=r"'nowhere'.*not a built-in OOD set.*digits"):
        load_ood_images("nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty'.*holds no image files"):
        load_ood_images(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.png").write_bytes(b"x")
    (bad / "b.png").write_bytes(b"y")
    with pytest.raises(DataError, match=r"none of the 2 OOD image\(s\) in .*bad.* can be read"):
        load_ood_images(bad)


def test_write_ood_images_writes_builtin_sets_once(tmp_path):
    paths = write_ood_images("faces", tmp_path)
    assert len(paths) == 100 and all(p.endswith(".png") for p in paths)
    first = (tmp_path / "faces" / "faces-0000.png").stat().st_mtime_ns
    assert write_ood_images("faces", tmp_path) == paths
    assert (tmp_path / "faces" / "faces-0000.png").stat().st_mtime_ns == first
    assert load_ood_images(tmp_path / "faces") == paths


def test_ood_split_is_seeded_disjoint_and_complete():
    search, held = ood_split(100, seed=7)
    assert len(held) == 20 and len(search) == 80
    assert sorted(np.concatenate([search, held]).tolist()) == list(range(100))
    again = ood_split(100, seed=7)
    assert again[0].tolist() == search.tolist() and again[1].tolist() == held.tolist()
    assert ood_split(100, seed=8)[1].tolist() != held.tolist()
    assert [len(p) for p in ood_split(2, seed=0)] == [1, 1]
    with pytest.raises(DataError, match="at least 2 OOD images"):
        ood_split(1, seed=0)
    with pytest.raises(ConfigError, match="strictly between 0 and 1"):
        ood_split(10, seed=0, test_fraction=1.0)
