"""One guard for every folder a command writes (issue 19): evoprune's own files are known by the
manifest it writes, a folder holding anything else is refused, nothing is written inside the
data or before every check, a file of another command is never overwritten, a folder with a
missing or damaged config.json is refused, and one writer at a time holds a folder."""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from evoprune.cli import main
from evoprune.errors import ConfigError
from evoprune.io import (
    MANIFEST_FILE,
    FolderBusy,
    OutputFolder,
    atomic_write_json,
    check_file_target,
    foreign_files,
    read_manifest,
)


def _tree(folder):
    """Every file under ``folder`` with its bytes."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _compare_args(faces_folder, feature_cache, out, *extra):
    return [
        "compare",
        "--data",
        str(faces_folder),
        "--encodings",
        "fs",
        "--runs",
        "1",
        "--population",
        "6",
        "--evaluations",
        "12",
        "--out",
        str(out),
        "--cache-dir",
        str(feature_cache),
        "--no-progress",
        *extra,
    ]


@pytest.fixture()
def same_depth_copy(tiny_run, tmp_path):
    """A copy of the finished tiny run at the depth of the original, so that its relative
    data path still names the images (the same command resumes it)."""
    shutil.copytree(tiny_run[0], tmp_path, dirs_exist_ok=True)
    return tmp_path


# --- the manifest ----------------------------------------------------------------------------


def test_a_run_lists_every_file_it_wrote_in_its_manifest(tiny_run):
    out = tiny_run[0]
    listed = read_manifest(out)
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} - {
        MANIFEST_FILE
    }
    assert on_disk <= set(listed)
    assert listed["config.json"] == listed["result.json"] == "run"
    assert foreign_files(out) == []


@pytest.mark.parametrize(
    "name", [".thesis-draft.tmp", "model-notes.json", "ensemble_ideas.onnx", "analysis/mine.csv"]
)
def test_a_users_file_named_like_evopunes_is_refused_and_kept(
    run_copy, faces_folder, feature_cache, run_args, caplog, name
):
    """Files are evoprune's by its manifest, never by their names: a user's '.x.tmp' was
    deleted, 'model*.json' and an 'analysis/' folder were taken as evoprune's."""
    mine = run_copy / name
    mine.parent.mkdir(exist_ok=True)
    mine.write_text("my own words")
    before = _tree(run_copy)
    assert main(run_args(faces_folder, feature_cache, run_copy)) == 2
    assert "did not write" in caplog.text and name in caplog.text
    assert _tree(run_copy) == before
    assert main(run_args(faces_folder, feature_cache, run_copy, "--overwrite")) == 2
    assert _tree(run_copy) == before and not run_copy.with_name("run.old-1").exists()


def test_a_killed_writes_temporary_file_is_cleaned_but_only_of_a_listed_file(
    same_depth_copy, faces_folder, feature_cache, run_args
):
    out = same_depth_copy
    (out / "result.json").unlink()  # an interrupted run (a finished one is left as it is)
    ours = out / ".history.csv.ab12cd34.tmp"  # an atomic write of history.csv, killed
    ours.write_text("half")
    assert foreign_files(out) == []
    assert main(run_args(faces_folder, feature_cache, out)) == 0
    assert not ours.exists()
    assert foreign_files(out) == []


def test_a_folder_without_manifest_is_not_evoprunes(
    tiny_run, tmp_path, faces_folder, run_args, caplog
):
    """A copy of a run's files without the manifest (or an older version's folder) is the
    user's: nothing there is replaced."""
    legacy = tmp_path / "legacy"
    shutil.copytree(tiny_run[0], legacy)
    (legacy / MANIFEST_FILE).unlink()
    before = _tree(legacy)
    assert main(run_args(faces_folder, tmp_path / "c", legacy, "--overwrite")) == 2
    assert "did not write" in caplog.text
    assert _tree(legacy) == before


