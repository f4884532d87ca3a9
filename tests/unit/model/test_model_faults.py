"""Faults around a finished run's model: swapped head files, unwritable outputs, damaged results.

Each test reproduces a defect of issue 8 (items 5 and 7) and asserts one clear message naming the
culprit, exit status 2 from the CLI and nothing half-written.
"""

import errno
import json

import pytest

import evoprune.io
from evoprune.cli import main
from evoprune.errors import EvoPruneError
from evoprune.export import checked_head, export_model
from evoprune.runs.store import open_run


def _edit_result(run_dir, **changes):
    doc = json.loads((run_dir / "result.json").read_text())
    doc.update(changes)
    (run_dir / "result.json").write_text(json.dumps(doc))


def _swap_heads(run_dir):
    head, ref = run_dir / "head.safetensors", run_dir / "reference_head.safetensors"
    tmp = run_dir / "swap.tmp"
    head.rename(tmp)
    ref.rename(head)
    tmp.rename(ref)


def _permission_denied(*args, **kwargs):
    raise PermissionError(errno.EACCES, "Permission denied")


def test_checked_heads_of_a_consistent_run(tiny_run):
    run = open_run(tiny_run[0])
    k = tiny_run[1]["active_genes"]
    assert checked_head(run).sizes == (k, 512, 2)
    assert checked_head(run, reference=True).sizes == (1280, 512, 2)


@pytest.mark.parametrize("reference", [False, True])
def test_export_refuses_swapped_head_files(run_copy, tmp_path, reference, caplog):
    _swap_heads(run_copy)
    out = tmp_path / "model.onnx"
    with pytest.raises(EvoPruneError, match="look swapped") as info:
        export_model(run_copy, out, reference=reference)
    message = str(info.value)
    name = "reference_head.safetensors" if reference else "head.safetensors"
    assert f"{run_copy / name} does not hold" in message
    assert "inconsistent" in message and "rerun 'evoprune run'" in message
    assert not out.exists() and not (tmp_path / "model.onnx.json").exists()
    # the CLI: one line, exit status 2
    args = ["export", str(run_copy), "--out", str(out)] + (["--reference"] if reference else [])
    assert main(args) == 2
    assert "look swapped" in caplog.text and "Traceback" not in caplog.text
    assert not out.exists()


def test_export_refuses_a_head_that_does_not_fit_the_best_mask(run_copy, tmp_path):
    mask = json.loads((run_copy / "result.json").read_text())["best_mask"]
    flipped = [1 - g for g in mask]  # another mask of the same length: sizes differ
    _edit_result(run_copy, best_mask=flipped)
    with pytest.raises(EvoPruneError, match="does not hold the evolved head") as info:
        export_model(run_copy, tmp_path / "m.onnx")
    assert "swapped" not in str(info.value)  # not the reference head either
    _edit_result(run_copy, best_mask=mask[:-1])
    # caught when result.json is read (issue 19): one message naming the file and the field
    with pytest.raises(EvoPruneError, match="result.json: 'best_mask' is .* not the 1280 genes"):
        export_model(run_copy, tmp_path / "m.onnx")
    with pytest.raises(EvoPruneError, match="'best_mask' is null"):
        _edit_result(run_copy, best_mask=None)
        export_model(run_copy, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_export_out_under_a_regular_file_is_one_clear_error(tiny_run, tmp_path, caplog):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder")
    out = blocker / "model.onnx"
    assert main(["export", str(tiny_run[0]), "--out", str(out)]) == 2
    assert f"{blocker} is a file, not a folder" in caplog.text and "--out" in caplog.text
    assert "Traceback" not in caplog.text
    assert blocker.read_text() == "a file, not a folder"


def test_export_to_a_read_only_folder_is_one_clear_error(tiny_run, tmp_path, monkeypatch, caplog):
    # Tests run as root, which may write anywhere: the refused rename stands for a read-only
    # folder (or a full disk) at the moment the model is written.
    monkeypatch.setattr(evoprune.io.os, "replace", _permission_denied)
    out = tmp_path / "ro" / "model.pt"
    code = main(["export", str(tiny_run[0]), "--format", "torchscript", "--out", str(out)])
    assert code == 2
    assert f"cannot write {out}: Permission denied" in caplog.text
    assert "give --out a file in a folder you can write to" in caplog.text
    assert "Traceback" not in caplog.text
    assert list((tmp_path / "ro").iterdir()) == []  # no model, no temporary file left


def test_predict_csv_that_is_a_folder_is_one_clear_error(tiny_run, faces_folder, tmp_path, caplog):
    image = str(next((faces_folder / "face").glob("*.png")))
    assert main(["predict", str(tiny_run[0]), image, "--csv", str(tmp_path), "--no-progress"]) == 2
    assert f"--csv {tmp_path} is a folder" in caplog.text
    assert str(tmp_path / "predictions.csv") in caplog.text and "Traceback" not in caplog.text
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert (
        main(["predict", str(tiny_run[0]), image, "--csv", str(blocker / "p.csv"), "--no-progress"])
        == 2
    )
    assert f"{blocker} is a file, not a folder" in caplog.text


def test_predict_csv_in_a_read_only_folder_is_one_clear_error(
    tiny_run, faces_folder, tmp_path, monkeypatch, caplog, capsys
):
    monkeypatch.setattr(evoprune.io.os, "replace", _permission_denied)
    image = str(next((faces_folder / "face").glob("*.png")))
    csv_file = tmp_path / "pred.csv"
    assert main(["predict", str(tiny_run[0]), image, "--csv", str(csv_file), "--no-progress"]) == 2
    assert f"cannot write {csv_file}: Permission denied" in caplog.text
    assert "give --csv a file in a folder you can write to" in caplog.text
    assert "Traceback" not in caplog.text
    assert list(tmp_path.iterdir()) == []
    assert "face" in capsys.readouterr().out  # the predictions were still printed


@pytest.mark.parametrize(
    "key, value",
    [
        ("test_accuracy", None),
        ("reference_test_accuracy", "high"),
        ("classes", None),
        ("n_classes", None),
        ("active_units", [1, 2]),
        ("head_params", None),
    ],
)
def test_show_on_a_null_or_wrong_value_is_one_clear_error(run_copy, key, value, caplog):
    _edit_result(run_copy, **{key: value})
    assert main(["show", str(run_copy)]) == 2
    assert f"{run_copy / 'result.json'}: {key!r} is {json.dumps(value)}, not " in caplog.text
    assert "rerun 'evoprune run'" in caplog.text and "Traceback" not in caplog.text
