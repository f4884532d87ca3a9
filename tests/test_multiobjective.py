"""A multi-objective run end to end on real images with a real out-of-distribution set: the
front (pareto.csv, front heads, figures), the selected head, the ensemble, and the messages."""

import csv
import json

import numpy as np
import pytest

from evoprune.cli import main
from evoprune.runs.store import hex_to_mask


@pytest.fixture(scope="module")
def ood_folder(tmp_path_factory):
    """40 crops of scikit-image's bundled photos, as a folder of PNG files."""
    from pathlib import Path

    from evoprune.ood import write_ood_images

    src = tmp_path_factory.mktemp("ood-src")
    folder = tmp_path_factory.mktemp("ood")
    for p in write_ood_images("photos", src)[:40]:
        (folder / Path(p).name).write_bytes(Path(p).read_bytes())
    return folder


@pytest.fixture(scope="module")
def mo_run(tmp_path_factory, faces_folder, feature_cache, ood_folder):
    out = tmp_path_factory.mktemp("mo") / "run"
    args = [
        "run",
        "--data",
        str(faces_folder),
        "--objectives",
        "accuracy,size,ood",
        "--ood",
        str(ood_folder),
        "--population",
        "6",
        "--evaluations",
        "18",
        "--seed",
        "2",
        "--out",
        str(out),
        "--cache-dir",
        str(feature_cache),
        "--no-progress",
    ]
    assert main(args) == 0
    return out, json.loads((out / "result.json").read_text())


def test_the_front_is_written_and_the_selected_head_is_the_runs_head(mo_run):
    out, result = mo_run
    assert result["algorithm"] == "nsga2" and result["select"] == "one-se"
    rows = list(csv.DictReader((out / "pareto.csv").open()))
    assert len(rows) == len(result["front"]) >= 1
    assert [r["selected"] for r in rows].count("True") == 1
    chosen = next(r for r in rows if r["selected"] == "True")
    assert list(hex_to_mask(chosen["mask"], result["genes"])) == result["best_mask"]
    assert float(chosen["test_accuracy"]) == result["test_accuracy"]
    sizes = [float(r["active_fraction"]) for r in rows]
    assert sizes == sorted(sizes)
    for r in rows:
        assert 0 <= float(r["test_auroc"]) <= 1 and 0 <= float(r["test_fpr95"]) <= 1
        assert (out / "front" / f"head_{r['rank']}.safetensors").is_file()
    # no front member is dominated by another on the search's objectives
    F = np.array(
        [
            [1 - float(r["fitness"]), float(r["active_fraction"]), 1 - float(r["fitness_auroc"])]
            for r in rows
        ]
    )
    for i in range(len(F)):
        assert not any((F[j] <= F[i]).all() and (F[j] < F[i]).any() for j in range(len(F)))
    header = next(csv.reader((out / "history.csv").open()))
    assert "auroc" in header and "hypervolume" in header
    for name in ("pareto.png", "hypervolume.png", "convergence.png"):
        assert (out / name).stat().st_size > 1000


def test_show_and_load_use_the_selected_head(mo_run):
    import evoprune

    out, result = mo_run
    clf = evoprune.load(out)
    assert list(clf.best_mask_) == result["best_mask"]


def test_ensemble_of_front_heads(mo_run, feature_cache, capsys):
    out, result = mo_run
    k = min(2, len(result["front"]))
    assert (
        main(
            [
                "ensemble",
                str(out),
                "--members",
                str(k),
                "--cache-dir",
                str(feature_cache),
                "--no-progress",
            ]
        )
        == 0
    )
    doc = json.loads((out / "ensemble.json").read_text())
    assert len(doc["members"]) == k and 0 <= doc["test_accuracy"] <= 1
    assert doc["not_pruned_test_accuracy"] == result["reference_test_accuracy"]
    assert "test_auroc" in doc and "held-out accuracy: ensemble" in capsys.readouterr().out


def test_ensemble_errors(mo_run, tiny_run, feature_cache, caplog):
    out, result = mo_run
    n = len(result["front"])
    assert main(["ensemble", str(out), "--members", str(n + 1)]) == 2
    assert f"has {n} heads" in caplog.text
    assert main(["ensemble", str(tiny_run[0])]) == 2
    assert "single-objective run" in caplog.text


@pytest.mark.parametrize(
    "extra,match",
    [
        (["--objectives", "accuracy,speed"], "speed"),
        (["--objectives", "accuracy,size,ood"], "--ood"),
        (["--select", "knee"], "more than one objective"),
        (["--algorithm", "ssga", "--objectives", "accuracy,size"], "ssga"),
    ],
)
def test_bad_multiobjective_options_get_one_message(faces_folder, tmp_path, caplog, extra, match):
    out = tmp_path / "run"
    assert main(["run", "--data", str(faces_folder), "--out", str(out), *extra]) == 2
    assert match in caplog.text and not out.exists()


def test_an_empty_ood_folder_is_refused(faces_folder, feature_cache, tmp_path, caplog):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "run"
    assert (
        main(
            [
                "run",
                "--data",
                str(faces_folder),
                "--objectives",
                "accuracy,size,ood",
                "--ood",
                str(empty),
                "--population",
                "4",
                "--evaluations",
                "4",
                "--out",
                str(out),
                "--cache-dir",
                str(feature_cache),
                "--no-progress",
            ]
        )
        == 2
    )
    assert str(empty) in caplog.text and not out.exists()


def test_the_ensembles_onnx_model_matches_the_library(
    mo_run, feature_cache, faces_folder, tmp_path
):
    ort = pytest.importorskip("onnxruntime")
    from PIL import Image

    from evoprune.backbones import get_backbone
    from evoprune.model.head import predict_proba
    from evoprune.runs.store import load_head

    out, result = mo_run
    k = min(2, len(result["front"]))
    model = tmp_path / "ensemble.onnx"
    assert (
        main(
            [
                "ensemble",
                str(out),
                "--members",
                str(k),
                "--export",
                str(model),
                "--cache-dir",
                str(feature_cache),
                "--no-progress",
            ]
        )
        == 0
    )
    members = json.loads((out / "ensemble.json").read_text())["members"]
    meta = json.loads((tmp_path / "ensemble.onnx.json").read_text())
    assert meta["members"] == members and len(meta["head_sizes"]) == k
    backbone = get_backbone(result["backbone"])
    paths = sorted((faces_folder / "face").iterdir())[:4]
    batch = np.stack([backbone.preprocess(Image.open(p)) for p in paths]).astype(np.float32)
    got = ort.InferenceSession(str(model)).run(None, {"images": batch})[0]
    feats = backbone.features(batch)
    heads = [
        load_head(out / "front" / f"head_{m}.safetensors", result["feature_dim"]) for m in members
    ]
    want = np.mean([predict_proba(h, feats) for h in heads], axis=0)
    assert np.abs(got - want).max() < 1e-4