def test_a_damaged_manifest_is_refused_naming_it(
    run_copy, faces_folder, feature_cache, run_args, caplog
):
    (run_copy / MANIFEST_FILE).write_text("{not json")
    before = _tree(run_copy)
    assert main(run_args(faces_folder, feature_cache, run_copy)) == 2
    assert MANIFEST_FILE in caplog.text and "Traceback" not in caplog.text
    assert _tree(run_copy) == before


# --- config.json missing or damaged --------------------------------------------------------


def test_a_finished_run_without_config_is_refused_not_replaced(
    run_copy, faces_folder, feature_cache, run_args, caplog
):
    (run_copy / "config.json").unlink()
    before = _tree(run_copy)
    # other settings than the run's: it used to be replaced by a run of these
    assert main(run_args(faces_folder, feature_cache, run_copy, "--limit", "60")) == 2
    assert "config.json is missing" in caplog.text
    assert _tree(run_copy) == before


@pytest.mark.parametrize(
    "text, field", [('{"run": null}', "'run'"), ("[1, 2]", "the file"), ("{cut", "damaged")]
)
def test_a_damaged_config_is_refused_naming_the_file_and_field(
    run_copy, faces_folder, feature_cache, run_args, caplog, text, field
):
    (run_copy / "config.json").write_text(text)
    before = _tree(run_copy)
    assert main(run_args(faces_folder, feature_cache, run_copy)) == 2
    message = caplog.text
    assert f"{run_copy / 'config.json'}" in message and field in message
    assert "another configuration" not in message
    assert _tree(run_copy) == before


# --- the data ----------------------------------------------------------------------------------


def test_out_inside_an_image_folder_of_a_csv_manifest_is_refused(
    faces_folder, feature_cache, run_args, tmp_path, caplog
):
    csv = tmp_path / "lists" / "faces.csv"
    csv.parent.mkdir()
    rows = ["path,label"] + [
        f"{p},{p.parent.name}" for p in sorted(faces_folder.rglob("*.png"))[::5]
    ]
    csv.write_text("\n".join(rows) + "\n")
    out = faces_folder / "face" / "results"
    assert main(run_args(csv, feature_cache, out)) == 2
    assert "inside the data folder" in caplog.text
    assert not out.exists()


def test_predict_csv_is_never_written_inside_the_data(tiny_run, faces_folder, caplog):
    target = faces_folder / "face" / "predictions.csv"
    assert main(["predict", str(tiny_run[0]), str(faces_folder / "face" / "000.png"),
                 "--csv", str(target), "--no-progress"]) == 2  # fmt: skip
    assert "inside the data folder" in caplog.text and not target.exists()


# --- a file of another command ---------------------------------------------------------------


def test_predict_csv_never_overwrites_a_runs_result(run_copy, faces_folder, caplog):
    before = _tree(run_copy)
    assert main(["predict", str(run_copy), str(faces_folder / "face" / "000.png"),
                 "--csv", str(run_copy / "result.json"), "--no-progress"]) == 2  # fmt: skip
    assert "'evoprune run' wrote" in caplog.text
    assert _tree(run_copy) == before


def test_export_never_overwrites_a_runs_head(run_copy, caplog):
    before = _tree(run_copy)
    assert main(["export", str(run_copy), "--out", str(run_copy / "head.safetensors")]) == 2
    assert "'evoprune run' wrote" in caplog.text
    assert _tree(run_copy) == before


def test_predict_csv_into_a_run_folder_is_listed_and_may_be_rewritten(
    run_copy, faces_folder, capsys
):
    target = run_copy / "predictions.csv"
    image = str(faces_folder / "face" / "000.png")
    for _ in range(2):
        assert main(["predict", str(run_copy), image, "--csv", str(target), "--no-progress"]) == 0
    assert read_manifest(run_copy)["predictions.csv"] == "predict"
    assert foreign_files(run_copy) == []


