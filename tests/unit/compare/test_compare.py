"""`evoprune compare` end to end on real images: every (encoding, method, run) row, the tables,
the paired tests, the plots, and resuming without redoing anything."""

import csv
import json
import math
import shutil

import numpy as np
import pytest
import scipy.stats

from evoprune import problem as heads
from evoprune.cli import main
from evoprune.compare import baselines
from evoprune.compare import runner as compare
from evoprune.compare.layout import SUMMARY_FIELDS
from evoprune.compare.rankings import ranking_available
from evoprune.compare.tables import holm, paired_stats

METHODS = ["evoprune", "not_pruned", "best_fixed", "weight", "neuron", "polynomial_decay"]
ENCODINGS = ["fs", "fc2"]
#: The rankings each encoding gets too (compare/rankings.py; those of the selection extra where
#: it is installed), and the narrower head of the neuron encodings.
RANKED = {
    "fs": ["mutual_info", "anova_f", "l1_logistic", "norm_retrained", "rfe", "relieff"]
    + [m for m in ("mrmr", "lassonet") if ranking_available(m)],
    "fc2": ["norm_retrained", "activation_variance", "narrow"],
}


def _registered(encoding: str) -> list[str]:
    """evoprune and every comparison method the registry applies to ``encoding`` (the paper's
    METHODS and RANKED among them, a method added to the registry too)."""
    from evoprune.compare.baselines import methods_for
    from evoprune.encodings import make_encoding

    return ["evoprune", *methods_for(make_encoding(encoding, 8, 4))]


def _args(data, out, cache):
    return [
        "-q",
        "compare",
        "--data",
        str(data),
        "--encodings",
        ",".join(ENCODINGS),
        "--runs",
        "2",
        "--seed-base",
        "7",
        "--evaluations",
        "6",
        "--population",
        "4",
        "--hidden-size",
        "32",
        "--out",
        str(out),
        "--cache-dir",
        str(cache),
        "--no-progress",
    ]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


#: (layer sizes, training rows) of every head trained to convergence while tiny_compare ran.
_TRAININGS: list[tuple[tuple[int, ...], int]] = []


@pytest.fixture(scope="module")
def tiny_compare(tmp_path_factory, faces_folder, feature_cache, one_torch_thread):
    from evoprune.model import head as head_module

    out = tmp_path_factory.mktemp("compare")
    real = head_module.fit_head

    def recording(head, X, y, cfg, generator, *, early_stopping=True, hooks=None):
        if early_stopping:  # training from scratch (fine-tuning runs without early stopping)
            _TRAININGS.append((head.sizes, len(X)))
        return real(head, X, y, cfg, generator, early_stopping=early_stopping, hooks=hooks)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(head_module, "fit_head", recording)
        assert main(_args(faces_folder, out, feature_cache)) == 0
    return out


def _summary(out):
    return list(csv.DictReader((out / "summary.csv").open()))


