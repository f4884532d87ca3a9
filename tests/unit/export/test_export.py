"""Using the evolved model: export (ONNX, TorchScript), predict, load() and show, on real images."""

import csv
import json
import os
import shutil
import warnings
import zipfile

import numpy as np
import pytest
import torch

import evoprune
from evoprune.backbones import get_backbone
from evoprune.cli import main
from evoprune.data import open_rgb
from evoprune.encodings import make_encoding
from evoprune.errors import ConfigError, EvoPruneError
from evoprune.estimator import EvoPruneClassifier
from evoprune.export import TORCHSCRIPT_METADATA, export_model, read_onnx_metadata
from evoprune.model.head import CompactHead, accuracy, build_head, predict_proba
from evoprune.runs.experiment import prepare_data
from evoprune.runs.store import open_run


@pytest.fixture(scope="module")
def sample_images(faces_folder):
    """6 real images from both classes, and their class names."""
    paths = sorted((faces_folder / "face").glob("*.png"))[:3]
    paths += sorted((faces_folder / "not_face").glob("*.png"))[:3]
    return [str(p) for p in paths], ["face"] * 3 + ["not_face"] * 3


@pytest.fixture(scope="module")
def loaded(tiny_run):
    return evoprune.load(tiny_run[0])


@pytest.fixture(scope="module")
def library_proba(loaded, sample_images):
    return loaded.predict_proba(sample_images[0])


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    """The run's pruned and not-pruned models as ONNX, and the pruned one as TorchScript."""
    folder = tmp_path_factory.mktemp("exported")
    out = tiny_run[0]
    return {
        "onnx": export_model(out, folder / "pruned.onnx"),
        "reference": export_model(out, folder / "reference.onnx", reference=True),
        "torchscript": export_model(out, folder / "pruned.pt", format="torchscript"),
    }


def _batch(paths):
    backbone = get_backbone("efficientnet-lite0")
    return np.stack([backbone.preprocess(open_rgb(p)) for p in paths])


