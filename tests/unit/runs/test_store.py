"""The run store: nothing a user computed is lost, nothing is silently replaced (issue 8 items 1,
2 and 4), every results file round-trips, and old or damaged folders get one clear message."""

import csv
import dataclasses
import json

import numpy as np
import pytest

from evoprune.cli import main
from evoprune.errors import ConfigError, EvoPruneError
from evoprune.runs.config import RunConfig
from evoprune.runs.experiment import run_experiment
from evoprune.runs.store import RunResult, history_fields, open_run, read_history, write_history
from evoprune.search import EvaluationRecord


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


@pytest.mark.parametrize(
    "bad",
    [
        ["--population", "1"],
        ["--evaluations", "-5"],
        ["--init", "1.5"],
        ["--mutation-prob", "2"],
        ["--evaluations", "0"],
        ["--seed", "-1"],
    ],
)
def test_a_bad_option_value_leaves_a_finished_run_untouched(
    run_copy, faces_folder, feature_cache, run_args, bad
):
    before = _snapshot(run_copy)
    args = run_args(faces_folder, feature_cache, run_copy)
    if bad[0] in args:  # replace the good value
        args[args.index(bad[0]) + 1] = bad[1]
    else:
        args += bad
    assert main(args) == 2
    assert _snapshot(run_copy) == before


def test_a_failed_option_check_leaves_no_folder(faces_folder, feature_cache, run_args, tmp_path):
    out = tmp_path / "new"
    assert main(run_args(faces_folder, feature_cache, out, "--population", "1")) == 2
    assert not out.exists()


def test_another_configuration_is_refused_naming_the_differences(
    run_copy, faces_folder, feature_cache, run_args, caplog
):
    before = _snapshot(run_copy)
    args = run_args(faces_folder, feature_cache, run_copy)
    args[args.index("--evaluations") + 1] = "14"
    assert main(args) == 2
    assert "evaluations: 12 there, 14 now" in caplog.text and "--overwrite" in caplog.text
    assert _snapshot(run_copy) == before


def test_overwrite_moves_the_old_run_aside(run_copy, faces_folder, feature_cache, run_args):
    before = _snapshot(run_copy)
    args = run_args(faces_folder, feature_cache, run_copy, "--overwrite")
    args[args.index("--evaluations") + 1] = "13"
    assert main(args) == 0
    aside = run_copy.with_name("run.old-1")
    assert _snapshot(aside) == before
    assert json.loads((run_copy / "result.json").read_text())["evaluations"] == 13


def test_default_folders_differ_for_folds_limits_and_budgets():
    from evoprune.runs.config import default_out_dir

    base = RunConfig(data="some/data")
    names = {
        default_out_dir(dataclasses.replace(base, **change))
        for change in (
            {},
            {"fold": 1},
            {"limit": 300},
            {"evaluations": 60},
            {"population": 10},
            {"init": "0.5"},
            {"hidden_size": 64},
            {"test_fraction": 0.3},
        )
    }
    assert len(names) == 8


@pytest.mark.parametrize("where", ["foreign", "file", "inside_data"])
def test_out_that_is_not_evoprunes_to_write_is_refused(
    faces_folder, feature_cache, run_args, tmp_path, where, caplog
):
    if where == "foreign":
        out = tmp_path / "mine"
        out.mkdir()
        (out / "notes.txt").write_text("my own file")
        expected = "did not write (notes.txt)"
    elif where == "file":
        out = tmp_path / "a_file"
        out.write_text("x")
        expected = "is a file"
    else:
        out = faces_folder / "face" / "results"
        expected = "inside the data folder"
    assert main(run_args(faces_folder, feature_cache, out)) == 2
    assert expected in caplog.text
    assert where != "inside_data" or not out.exists()


def _interrupt_after(monkeypatch, n: int):
    """Ctrl-C when a batch would take the problem past its n-th evaluation; returns the real
    method, to put back."""
    from evoprune.problem import HeadProblem

    real = HeadProblem.evaluate
    calls = {"n": 0}

    def interrupted(self, chrom):
        calls["n"] += len(chrom)
        if calls["n"] > n:
            raise KeyboardInterrupt
        return real(self, chrom)

    monkeypatch.setattr(HeadProblem, "evaluate", interrupted)
    return real


def test_interrupting_a_resumed_run_during_its_replay_keeps_every_evaluation(
    faces_folder, feature_cache, run_args, tmp_path, monkeypatch
):
    from evoprune.problem import HeadProblem
    from evoprune.runs import store

    out = tmp_path / "run"
    real = _interrupt_after(monkeypatch, 10)
    assert main(run_args(faces_folder, feature_cache, out)) == 130
    rows = read_history(out / "history.csv")
    assert len(rows) == 10

    real_call = store.HistoryAppender.__call__
    seen = {"n": 0}

    def stop_in_replay(self, rec):
        seen["n"] += 1
        if seen["n"] == 3:
            raise KeyboardInterrupt
        return real_call(self, rec)

    monkeypatch.setattr(store.HistoryAppender, "__call__", stop_in_replay)
    assert main(run_args(faces_folder, feature_cache, out)) == 130
    assert [r.as_row() for r in read_history(out / "history.csv")] == [r.as_row() for r in rows]

    monkeypatch.setattr(store.HistoryAppender, "__call__", real_call)
    monkeypatch.setattr(HeadProblem, "evaluate", real)
    assert main(run_args(faces_folder, feature_cache, out)) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["resumed_evaluations"] == 10 and result["evaluations"] == 12
    assert [r.as_row() for r in read_history(out / "history.csv")][:10] == [
        r.as_row() for r in rows
    ]