def test_summary_has_every_method_and_run(tiny_compare):
    rows = _summary(tiny_compare)
    assert list(rows[0]) == SUMMARY_FIELDS
    keys = {(r["encoding"], r["method"], r["run"]) for r in rows}
    assert len(rows) == len(keys)
    assert keys == {(e, m, str(k)) for e in ENCODINGS for m in _registered(e) for k in (0, 1)}
    assert all(set(METHODS + RANKED[e]) <= set(_registered(e)) for e in ENCODINGS)
    n_test = {
        json.loads((tiny_compare / "runs" / f"{e}_run{k}" / "result.json").read_text())["n_test"]
        for e in ENCODINGS
        for k in (0, 1)
    }
    assert len(n_test) == 1  # one held-out test set
    (n,) = n_test
    for r in rows:
        assert int(r["seed"]) == 7 + int(r["run"])
        correct = float(r["test_accuracy"]) * n  # an accuracy on those n images
        assert correct == pytest.approx(round(correct), abs=1e-6) and 0 <= round(correct) <= n
        assert 0.0 < float(r["active_fraction"]) <= 1.0
        assert int(r["head_params"]) > 0 and float(r["seconds"]) >= 0
    for e in ENCODINGS:
        for k in (0, 1):
            run = tiny_compare / "runs" / f"{e}_run{k}"
            result = json.loads((run / "result.json").read_text())
            assert result["seed"] == 7 + k and result["encoding"] == e
            mine = {r["method"]: r for r in rows if r["encoding"] == e and r["run"] == str(k)}
            assert float(mine["evoprune"]["test_accuracy"]) == result["test_accuracy"]
            assert float(mine["evoprune"]["active_fraction"]) == result["active_fraction"]
            # the baselines' not-pruned head is the run's reference head
            assert float(mine["not_pruned"]["test_accuracy"]) == result["reference_test_accuracy"]
            assert int(mine["not_pruned"]["head_params"]) == result["reference_head_params"]
            for m in ("weight", "neuron", "polynomial_decay"):  # same size as the evolved head
                assert float(mine[m]["active_fraction"]) == pytest.approx(
                    result["active_fraction"], abs=1e-3
                )
            assert float(mine["not_pruned"]["active_fraction"]) == 1.0
    # every run shares the one held-out test set drawn with the seed base
    tests = {
        json.loads((tiny_compare / "runs" / f"{e}_run{k}" / "result.json").read_text())["test_set"]
        for e in ENCODINGS
        for k in (0, 1)
    }
    assert tests == {"stratified 20% held out (seed 7)"}


def test_each_runs_not_pruned_head_is_trained_once(tiny_compare):
    """The run trains its not-pruned (reference) head; the baselines reuse it, so per run one
    full-size head is trained on all training images (two if the evolved head is full too)."""
    assert _TRAININGS, "no training was recorded"
    for e in ENCODINGS:
        result = json.loads((tiny_compare / "runs" / f"{e}_run0" / "result.json").read_text())
        full = tuple(result["total_units"].values()) + (result["n_classes"],)
        n_full = sum(1 for sizes, n in _TRAININGS if sizes == full and n == result["n_train"])
        runs = [
            json.loads((tiny_compare / "runs" / f"{e}_run{k}" / "result.json").read_text())
            for k in (0, 1)
        ]
        assert n_full == sum(1 + (r["active_fraction"] == 1.0) for r in runs), e
        reused = json.loads((tiny_compare / "runs" / f"{e}_run0" / "baselines.json").read_text())
        assert reused["methods"]["not_pruned"]["seconds"] == result["timings"]["reference_training"]