def test_check_file_target_refuses_a_fifo(tmp_path):
    fifo = tmp_path / "p.csv"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="not a regular file"):
        check_file_target(fifo, "predict", "--csv")


# --- compare ----------------------------------------------------------------------------------


def test_compare_never_replaces_a_users_files(faces_folder, feature_cache, tmp_path, caplog):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "summary.csv").write_text("my table")
    (out / "table.md").write_text("# mine")
    before = _tree(out)
    assert main(_compare_args(faces_folder, feature_cache, out)) == 2
    assert "did not write" in caplog.text
    assert _tree(out) == before


def test_compare_out_inside_the_data_writes_nothing(faces_folder, feature_cache, caplog):
    out = faces_folder / "results"
    assert main(_compare_args(faces_folder, feature_cache, out)) == 2
    assert "inside the data folder" in caplog.text
    assert not out.exists()


def test_a_refused_compare_writes_nothing_and_advises_no_option_it_rejects(
    tiny_run, faces_folder, feature_cache, tmp_path, caplog
):
    """A comparison whose run folder holds another configuration's run: comparison.json
    was rewritten first, and the message advised --overwrite, which compare rejects."""
    out = tmp_path / "cmp"
    run = out / "runs" / "fs_run0"
    run.parent.mkdir(parents=True)
    shutil.copytree(tiny_run[0], run)  # population 6 and 12 evaluations; compare asks 8
    atomic_write_json(out / "comparison.json", {"comparison": {"mine": 1}})
    manifest = {"evoprune_manifest": 1, "files": {"comparison.json": "compare"}}
    (out / MANIFEST_FILE).write_text(json.dumps(manifest))
    before = _tree(out)
    args = _compare_args(faces_folder, feature_cache, out)
    args[args.index("--evaluations") + 1] = "8"
    assert main(args) == 2
    assert "another configuration" in caplog.text
    assert "--overwrite" not in caplog.text
    assert _tree(out) == before


# --- one writer at a time --------------------------------------------------------------------


def _hold_lock(folder):
    """Another process holding ``folder``'s lock (as a running evoprune would)."""
    code = (
        "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDONLY); "
        "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"held"
    return proc


def test_a_second_writer_is_refused_naming_the_folder(
    run_copy, faces_folder, feature_cache, run_args, caplog
):
    """Two '--overwrite' runs into one folder at once both exited 0; the folder held one."""
    before = _tree(run_copy)
    holder = _hold_lock(run_copy)
    try:
        args = run_args(faces_folder, feature_cache, run_copy, "--limit", "60", "--overwrite")
        assert main(args) == 2
    finally:
        holder.kill()
        holder.wait()
    assert f"{run_copy} is being written by another evoprune command" in caplog.text
    assert _tree(run_copy) == before
    assert not run_copy.with_name("run.old-1").exists()


def test_a_folder_claimed_twice_is_busy(tmp_path):
    folder = OutputFolder(tmp_path / "x", "run")
    with folder.claim():  # another process is refused; this one re-enters
        code = (
            "import sys; from evoprune.io import OutputFolder\n"
            "try:\n    OutputFolder(sys.argv[1], 'run').claim().__enter__()\n"
            "except Exception as e:\n    print(type(e).__name__)"
        )
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        out = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path / "x")],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert out.stdout.strip() == FolderBusy.__name__
        with folder.claim() as again:
            assert again is folder


# --- --overwrite edge cases --------------------------------------------------------------------


def test_overwrite_of_the_current_folder_is_one_message(
    run_copy, faces_folder, feature_cache, run_args, monkeypatch, caplog
):
    monkeypatch.chdir(run_copy)
    before = _tree(run_copy)
    assert main(run_args(faces_folder, feature_cache, ".", "--limit", "60", "--overwrite")) == 2
    assert "current folder" in caplog.text and "Traceback" not in caplog.text
    assert _tree(run_copy) == before