def test_onnx_model_gives_the_library_probabilities(
    exported, tiny_run, sample_images, library_proba
):
    import onnxruntime as ort

    paths, truth = sample_images
    result = tiny_run[1]
    session = ort.InferenceSession(str(exported["onnx"].path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    # batch of 6, exported with an example batch of 2: the batch axis is dynamic
    onnx_proba = session.run(None, {"images": _batch(paths)})[0]
    assert onnx_proba.shape == (6, 2)
    np.testing.assert_allclose(onnx_proba.sum(axis=1), 1.0, atol=1e-5)  # softmax inside
    assert np.abs(onnx_proba - library_proba).max() <= 1e-4
    assert [result["classes"][k] for k in onnx_proba.argmax(axis=1)] == truth
    # metadata beside the file and inside it
    beside = json.loads(exported["onnx"].metadata_path.read_text())
    assert exported["onnx"].metadata_path.name == "pruned.onnx.json"
    assert read_onnx_metadata(exported["onnx"].path) == beside
    props = session.get_modelmeta().custom_metadata_map
    assert json.loads(props["classes"]) == result["classes"] == beside["classes"]
    assert props["backbone"] == "efficientnet-lite0" and props["head"] == "pruned"
    pre = beside["preprocessing"]
    assert pre["image_size"] == [224, 224] and pre["mean"] == [0.5] * 3 and pre["std"] == [0.5] * 3
    assert "bilinear" in pre["resize"] and "no crop" in pre["resize"]


def test_torchscript_model_gives_the_library_probabilities(exported, sample_images, library_proba):
    extra = {TORCHSCRIPT_METADATA: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model = torch.jit.load(str(exported["torchscript"].path), _extra_files=extra)
    with torch.no_grad():
        proba = model(torch.from_numpy(_batch(sample_images[0][1:4]))).numpy()
    assert proba.shape == (3, 2)
    assert np.abs(proba - library_proba[1:4]).max() <= 1e-4
    assert json.loads(extra[TORCHSCRIPT_METADATA])["classes"] == ["face", "not_face"]


def test_pruned_export_is_physically_smaller(exported, tiny_run):
    import onnx

    result = tiny_run[1]
    k = result["active_genes"]
    assert k < 1280

    def initializers(path):
        model = onnx.load(str(path))
        return {i.name: list(i.dims) for i in model.graph.initializer}

    pruned, ref = initializers(exported["onnx"].path), initializers(exported["reference"].path)
    assert pruned["head.layers.0.weight"] == [512, k] and ref["head.layers.0.weight"] == [512, 1280]
    assert pruned["head.feature_index"] == [k]
    elements = {
        name: sum(int(np.prod(d)) for d in inits.values())
        for name, inits in (("pruned", pruned), ("ref", ref))
    }
    # the backbones are identical; the heads differ by exactly the pruned weights (+ the
    # per-feature index, shift and scale of the dropped features)
    assert elements["ref"] - elements["pruned"] == (
        result["reference_head_params"] - result["head_params"] + 3 * (1280 - k)
    )
    saved = 4 * (elements["ref"] - elements["pruned"])
    size_diff = exported["reference"].path.stat().st_size - exported["onnx"].path.stat().st_size
    assert abs(size_diff - saved) < 0.01 * saved
    assert exported["reference"].metadata["head"] == "not pruned"
    assert exported["reference"].metadata["head_params"] == result["reference_head_params"]


def test_load_round_trip_predicts_like_the_run(
    tiny_run, loaded, feature_cache, sample_images, library_proba
):
    out, result, cfg = tiny_run
    clf = loaded
    assert list(clf.classes_) == result["classes"] == ["face", "not_face"]
    assert clf.best_mask_.tolist() == result["best_mask"]
    assert clf.n_features_in_ == 1280 and clf.backbone_ == "efficientnet-lite0"
    assert clf.encoding_.name == "fs" and clf.masks_.sizes == (result["active_genes"], 512)
    assert clf.head_.sizes == (result["active_genes"], 512, 2)
    assert [h["index"] for h in clf.history_] == list(range(1, 13))
    assert max(h["fitness"] for h in clf.history_) == pytest.approx(result["fitness"])
    assert clf.get_params()["random_state"] == cfg.seed
    # on features: the run's held-out accuracy, from the same cached features
    data = prepare_data(cfg, progress=False, cache_dir=feature_cache)
    names = np.asarray(result["classes"])[data.y_test]
    assert clf.score(data.X_test, names) == result["test_accuracy"]
    reference = open_run(out).head(reference=True)
    assert accuracy(reference, data.X_test, data.y_test) == result["reference_test_accuracy"]
    # on images: paths, PIL images and a preprocessed batch agree with the features route
    paths = sample_images[0]
    X = np.asarray([data.X[data.paths.index(p)] for p in paths])
    np.testing.assert_allclose(library_proba, clf.predict_proba(X), atol=1e-5)
    pil_proba = clf.predict_proba([open_rgb(p) for p in paths[:2]])
    np.testing.assert_allclose(pil_proba, library_proba[:2], atol=1e-5)
    np.testing.assert_allclose(clf.predict_proba(_batch(paths[4:])), library_proba[4:], atol=1e-5)
    assert list(clf.predict(paths)) == sample_images[1]
    assert clf.score(paths, sample_images[1]) == 1.0


def test_images_need_a_known_backbone(loaded, sample_images):
    clf = EvoPruneClassifier()
    for name in ("classes_", "n_features_in_", "head_"):
        setattr(clf, name, getattr(loaded, name))
    with pytest.raises(ConfigError, match="knows no backbone"):
        clf.predict(sample_images[0])
    assert clf.predict(np.zeros((1, 1280), dtype=np.float32)).shape == (1,)


def test_compact_head_from_state_dict_round_trip():
    masks = make_encoding("fc2", 20, 8).decode(np.r_[np.ones(5), np.zeros(3)])
    head = build_head(masks, 3, mean=np.arange(20.0), std=np.full(20, 2.0), seed=3)
    again = CompactHead.from_state_dict(head.state_dict(), n_inputs=20)
    assert again.sizes == head.sizes == (20, 8, 5, 3) and not again.training
    X = np.random.default_rng(0).normal(size=(4, 20)).astype(np.float32)
    np.testing.assert_array_equal(predict_proba(again, X), predict_proba(head, X))
    state = dict(head.state_dict())
    del state["layers.1.weight"]
    with pytest.raises(ConfigError, match="layers.1.weight"):
        CompactHead.from_state_dict(state)
    with pytest.raises(ConfigError, match="only 10"):
        CompactHead.from_state_dict(head.state_dict(), n_inputs=10)


def test_predict_cli_reports_a_corrupt_image_and_predicts_the_rest(
    tiny_run, loaded, sample_images, tmp_path, capsys, caplog
):
    out = tiny_run[0]
    folder = tmp_path / "new images"
    (folder / "sub").mkdir(parents=True)
    paths, truth = sample_images
    for i, p in enumerate(paths):
        shutil.copy(p, (folder / "sub" if i % 2 else folder) / f"img{i}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "notes.txt").write_text("not an image, not looked at")
    csv_file = tmp_path / "out" / "pred.csv"
    code = main(["predict", str(out), str(folder), "--csv", str(csv_file), "--no-progress"])
    assert code == 0
    text = capsys.readouterr().out
    assert "broken.png" in caplog.text and "unreadable" in caplog.text
    rows = list(csv.DictReader(csv_file.open()))
    assert len(rows) == 6 and "notes.txt" not in text
    assert not any("broken" in r["path"] for r in rows)
    by_name = {r["path"].rsplit("/", 1)[1]: r for r in rows}
    for i, label in enumerate(truth):
        row = by_name[f"img{i}.png"]
        assert row["predicted"] == label and f"img{i}.png" in text
        assert float(row["probability"]) == pytest.approx(float(row[f"p_{label}"]))
        assert float(row["p_face"]) + float(row["p_not_face"]) == pytest.approx(1, abs=1e-5)
    assert text.count("not_face") >= 3 and "1 unreadable" in text
    # nothing readable: nothing predicted, exit code 1
    assert main(["predict", str(out), str(folder / "broken.png"), "--no-progress"]) == 1


def test_show_prints_the_key_figures(tiny_run, exported, tmp_path, capsys):
    out, r, _ = tiny_run
    assert main(["show", str(out)]) == 0
    text = capsys.readouterr().out
    k = r["active_genes"]
    for figure in (
        r["dataset"],
        "efficientnet-lite0",
        "fs",
        f"{r['test_accuracy']:.4f}",
        f"{r['reference_test_accuracy']:.4f}",
        f"features {k}/1280",
        "fc1 512/512",
        f"{r['head_params']:,}",
        f"{r['reference_head_params']:,}",
        f"{r['head_macs']:,}",
        f"{r['reference_head_macs']:,}",
        f"x{r['head_params'] / r['reference_head_params']:.3f}",
        "head.safetensors",
        "reference_head.safetensors",
    ):
        assert figure in text, figure
    assert "LEAKED" not in text and ".onnx" not in text
    # a leaked run with an exported model beside it
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    shutil.copy(exported["onnx"].path, copy / "model.onnx")
    doc = json.loads((copy / "result.json").read_text())
    doc["leaked_test_set"] = True
    (copy / "result.json").write_text(json.dumps(doc))
    assert main(["show", str(copy)]) == 0
    text = capsys.readouterr().out
    assert "LEAKED" in text
    line = next(x for x in text.splitlines() if "model.onnx" in x)
    size_mb = exported["onnx"].path.stat().st_size / 2**20
    assert f"{size_mb:.1f} MB" in line


@pytest.mark.parametrize("command", [["show"], ["export"], ["predict", "x.png"]])
def test_missing_run_folder_is_one_clear_error(command, tmp_path, caplog):
    missing = tmp_path / "no-such-run"
    code = main([command[0], str(missing)] + command[1:])
    assert code == 2
    assert str(missing) in caplog.text and "does not exist" in caplog.text
    assert "Traceback" not in caplog.text


def test_incomplete_run_folders_are_clear_errors(tiny_run, tmp_path, caplog):
    assert main(["show", str(tmp_path)]) == 2
    assert f"{tmp_path} has no result.json" in caplog.text
    shutil.copy(tiny_run[0] / "result.json", tmp_path / "result.json")
    with pytest.raises(EvoPruneError, match="head.safetensors"):
        evoprune.load(tmp_path)
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "head.safetensors" in caplog.text and not (tmp_path / "m.onnx").exists()


def test_onnx_export_without_onnx_installed_is_a_clear_error(
    tiny_run, tmp_path, monkeypatch, caplog
):
    import sys

    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` fail
    out, _, _ = tiny_run
    code = main(["export", str(out), "--format", "onnx", "--out", str(tmp_path / "m.onnx")])
    assert code == 2
    assert "pip install onnx" in caplog.text and "torchscript" in caplog.text
    assert not (tmp_path / "m.onnx").exists()


def test_exports_hold_no_absolute_paths_of_the_machine(exported, tiny_run, tmp_path_factory):
    """No path of the user's machine in any exported file or its metadata (issue 8, item 9).

    TorchScript archives used to carry the traced operations' source ranges (thousands of
    site-packages and source paths); the metadata held the run folder's absolute path.
    """
    source_dir = os.path.dirname(os.path.dirname(evoprune.__file__))
    site_packages = os.path.dirname(os.path.dirname(torch.__file__))
    forbidden = [
        str(tiny_run[0]),
        str(tmp_path_factory.getbasetemp()),
        source_dir,
        site_packages,
        "site-packages",
    ]
    files = [f for e in exported.values() for f in (e.path, e.metadata_path)]
    for path in files:
        data = path.read_bytes()
        for text in forbidden:
            assert text.encode() not in data, (path.name, text)
    for e in exported.values():
        assert e.metadata["run"] == tiny_run[0].name
    assert read_onnx_metadata(exported["onnx"].path)["run"] == tiny_run[0].name
    # the stripped TorchScript archive still holds the model and its metadata, no debug data
    names = zipfile.ZipFile(exported["torchscript"].path).namelist()
    assert not any(n.endswith(".debug_pkl") for n in names)
    assert any(n.endswith("extra/" + TORCHSCRIPT_METADATA) for n in names)