def test_table_stats_and_plots(tiny_compare):
    table = (tiny_compare / "table.md").read_text()
    for label in [
        "EvoPruneDeepTL",
        "Not pruned",
        "Best fixed",
        "Weight pruning",
        "Neuron pruning",
        "Polynomial decay",
        "Mutual information",
        "Activation variance",
        "fs accuracy",
        "fc2 % active",
        "Wilcoxon",
        "smallest possible",
        "cannot",
    ]:
        assert label in table, label
    stats = list(csv.DictReader((tiny_compare / "stats.csv").open()))
    assert {(s["encoding"], s["baseline"]) for s in stats} == {
        (e, m) for e in ENCODINGS for m in _registered(e)[1:]
    }
    acc = {
        (r["encoding"], r["method"], int(r["run"])): float(r["test_accuracy"])
        for r in _summary(tiny_compare)
    }
    for s in stats:
        assert int(s["n"]) == 2
        a = np.array([acc[(s["encoding"], "evoprune", k)] for k in (0, 1)])
        b = np.array([acc[(s["encoding"], s["baseline"], k)] for k in (0, 1)])
        assert (int(s["wins"]), int(s["losses"])) == (int((a > b).sum()), int((a < b).sum()))
        assert int(s["wins"]) + int(s["ties"]) + int(s["losses"]) == 2
        # the paired test of these two runs, computed here from summary.csv
        expected = 1.0 if (a == b).all() else scipy.stats.wilcoxon(a, b).pvalue
        assert float(s["wilcoxon_p"]) == pytest.approx(expected)
        assert float(s["wilcoxon_p_holm"]) >= float(s["wilcoxon_p"])
    for name in ["convergence_fs.png", "convergence_fc2.png", "accuracy_vs_active.png"]:
        data = (tiny_compare / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name
    assert not list(tiny_compare.rglob(".*.tmp"))  # atomic writes left no temporaries


def test_polynomial_schedule_is_recorded(tiny_compare):
    saved = json.loads((tiny_compare / "runs" / "fc2_run0" / "baselines.json").read_text())
    poly = saved["methods"]["polynomial_decay"]["details"]
    steps = [s["target_sparsity"] for s in poly["schedule"]]
    assert [s["epoch"] for s in poly["schedule"]] == [0, 5, 10, 15, 20]
    assert steps[-1] == pytest.approx(1 - saved["methods"]["weight"]["active_fraction"], abs=1e-3)
    assert steps == sorted(steps)


def _forbid(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("finished work was redone")

    monkeypatch.setattr(compare, "run_experiment", boom)
    monkeypatch.setattr(compare, "prepare_data", boom)
    monkeypatch.setattr(heads, "train_head", boom)  # where every head of a run trains
    monkeypatch.setattr(baselines, "run_baselines", boom)


def _copy(tiny_compare, tmp_path_factory, name):
    """A copy of the comparison beside it: the runs store their data path relative to their
    folder, so a copy at the same depth still finds the images."""
    out = tmp_path_factory.mktemp(name)
    shutil.copytree(tiny_compare, out, dirs_exist_ok=True)
    return out


def test_second_invocation_redoes_nothing(
    tiny_compare, faces_folder, feature_cache, tmp_path_factory, monkeypatch, capsys
):
    out = _copy(tiny_compare, tmp_path_factory, "again")
    before = (out / "summary.csv").read_text()
    _forbid(monkeypatch)
    capsys.readouterr()
    assert main(_args(faces_folder, out, feature_cache)) == 0
    assert (out / "summary.csv").read_text() == before
    assert "EvoPruneDeepTL" in capsys.readouterr().out


def test_only_missing_work_is_done(
    tiny_compare, faces_folder, feature_cache, tmp_path_factory, monkeypatch
):
    out = _copy(tiny_compare, tmp_path_factory, "partial")
    (out / "runs" / "fs_run1" / "baselines.json").unlink()
    (out / "summary.csv").unlink()
    calls = []
    real = baselines.run_baselines

    def counting(context, mask, *a, **k):
        calls.append(context.encoding.name)
        return real(context, mask, *a, **k)

    def no_search(*a, **k):
        raise AssertionError("a finished run was searched again")

    monkeypatch.setattr(baselines, "run_baselines", counting)
    monkeypatch.setattr(compare, "run_experiment", no_search)
    assert main(_args(faces_folder, out, feature_cache)) == 0
    assert calls == ["fs"]
    old = {
        (r["encoding"], r["method"], r["run"]): r["test_accuracy"] for r in _summary(tiny_compare)
    }
    new = {(r["encoding"], r["method"], r["run"]): r["test_accuracy"] for r in _summary(out)}
    assert new == old  # redone baselines are deterministic


def test_bad_encoding_list_is_refused(capsys):
    with pytest.raises(SystemExit):
        main(["compare", "--encodings", "fs,fc9"])
    assert "fc9" in capsys.readouterr().err


def _rows(diffs, base=0.8):
    rows = []
    for k, d in enumerate(diffs):
        rows.append({"encoding": "fs", "method": "evoprune", "run": k, "test_accuracy": base + d})
        for m in METHODS[1:]:
            rows.append({"encoding": "fs", "method": m, "run": k, "test_accuracy": base})
    return rows


def test_wilcoxon_with_five_runs_cannot_go_below_0_0625():
    stats = paired_stats(_rows([0.01, 0.02, 0.03, 0.04, 0.05]), ["fs"])
    s = stats[0]
    assert (s["n"], s["wins"], s["ties"], s["losses"]) == (5, 5, 0, 0)
    assert s["wilcoxon_p"] == pytest.approx(0.0625)
    assert s["min_possible_wilcoxon_p"] == pytest.approx(0.0625)
    assert s["ttest_p"] < 0.05  # the t-test can go lower, on its normality assumption
    assert s["mean_diff"] == pytest.approx(0.03)
    assert s["ci95_low"] < 0.03 < s["ci95_high"]
    ties = paired_stats(_rows([0.0, 0.0, 0.02, -0.01, 0.0]), ["fs"])[0]
    assert (ties["wins"], ties["ties"], ties["losses"]) == (1, 3, 1)
    assert ties["min_possible_wilcoxon_p"] == pytest.approx(0.5)
    assert paired_stats(_rows([0.0, 0.0]), ["fs"])[0]["wilcoxon_p"] == 1.0


def test_holm_adjustment():
    assert holm([0.01, 0.04, 0.03, float("nan")])[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert np.isnan(holm([0.01, float("nan")])[1])


def test_compare_puts_the_multiobjective_selected_head_beside_the_paper_ga(
    faces_folder, feature_cache, tmp_path
):
    out = tmp_path / "cmp"
    args = [
        "-q",
        "compare",
        "--data",
        str(faces_folder),
        "--encodings",
        "fs",
        "--algorithms",
        "ssga,nsga2",
        "--runs",
        "1",
        "--evaluations",
        "8",
        "--population",
        "4",
        "--hidden-size",
        "16",
        "--out",
        str(out),
        "--cache-dir",
        str(feature_cache),
        "--no-progress",
    ]
    assert main(args) == 0
    rows = _summary(out)
    assert {r["encoding"] for r in rows} == {"fs", "fs-nsga2"}
    mo = json.loads((out / "runs" / "fs-nsga2_run0" / "result.json").read_text())
    assert mo["algorithm"] == "nsga2" and mo["objectives"] == ["accuracy", "size"]
    evo = next(r for r in rows if r["encoding"] == "fs-nsga2" and r["method"] == "evoprune")
    assert float(evo["active_fraction"]) == mo["active_fraction"]
    # the baselines of the nsga2 run are sized like its selected head
    fixed = next(r for r in rows if r["encoding"] == "fs-nsga2" and r["method"] == "weight")
    assert abs(float(fixed["active_fraction"]) - mo["active_fraction"]) < 0.01
    assert "fs-nsga2 accuracy" in (out / "table.md").read_text()
    assert main(args[:6] + ["--algorithms", "sga"] + args[8:]) == 2


def test_identical_paired_differences_get_no_t_test_p():
    """Two runs 10 of 525 images below the baseline each: the differences are equal, but float
    rounding gave them a standard deviation of 8e-17 and a t-test p of 1.9e-15 (issue 20)."""
    rows = []
    for run, k in enumerate((300, 307)):
        rows.append({"encoding": "fs", "method": "evoprune", "run": run, "test_accuracy": k / 525})
        for m in METHODS[1:]:
            rows.append(
                {"encoding": "fs", "method": m, "run": run, "test_accuracy": (k + 10) / 525}
            )
    s = paired_stats(rows, ["fs"])[0]
    assert (s["wins"], s["ties"], s["losses"]) == (0, 0, 2)
    assert s["sd_diff"] == 0.0
    assert math.isnan(s["ttest_p"])  # printed as "–", like other rows without variance
    assert s["ci95_low"] == s["ci95_high"] == pytest.approx(-10 / 525)
    assert s["wilcoxon_p"] == pytest.approx(0.5)