def test_overwrite_under_a_read_only_parent_is_one_message(
    run_copy, faces_folder, feature_cache, run_args, monkeypatch, caplog
):
    from pathlib import Path

    def read_only(self, target):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(Path, "rename", read_only)
    before = _tree(run_copy)
    args = run_args(faces_folder, feature_cache, run_copy, "--limit", "60", "--overwrite")
    assert main(args) == 2
    assert "read-only" in caplog.text and "Traceback" not in caplog.text
    assert _tree(run_copy) == before


def test_analyze_refuses_a_run_folder_holding_a_users_file(run_copy, caplog):
    (run_copy / "analysis").mkdir(exist_ok=True)
    (run_copy / "analysis" / "notes.md").write_text("mine")
    before = _tree(run_copy)
    t = time.perf_counter()
    assert main(["analyze", str(run_copy), "--no-progress"]) == 2
    assert time.perf_counter() - t < 30  # refused before any analysis
    assert "analysis/notes.md" in caplog.text
    assert _tree(run_copy) == before


# --- ensemble ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_objective_run(tmp_path_factory, faces_folder, feature_cache, run_args):
    out = tmp_path_factory.mktemp("mo") / "run"
    args = run_args(faces_folder, feature_cache, out, "--objectives", "accuracy,size")
    assert main(args) == 0
    return out


@pytest.mark.parametrize("how", ["hard_vote", "unwritable"])
def test_a_failing_ensemble_leaves_ensemble_json_as_it_was(
    two_objective_run, feature_cache, tmp_path, caplog, how
):
    run = two_objective_run
    assert main(["ensemble", str(run), "--members", "1", "--cache-dir", str(feature_cache),
                 "--no-progress"]) == 0  # fmt: skip
    before = (run / "ensemble.json").read_bytes()
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    export = tmp_path / "e.onnx" if how == "hard_vote" else blocker / "e.onnx"
    extra = ["--vote", "hard"] if how == "hard_vote" else ["--members", "2"]
    args = ["ensemble", str(run), "--export", str(export), "--cache-dir", str(feature_cache),
            "--no-progress", *extra]  # fmt: skip
    assert main(args) == 2
    assert "--export" in caplog.text or "--vote" in caplog.text
    assert (run / "ensemble.json").read_bytes() == before
    assert read_manifest(run)["ensemble.json"] == "ensemble"


# --- values checked on read (item 3) -------------------------------------------------------------


def _history_lines(folder):
    return (folder / "history.csv").read_text().splitlines()


@pytest.mark.parametrize("value", ["inf", "nan", "1.5", "-0.1"])
def test_a_history_fitness_that_is_not_a_finite_accuracy_stops_the_resume(
    same_depth_copy, faces_folder, feature_cache, run_args, caplog, value
):
    """'inf' in history.csv gave "fitness": Infinity in result.json; 'nan' changed the mask."""
    out = same_depth_copy
    lines = _history_lines(out)
    header = lines[0].split(",")
    cells = lines[3].split(",")
    cells[header.index("fitness")] = value
    lines[3] = ",".join(cells)
    (out / "history.csv").write_text("\n".join(lines) + "\n")
    (out / "result.json").unlink()  # an interrupted run: resumed from its history
    before = _tree(out)
    assert main(run_args(faces_folder, feature_cache, out)) == 2
    assert f"{out / 'history.csv'} line 4: 'fitness' is '{value}'" in caplog.text
    assert _tree(out) == before