def test_resumed_run_equals_an_uninterrupted_one(
    tiny_run, faces_folder, feature_cache, run_args, tmp_path, monkeypatch
):
    from evoprune.problem import HeadProblem

    out = tmp_path / "run"
    real = _interrupt_after(monkeypatch, 7)  # run_args is tiny_run's command
    assert main(run_args(faces_folder, feature_cache, out)) == 130
    monkeypatch.setattr(HeadProblem, "evaluate", real)
    assert main(run_args(faces_folder, feature_cache, out)) == 0
    got = json.loads((out / "result.json").read_text())
    want = tiny_run[1]
    for key in ("best_mask", "fitness", "test_accuracy", "reference_test_accuracy"):
        assert got[key] == want[key]
    assert (out / "history.csv").read_text() == (tiny_run[0] / "history.csv").read_text()


def test_every_results_file_round_trips_through_the_store(tiny_run, tmp_path):
    folder, result, _ = tiny_run
    run = open_run(folder)
    assert run.result.to_dict() == result
    assert RunResult.from_dict(result).to_dict() == result
    assert run.result["test_accuracy"] == run.result.test_accuracy == result["test_accuracy"]
    records = read_history(folder / "history.csv", n_genes=result["genes"])
    assert len(records) == result["evaluations"]
    copy = tmp_path / "history.csv"
    write_history(copy, records)
    assert copy.read_text() == (folder / "history.csv").read_text()
    assert run.settings().validate() == tiny_run[2].validate()
    ref = run.head(reference=True)
    assert ref.sizes == (result["feature_dim"], 512, 2)


def test_history_with_objectives_round_trips(tmp_path):
    rec = EvaluationRecord(
        index=1,
        iteration=0,
        fitness=0.75,
        active_genes=3,
        active_fraction=0.375,
        best_fitness=0.75,
        best_active_fraction=0.375,
        chromosome=np.array([1, 1, 1, 0, 0, 0, 0, 0], np.uint8),
        auroc=0.625,
        hypervolume=0.1,
    )
    path = tmp_path / "history.csv"
    objectives = ("accuracy", "size", "ood")
    write_history(path, [rec], objectives)
    assert next(csv.reader(path.open())) == history_fields(objectives)
    (back,) = read_history(path, n_genes=8)
    assert back.as_row() == rec.as_row()
    assert np.array_equal(back.chromosome, rec.chromosome)


@pytest.mark.parametrize("damage", ["older_version", "missing_key", "wrong_type", "null"])
def test_an_old_or_damaged_result_gets_one_clear_message(run_copy, damage):
    doc = json.loads((run_copy / "result.json").read_text())
    if damage == "older_version":
        del doc["schema_version"]
        match = "older version of evoprune"
    elif damage == "missing_key":
        del doc["classes"]
        match = "lacks 'classes'"
    elif damage == "wrong_type":
        doc["n_classes"] = "two"
        match = "'n_classes' is \"two\""
    else:
        doc["test_accuracy"] = None
        match = "'test_accuracy' is null"
    (run_copy / "result.json").write_text(json.dumps(doc))
    with pytest.raises(EvoPruneError, match=match):
        open_run(run_copy)


def test_results_hold_no_absolute_paths(tiny_run):
    folder = tiny_run[0]
    for name in ("result.json", "config.json"):
        text = (folder / name).read_text()
        assert "/tmp" not in text and str(folder.parent) not in text


def test_fold_on_data_without_partitions_is_refused(faces_folder, feature_cache, tmp_path):
    cfg = RunConfig(data=str(faces_folder), population=4, evaluations=4, fold=2)
    with pytest.raises(ConfigError, match="--fold 2"):
        run_experiment(cfg, tmp_path / "run", progress=False, cache_dir=feature_cache)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("when", ["begin", "finish"])
def test_an_unwritable_results_folder_gets_one_message(
    faces_folder, feature_cache, run_args, tmp_path, monkeypatch, caplog, when
):
    """Tests run as root, so a read-only folder is simulated: the store's writes fail."""
    import errno

    from evoprune.runs import store
    from evoprune.runs.store import writer  # the module that writes config and result

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    target = "atomic_write_json" if when == "begin" else "write_history"
    if when == "finish":
        real = store.RunWriter.finish

        def finish(self, *args):
            monkeypatch.setattr(writer, target, denied)
            return real(self, *args)

        monkeypatch.setattr(store.RunWriter, "finish", finish)
    else:
        monkeypatch.setattr(writer, target, denied)
    out = tmp_path / "run"
    assert main(run_args(faces_folder, feature_cache, out)) == 2
    assert f"cannot write the results folder {out}: Permission denied" in caplog.text
