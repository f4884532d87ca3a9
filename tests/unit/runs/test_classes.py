"""Per-class results of every run: result.json fields, confusion.png and `evoprune show`."""

import json

import numpy as np
import pytest
from PIL import Image

from evoprune.cli import main
from evoprune.runs.classes import f1_changes
from evoprune.runs.store import RESULT_FILE, open_run

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_per_class_fields_agree_with_the_confusion_matrices_and_accuracies(tiny_run):
    _, result, _ = tiny_run
    rows = result["per_class"]
    assert [r["class"] for r in rows] == result["classes"]
    assert sum(r["support"] for r in rows) == result["n_test"]
    for prefix, key, acc in (
        ("", "confusion", result["test_accuracy"]),
        ("reference_", "reference_confusion", result["reference_test_accuracy"]),
    ):
        cm = np.array(result[key])
        assert cm.shape == (result["n_classes"],) * 2
        assert cm.sum() == result["n_test"]
        # the accuracy computed by the head's own scoring path equals the matrix's diagonal
        assert np.trace(cm) / cm.sum() == pytest.approx(acc)
        for k, r in enumerate(rows):
            assert cm[k].sum() == r["support"]
            recall = cm[k, k] / cm[k].sum()
            precision = cm[k, k] / cm[:, k].sum() if cm[:, k].sum() else 0.0
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            assert r[f"{prefix}recall"] == pytest.approx(recall)
            assert r[f"{prefix}precision"] == pytest.approx(precision)
            assert r[f"{prefix}f1"] == pytest.approx(f1)


def test_a_result_json_without_per_class_fields_still_loads_and_shows(run_copy, capsys):
    path = run_copy / RESULT_FILE
    doc = json.loads(path.read_text())
    for key in ("per_class", "confusion", "reference_confusion"):
        del doc[key]
    path.write_text(json.dumps(doc))
    run = open_run(run_copy)
    assert run.result.per_class is None and run.result.confusion is None
    assert "per_class" not in run.result.to_dict()
    assert main(["show", str(run_copy)]) == 0
    out = capsys.readouterr().out
    assert "held-out accuracy" in out and "per-class F1" not in out


def test_confusion_figure_is_written_beside_convergence(tiny_run):
    out = tiny_run[0]
    assert (out / "convergence.png").is_file()
    with Image.open(out / "confusion.png") as img:
        width, height = img.size
    assert width > 1.5 * height  # two panels side by side


def test_show_prints_the_classes_where_pruning_lost_and_gained(run_copy, capsys):
    path = run_copy / RESULT_FILE
    doc = json.loads(path.read_text())
    face, other = doc["per_class"]
    face.update(f1=0.5, reference_f1=0.9)
    other.update(f1=0.8, reference_f1=0.7)
    path.write_text(json.dumps(doc))
    assert main(["show", str(run_copy)]) == 0
    out = capsys.readouterr().out
    table = out[out.index("per-class F1") :].splitlines()
    assert table[3].split()[0] == face["class"] and table[3].split()[-1] == "-0.400"
    assert table[4].split()[0] == other["class"] and table[4].split()[-1] == "+0.100"


def test_f1_changes_keeps_the_largest_losses_and_gains_of_many_classes():
    rows = [
        {"class": f"c{k}", "support": 1, "f1": 0.5 + d, "reference_f1": 0.5}
        for k, d in enumerate([0.0, -0.3, 0.2, -0.1, 0.05, 0.4, -0.2, 0.1])
    ]
    changes = f1_changes(rows, most=2)
    assert [c["class"] for c in changes] == ["c1", "c6", "c2", "c5"]
    assert changes[0]["change"] == pytest.approx(-0.3)
    assert len(f1_changes(rows[:4], most=2)) == 4