def test_a_history_mask_of_the_wrong_length_is_refused(tiny_run, tmp_path):
    from evoprune.errors import EvoPruneError
    from evoprune.runs.store import read_history

    lines = _history_lines(tiny_run[0])
    lines[2] = lines[2][:-2]  # one byte short: the chromosome would be decoded short
    (tmp_path / "history.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(EvoPruneError, match="line 3: 'mask' has"):
        read_history(tmp_path / "history.csv", tiny_run[1]["genes"])
    lines = lines[:2] + [lines[3][:-3]]  # the last row cut by an interruption: skipped
    (tmp_path / "history.csv").write_text("\n".join(lines) + "\n")
    assert len(read_history(tmp_path / "history.csv", tiny_run[1]["genes"])) == 1


@pytest.mark.parametrize("garbage", [b"\x00\xff\xfe garbage", b"index,fitness\n1,2,3,4\n5"])
def test_a_garbage_history_in_analyze_is_one_message(
    same_depth_copy, feature_cache, caplog, garbage
):
    run = same_depth_copy
    (run / "history.csv").write_bytes(garbage)
    args = [
        "analyze",
        str(run),
        "--no-heatmaps",
        "--no-progress",
        "--cache-dir",
        str(feature_cache),
    ]
    assert main(args) == 2
    assert "history.csv" in caplog.text and "Traceback" not in caplog.text


@pytest.mark.parametrize(
    "field, value, problem",
    [
        ("front", [1, 2], "item 0"),
        ("per_class", "x", "not a list"),
        ("per_class", [{"class": "face"}], "lacks 'support'"),
        ("best_mask", "abc", "not a list"),
        ("best_mask", [2], "genes"),
        ("test_accuracy", 1.5, "not in [0, 1]"),
        ("timings", {"search": "slow"}, "'search'"),
        ("confusion", [[1]], "matrix"),
    ],
)
def test_a_result_with_a_wrong_type_inside_is_one_message(run_copy, caplog, field, value, problem):
    doc = json.loads((run_copy / "result.json").read_text())
    doc[field] = value
    (run_copy / "result.json").write_text(json.dumps(doc))
    assert main(["show", str(run_copy)]) == 2
    assert f"result.json: {field!r} is" in caplog.text and problem in caplog.text


def test_a_result_with_infinity_is_one_message(run_copy, caplog):
    text = (run_copy / "result.json").read_text()
    doc = json.loads(text)
    text = text.replace(f'"fitness": {json.dumps(doc["fitness"])}', '"fitness": Infinity')
    (run_copy / "result.json").write_text(text)
    assert main(["show", str(run_copy)]) == 2
    assert "'fitness' is Infinity" in caplog.text and "finite" in caplog.text


@pytest.mark.parametrize("command", ["show", "export"])
def test_a_config_with_a_null_run_is_one_message(run_copy, caplog, command):
    doc = json.loads((run_copy / "config.json").read_text())
    doc["run"] = None
    (run_copy / "config.json").write_text(json.dumps(doc))
    assert main([command, str(run_copy)]) == 2
    assert "config.json: 'run' is null" in caplog.text


@pytest.mark.parametrize("damage", ["nan", "int"])
def test_a_head_with_nan_or_integer_weights_is_refused(run_copy, tmp_path, caplog, damage):
    """Such heads predicted nan or a flat 0.333 for every image, and export wrote them."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(run_copy / "head.safetensors"))
    w = state["layers.0.weight"]
    state["layers.0.weight"] = w.fill_(float("nan")) if damage == "nan" else w.long()
    save_file(state, str(run_copy / "head.safetensors"))
    target = tmp_path / "m.onnx"
    assert main(["export", str(run_copy), "--out", str(target)]) == 2
    assert "tensor 'layers.0.weight' is" in caplog.text
    assert not target.exists()


def test_json_is_written_strict(tmp_path):
    with pytest.raises(ValueError, match="NaN or infinite"):
        atomic_write_json(tmp_path / "x.json", {"fitness": float("inf")})
    assert not (tmp_path / "x.json").exists()


# --- resource bounds (item 4) ------------------------------------------------------------------


@pytest.mark.parametrize(
    "option, value, limit",
    [
        ("--population", "1000000000", "at most 100,000"),
        ("--population", str(2**62), "at most 100,000"),
        ("--hidden-size", "100000000", "at most 65,536"),
        ("--evaluations", "100000000000", "at most 10,000,000"),
    ],
)
def test_a_value_that_cannot_fit_is_refused_up_front_with_the_limit(
    faces_folder, feature_cache, run_args, tmp_path, caplog, option, value, limit
):
    out = tmp_path / "run"
    args = run_args(faces_folder, feature_cache, out)
    if option in args:
        args[args.index(option) + 1] = value
    else:
        args += [option, value]
    t = time.perf_counter()
    assert main(args) == 2
    assert time.perf_counter() - t < 20
    assert option in caplog.text and limit in caplog.text and "Traceback" not in caplog.text
    assert not out.exists()


def test_a_saved_config_with_a_huge_population_is_refused(same_depth_copy, caplog):
    """A population of 1e9 in a saved config was a MemoryError."""
    run = same_depth_copy
    doc = json.loads((run / "config.json").read_text())
    doc["run"]["population"] = 10**9
    (run / "config.json").write_text(json.dumps(doc))
    assert main(["analyze", str(run), "--no-progress", "--remove-each-class"]) == 2
    assert "at most 100,000" in caplog.text and "Traceback" not in caplog.text


def test_saved_trainer_settings_of_endless_epochs_are_refused(run_copy):
    from evoprune.analysis.context import saved_trainer
    from evoprune.errors import EvoPruneError
    from evoprune.runs.store import open_run

    doc = json.loads((run_copy / "config.json").read_text())
    doc["trainer_settings"].update(max_epochs=10**9, early_stop_patience=10**9)
    (run_copy / "config.json").write_text(json.dumps(doc))
    with pytest.raises(EvoPruneError, match=r"config.json: trainer_settings .*max_epochs"):
        saved_trainer(open_run(run_copy))


# --- special files and leaks (item 5) ----------------------------------------------------------


def _small_copy(faces_folder, dst, per_class=12):
    for cls in ("face", "not_face"):
        (dst / cls).mkdir(parents=True)
        for p in sorted((faces_folder / cls).glob("*.png"))[:per_class]:
            shutil.copy(p, dst / cls / p.name)
    return dst


def _run_with_timeout(args, timeout=120):
    """The CLI in a subprocess: a hang fails the test instead of blocking the suite."""
    code = "from evoprune.cli import main; import sys; sys.exit(main(sys.argv[1:]))"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout,
        env=env,
    )  # fmt: skip


@pytest.mark.parametrize("skip_bad", [False, True])
def test_a_fifo_among_class_images_never_blocks(
    faces_folder, feature_cache, run_args, tmp_path, skip_bad
):
    data = _small_copy(faces_folder, tmp_path / "data")
    os.mkfifo(data / "face" / "zz_fifo.png")
    extra = ["--skip-bad-images"] if skip_bad else []
    args = run_args(data, feature_cache, tmp_path / "run", *extra)
    args[args.index("--evaluations") + 1] = "6"
    proc = _run_with_timeout(args)
    assert proc.returncode == 0, proc.stderr
    assert "zz_fifo.png is not a regular file" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_fifo_given_to_predict_never_blocks(tiny_run, faces_folder, tmp_path):
    fifo = tmp_path / "x.png"
    os.mkfifo(fifo)
    image = str(faces_folder / "face" / "000.png")
    proc = _run_with_timeout(["predict", str(tiny_run[0]), str(fifo), image, "--no-progress"])
    assert proc.returncode == 0, proc.stderr
    assert "not a regular file" in proc.stderr and "000.png" in proc.stdout


def test_an_image_check_never_opens_a_fifo(tmp_path):
    from evoprune.data.images import find_unreadable

    fifo = tmp_path / "f.png"
    os.mkfifo(fifo)
    ((path, reason),) = find_unreadable([str(fifo)])
    assert "FIFO" in reason


def test_an_empty_image_is_refused_with_its_path(tmp_path, monkeypatch):
    from PIL import Image

    from evoprune.data import images
    from evoprune.errors import DataError

    path = tmp_path / "empty.png"
    Image.new("RGB", (1, 1)).save(path)
    real_open = images.Image.open
    monkeypatch.setattr(
        images.Image, "open", lambda p: Image.new("RGB", (0, 0)) if p == str(path) else real_open(p)
    )
    with pytest.raises(DataError, match="empty 0x0 image"):
        images.open_rgb(str(path))
    assert "empty 0x0" in images.find_unreadable([str(path)])[0][1]


@pytest.mark.parametrize("how", ["copy", "symlink", "hardlink"])
def test_test_images_identical_to_training_images_are_reported_in_train_test_layout(
    faces_folder, feature_cache, run_args, tmp_path, caplog, how
):
    data = tmp_path / "data"
    _small_copy(faces_folder, data / "train")
    _small_copy(faces_folder, data / "test", per_class=4)
    for cls in ("face", "not_face"):  # the test images are the training images
        for p in sorted((data / "test" / cls).iterdir()):
            p.unlink()
            src = data / "train" / cls / p.name
            {"copy": shutil.copy, "symlink": os.symlink, "hardlink": os.link}[how](src, p)
    args = run_args(data, feature_cache, tmp_path / "run")
    args[args.index("--evaluations") + 1] = "6"
    assert main(args) == 0
    assert "8 held-out image(s) are identical to training images" in caplog.text


def test_an_ood_set_overlapping_the_training_images_is_refused(
    faces_folder, feature_cache, run_args, tmp_path, caplog
):
    data = _small_copy(faces_folder, tmp_path / "data")
    ood = tmp_path / "ood"
    ood.mkdir()
    for p in sorted((data / "face").iterdir())[:6]:
        shutil.copy(p, ood / p.name)
    out = tmp_path / "run"
    args = run_args(
        data, feature_cache, out, "--objectives", "accuracy,size,ood", "--ood", str(ood)
    )
    assert main(args) == 2
    assert "--ood" in caplog.text and "6 of its 6 images are images of --data" in caplog.text
    assert not out.exists()


# --- late checks moved before the first write; disk full (item 6) ------------------------------


@pytest.mark.parametrize(
    "extra, named",
    [
        (["--fitness-split", "cv", "--cv-folds", "50"], "--cv-folds 50"),
        (["--test-fraction", "0.99"], "--test-fraction 0.99"),
        (["--limit", "3"], "--limit 3"),
        (["--final-check", "cv", "--final-check-folds", "50"], "--final-check-folds 50"),
        (["--two-images"], "--val-fraction"),
        (["--limit", "1"], "--limit"),  # was "class has 1 image", naming no option
        (["--ray-address", "nonsense.invalid:1"], "--ray-address"),
    ],
)
def test_a_late_check_stops_before_the_folder_is_written(
    faces_folder, feature_cache, run_args, tmp_path, caplog, extra, named
):
    """These stopped only after config.json and history.csv were written, so the corrected
    command into the same folder was refused."""
    data = _small_copy(faces_folder, tmp_path / "data")
    if extra == ["--two-images"]:  # a class with 2 images
        for p in sorted((data / "not_face").iterdir())[2:]:
            p.unlink()
        extra = []
    out = tmp_path / "run"
    args = run_args(data, feature_cache, out, *extra)
    args[args.index("--evaluations") + 1] = "6"
    assert main(args) == 2
    assert named in caplog.text and "Traceback" not in caplog.text
    assert not out.exists()


def test_disk_full_during_the_search_is_one_message_and_resumes_identically(
    tiny_run, faces_folder, feature_cache, run_args, tmp_path, monkeypatch, caplog
):
    import errno

    from evoprune.runs import store

    real = store.HistoryAppender._append
    calls = {"n": 0}

    def full(self, rec):
        calls["n"] += 1
        if calls["n"] > 7:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, rec)

    monkeypatch.setattr(store.HistoryAppender, "_append", full)
    out = tmp_path  # the depth of the tiny run: the same relative data path
    assert main(run_args(faces_folder, feature_cache, out)) == 2
    assert "the disk is full" in caplog.text and "Traceback" not in caplog.text
    assert len(_history_lines(out)) == 1 + 7  # the rows written before are kept
    monkeypatch.setattr(store.HistoryAppender, "_append", real)
    assert main(run_args(faces_folder, feature_cache, out)) == 0
    again = json.loads((out / "result.json").read_text())
    assert again["best_mask"] == tiny_run[1]["best_mask"]
    assert again["resumed_evaluations"] == 7
    assert _history_lines(out) == _history_lines(tiny_run[0])


def test_a_cache_entry_being_computed_is_waited_for_not_computed_twice(
    faces_folder, tmp_path, caplog, monkeypatch
):
    """Two processes computing the same features: the second waits, then reads the first's."""
    import threading

    from evoprune import features
    from evoprune.backbones import get_backbone
    from evoprune.features import cache_file_path, cache_key, extract_features

    paths = [str(p) for p in sorted((faces_folder / "face").glob("*.png"))[:4]]
    key = cache_key(get_backbone("efficientnet-lite0"), paths)
    cache = tmp_path / "cache"
    target = cache_file_path(cache, key)
    cache.mkdir()
    code = (
        "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
        "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.readline()"
    )
    lock = cache / f".{target.name}.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(lock)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert holder.stdout.readline().strip() == b"held"
    computed = []
    real = features._compute
    monkeypatch.setattr(features, "_compute", lambda *a, **k: computed.append(1) or real(*a, **k))

    def finish_first():  # the other process writes the entry, then lets go
        time.sleep(1.5)
        extract_features("efficientnet-lite0", paths, cache_dir=tmp_path / "other", progress=False)
        shutil.copy(cache_file_path(tmp_path / "other", key), target)
        holder.stdin.write(b"\n")
        holder.stdin.flush()

    thread = threading.Thread(target=finish_first)
    thread.start()
    computed.clear()
    result = extract_features("efficientnet-lite0", paths, cache_dir=cache, progress=False)
    thread.join()
    holder.wait()
    assert "waiting for it" in caplog.text
    assert result.cached and len(computed) == 1  # only the other "process" computed them
    assert sorted(p.name for p in cache.iterdir()) == [target.name]


def test_a_head_that_cannot_train_in_memory_is_refused_with_the_size_that_can(
    faces_folder, feature_cache, run_args, tmp_path, caplog, monkeypatch
):
    from evoprune.runs import experiment

    monkeypatch.setattr(experiment, "_physical_memory", lambda: 2**30)  # a 1 GiB machine
    out = tmp_path / "run"
    args = run_args(faces_folder, feature_cache, out, "--hidden-size", "30000")
    assert main(args) == 2
    # 1280 features, 2 classes: 1280 h + h + 2 h + 2 = 1283 h + 2 weights of 16 bytes; > 0.5 GiB
    assert "--hidden-size 30000: the not-pruned head has 38,490,002 weights" in caplog.text
    assert "give --hidden-size 26153 or less" in caplog.text  # (2**29 / 16 - 2) // 1283
    assert not out.exists()


def test_report_is_never_written_inside_the_data_nor_onto_a_runs_file(
    run_copy, tiny_run, faces_folder, caplog
):
    target = faces_folder / "face" / "report.html"
    assert main(["report", str(tiny_run[0]), "--out", str(target)]) == 2
    assert "inside the data folder" in caplog.text and not target.exists()
    before = _tree(run_copy)
    (run_copy / "confusion.html").write_text("mine")  # not listed: the user's
    assert main(["report", str(run_copy), "--out", str(run_copy / "confusion.html")]) == 2
    assert (run_copy / "confusion.html").read_text() == "mine"
    assert {k: v for k, v in _tree(run_copy).items() if k != "confusion.html"} == before
