"""Fidelities: masks scored by a shared head (a forward pass), promoted by successive halving to
full training; memory keyed by (chromosome, fidelity); budgets counted per kind; every history
row says what scored it."""

import csv
from collections import Counter

import numpy as np
import pytest
from sklearn.datasets import load_digits

from evoprune.encodings import make_encoding
from evoprune.errors import ConfigError
from evoprune.estimator import EvoPruneClassifier
from evoprune.model.shared import SharedRecipe, train_shared_head
from evoprune.problem import HeadProblem, HeadTraining, make_folds
from evoprune.runs.config import RunConfig
from evoprune.runs.store import (
    history_fields,
    known_evaluations,
    read_history,
    write_history,
)
from evoprune.search import Evaluation, Evaluator, make_algorithm, run_search
from evoprune.search.fidelity import (
    FOLD,
    FULL,
    SHARED,
    promotion_order,
    run_fidelity_search,
    rung_sizes,
)
from evoprune.settings import FitnessSettings, SearchSettings

pytestmark = pytest.mark.usefixtures("one_torch_thread")

QUICK = SharedRecipe(epochs=6, average_from=4)


def _digits(n=300):
    d = load_digits()
    return d.data[:n].astype(np.float32), d.target[:n]


def _numpy_masked_logits(head, encoding, chromosome, X, rescale):
    """The dense head's logits with the mask's units zeroed (and the kept ones rescaled),
    written out in numpy from the head's weights: the independent computation."""
    W = [layer.weight.detach().numpy().astype(np.float64) for layer in head.linears]
    b = [layer.bias.detach().numpy().astype(np.float64) for layer in head.linears]
    x = (X - head.shift.numpy()) * head.scale.numpy()
    masks = encoding.decode(chromosome)
    factors = {}
    gates = {0: masks.features.astype(float)}
    for i, m in enumerate(masks.hidden):
        gates[i + 1] = m.astype(float)
    for j, g in gates.items():
        factors[j] = g * (g.size / max(g.sum(), 1.0) if rescale and g.sum() < g.size else 1.0)
    for j in range(len(W)):
        x = (x * factors[j]) @ W[j].T + b[j]
        if j < len(W) - 1:
            x = np.maximum(x, 0.0)
    return x


@pytest.mark.parametrize("name", ["fs", "fc1", "both"])
@pytest.mark.parametrize("rescale, score", [(False, "probability"), (True, "accuracy")])
def test_shared_score_equals_a_masked_forward_pass_of_the_shared_head(name, rescale, score):
    X, y = _digits()
    folds = make_folds(X, y, FitnessSettings(fitness_split="validation", seed=0))
    enc = make_encoding(name, X.shape[1], 24, 10)
    recipe = SharedRecipe(epochs=6, average_from=4, rescale=rescale, score=score)
    problem = HeadProblem(enc, 10, folds, HeadTraining.of("fast", seed=3), shared_recipe=recipe)
    rng = np.random.default_rng(1)
    chroms = (rng.random((7, enc.n_genes)) < rng.uniform(0.05, 1, (7, 1))).astype(np.uint8)
    chroms[0] = 1  # the dense head itself
    scores = problem.evaluate_at(chroms, SHARED)
    head = problem.shared_heads()[0]
    f = folds[0]
    for c, ev in zip(chroms, scores):
        logits = _numpy_masked_logits(head, enc, c, f.X_score, rescale)
        if score == "accuracy":
            want = (logits.argmax(1) == f.y_score).mean()
            assert ev.accuracy == pytest.approx(want, abs=1e-12)
        else:
            p = np.exp(logits - logits.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            want = p[np.arange(len(f.y_score)), f.y_score].mean()
            assert ev.accuracy == pytest.approx(want, abs=1e-5)
    # the shared head is trained once, and from the run's seed
    again = train_shared_head(f.X_fit, f.y_fit, enc, 10, seed=3, stats=f.stats, recipe=recipe)
    assert all(
        np.array_equal(a.detach().numpy(), b.detach().numpy())
        for a, b in zip(head.parameters(), again.parameters())
    )
    assert problem.shared_heads()[0] is head


def test_shared_scores_follow_density_on_real_images():
    """The shared head is trained at every density: it ranks a few features below many."""
    X, y = _digits(500)
    folds = make_folds(X, y, FitnessSettings(fitness_split="validation", seed=0))
    enc = make_encoding("fs", X.shape[1], 32, 10)
    problem = HeadProblem(enc, 10, folds, HeadTraining.of("fast", seed=0), shared_recipe=QUICK)
    rng = np.random.default_rng(0)
    sparse = np.zeros((5, 64), np.uint8)
    for row in sparse:
        row[rng.choice(64, 2, replace=False)] = 1
    dense = np.ones((5, 64), np.uint8)
    dense[np.arange(5), rng.choice(64, 5)] = 0
    acc = [e.accuracy for e in problem.evaluate_at(np.vstack([sparse, dense]), SHARED)]
    assert max(acc[:5]) < min(acc[5:])


class Counted:
    """A problem with all three fidelities whose scores tell them apart: full = k/L, fold =
    k/L - 0.01, shared = k/L + noise; it counts what it was asked at each level."""

    objectives = ("accuracy",)
    n_obj = 1
    n_genes = 32
    fidelities = (SHARED, FOLD, FULL)

    def __init__(self):
        self.asked = Counter()

    def _ev(self, c, shift):
        acc = float(c.mean()) + shift
        return Evaluation(F=np.array([1 - acc]), accuracy=acc)

    def evaluate(self, chromosomes):
        self.asked[FULL] += len(chromosomes)
        return [self._ev(c, 0.0) for c in chromosomes]

    def evaluate_at(self, chromosomes, fidelity):
        if fidelity == FULL:
            return self.evaluate(chromosomes)
        self.asked[fidelity] += len(chromosomes)
        if fidelity == FOLD:
            return [self._ev(c, -0.01) for c in chromosomes]
        return [self._ev(c, 0.001 * (int(np.packbits(c)[0]) % 7)) for c in chromosomes]


def test_memory_is_keyed_by_chromosome_and_fidelity_and_budgets_are_separate():
    problem = Counted()
    ev = Evaluator(problem, 2, shared_budget=3)
    c = np.zeros((1, 32), np.uint8)
    c[0, :4] = 1
    ev.evaluate(c, 0, fidelity=SHARED)
    ev.evaluate(c, 0, fidelity=SHARED)  # a repeat at the same fidelity: memory
    ev.evaluate(c, 0, fidelity=FULL)  # the same mask trained: a new row
    assert problem.asked == {SHARED: 1, FULL: 1}
    assert [r.fidelity for r in ev.history] == [SHARED, FULL]
    assert ev.hits == 1
    assert ev.used == {SHARED: 1, FULL: 1}
    more = np.eye(32, dtype=np.uint8)[:4]
    F = ev.evaluate(more, 1, fidelity=SHARED)  # 2 of 3 shared evaluations left
    assert np.isnan(F[2:]).all() and not np.isnan(F[:2]).any()
    ev.evaluate(more, 1, fidelity=FOLD)  # a one-fold rung spends the full budget: 1 left
    assert ev.used == {SHARED: 3, FULL: 2}
    assert [r.fidelity for r in ev.history] == [SHARED, FULL, SHARED, SHARED, FOLD]
    ev.fidelity = SHARED
    assert ev.exhausted


def test_rungs_halve_within_the_budget():
    assert rung_sizes(200, 1, 5000) == [200]
    assert rung_sizes(200, 2, 5000) == [150, 50]
    assert rung_sizes(200, 2, 40) == [40, 40]  # budget left over: every candidate goes on
    assert rung_sizes(30, 3, 1000) == [20, 7, 3]
    for budget in range(1, 60):
        for rungs in (1, 2, 3):
            sizes = rung_sizes(budget, rungs, 1000)
            assert sum(sizes) <= budget
            assert sizes == sorted(sizes, reverse=True) or sizes[0] == 0
            assert len(sizes) == rungs and sizes[-1] >= 1
    assert list(promotion_order(np.array([[0.3], [0.1], [0.1]]), np.array([1, 5, 2]))) == [2, 1, 0]


def test_multi_promotes_the_best_shared_masks_and_rests_on_full_scores():
    problem = Counted()
    ev = Evaluator(problem, 12, shared_budget=60)
    algo = make_algorithm(
        "ssga",
        SearchSettings(population=8, evaluations=12, mutation_prob=0.2, init="random", seed=0),
    )
    result = run_fidelity_search(algo, ev, "multi", run_search)
    assert problem.asked == {SHARED: 60, FOLD: 9, FULL: 3}
    assert result.evaluations == 12 and result.shared_evaluations == 60
    shared = [r for r in result.history if r.fidelity == SHARED]
    fold = [r for r in result.history if r.fidelity == FOLD]
    full = [r for r in result.history if r.fidelity == FULL]
    # the first rung takes the 9 best shared masks, the second the 3 best of those
    best_shared = sorted(shared, key=lambda r: (-r.fitness, r.active_genes))[:9]
    assert {r.mask().tobytes() for r in fold} == {r.mask().tobytes() for r in best_shared}
    best_fold = sorted(fold, key=lambda r: (-r.fitness, r.active_genes))[:3]
    assert {r.mask().tobytes() for r in full} == {r.mask().tobytes() for r in best_fold}
    # the result is the best full-scored mask, with its full score
    assert result.fidelity == FULL
    top = max(full, key=lambda r: (r.fitness, -r.active_genes))
    assert result.best_fitness == top.fitness
    assert np.array_equal(result.best, top.mask())
    assert [result.history[i] for i in result.rows()] == full


def test_history_records_fidelity_and_resume_retraces_a_multi_search(tmp_path):
    problem = Counted()
    algo = make_algorithm(
        "ssga",
        SearchSettings(population=6, evaluations=9, mutation_prob=0.2, init="random", seed=1),
    )
    first = run_fidelity_search(algo, Evaluator(problem, 9, shared_budget=40), "multi", run_search)
    path = tmp_path / "history.csv"
    write_history(path, first.history)
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["fidelity"] for r in rows] == [r.fidelity for r in first.history]
    records = read_history(path, 32)
    assert [r.fidelity for r in records] == [r.fidelity for r in first.history]
    again = Counted()
    algo = make_algorithm(
        "ssga",
        SearchSettings(population=6, evaluations=9, mutation_prob=0.2, init="random", seed=1),
    )
    evaluator = Evaluator(
        again, 9, shared_budget=40, known=known_evaluations(records, ["accuracy"])
    )
    resumed = run_fidelity_search(algo, evaluator, "multi", run_search)
    assert sum(again.asked.values()) == 0  # nothing scored again
    assert [(r.mask().tobytes(), r.fidelity, r.fitness) for r in resumed.history] == [
        (r.mask().tobytes(), r.fidelity, r.fitness) for r in first.history
    ]


def test_an_old_history_without_fidelity_reads_as_full(tmp_path):
    path = tmp_path / "history.csv"
    fields = [f for f in history_fields() if f != "fidelity"]
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerow(
            {
                "index": 1,
                "iteration": 0,
                "fitness": 0.5,
                "active_genes": 1,
                "active_fraction": 0.125,
                "best_fitness": 0.5,
                "best_active_fraction": 0.125,
                "mask": "80",
            }
        )
    (rec,) = read_history(path, 8)
    assert rec.fidelity == FULL
    assert list(known_evaluations([rec], ["accuracy"])) == [(rec.mask().tobytes(), FULL)]


@pytest.mark.parametrize(
    "settings, match",
    [
        ({"fidelity": "medium"}, "--fidelity medium.*choose one of full, shared, multi"),
        ({"fidelity": "shared", "encoding": "edges-fc"}, "--fidelity shared.*whole units"),
        ({"shared_evaluations": 100}, "--shared-evaluations 100.*--fidelity shared or multi"),
        (
            {"fidelity": "multi", "shared_evaluations": 10},
            "--shared-evaluations 10.*at least population=30",
        ),
        ({"fidelity": "shared", "asynchronous": True}, "--async.*drop --async"),
        ({"final_check": "holdout"}, "--final-check holdout.*none, cv"),
        ({"final_check_folds": 1}, "--final-check-folds 1.*at least 2"),
        ({"final_check_top": 0}, "--final-check-top 0.*at least 1"),
        ({"sizes": "0.05,2"}, r"--sizes 0.05,2.*2 is not a fraction of the units in \(0, 1\]"),
        ({"sizes": "tiny"}, "--sizes tiny.*'tiny' is not a number"),
    ],
)
def test_bad_fidelity_settings_get_one_clear_message(settings, match):
    with pytest.raises(ConfigError, match=match):
        RunConfig(**settings).validate()


def test_fidelity_defaults_resolve():
    full = RunConfig().validate()
    assert (full.fidelity, full.shared_evaluations, full.final_check) == ("full", None, "none")
    multi = RunConfig(fidelity="multi", evaluations=50).validate()
    assert (multi.shared_evaluations, multi.final_check) == (1000, "cv-prob")


@pytest.mark.parametrize("objectives", ["accuracy", "accuracy,size"])
def test_estimator_searches_at_multi_fidelity(objectives):
    X, y = _digits(300)
    clf = EvoPruneClassifier(
        hidden_size=16,
        population=6,
        evaluations=8,
        shared_evaluations=40,
        fidelity="multi",
        objectives=objectives,
        final_check="none",
    ).fit(X, y)
    fid = Counter(r["fidelity"] for r in clf.history_)
    assert fid == {SHARED: 40, FULL: 8}
    full_masks = {bytes(r.mask().tobytes()) for r in clf.search_.history if r.fidelity == FULL}
    assert clf.best_mask_.tobytes() in full_masks  # the shipped mask was trained, not guessed


# --- the final check: the shipped head chosen from candidates re-scored by cross-validation ---


def _independent_cv(X, y, mask, enc, seed, k):
    """Mean accuracy over the k folds of (X, y) split from seed + 1, each head trained alone."""
    from evoprune.model.head import accuracy, train_head

    accs = []
    for f in make_folds(X, y, FitnessSettings(fitness_split="cv", seed=seed + 1, cv_folds=k)):
        head = train_head(
            f.X_fit, f.y_fit, enc.decode(mask), 10, "fast", seed=seed, stats=f.stats
        ).head
        accs.append(accuracy(head, f.X_score, f.y_score))
    return float(np.mean(accs))


def test_final_check_ships_the_best_cross_validated_candidate():
    X, y = _digits(300)
    clf = EvoPruneClassifier(
        hidden_size=16,
        population=6,
        evaluations=8,
        shared_evaluations=60,
        fidelity="shared",
        final_check="cv",
        final_check_folds=3,
        final_check_top=4,
        random_state=2,
    ).fit(X, y)
    from evoprune.runs.front import _best_rows

    search = clf.search_
    candidates = _best_rows(search, 4)
    assert all(search.history[i].fidelity == SHARED for i in candidates)
    enc = clf.encoding_
    cv = [_independent_cv(X, y, search.history[i].mask(), enc, 2, 3) for i in candidates]
    n_fold = len(y) / 3
    best = int(np.argmax(cv))
    assert clf.check_accuracy_ == pytest.approx(cv[best], abs=1.5 / n_fold)
    # ties within a head's rounding aside, the shipped mask is the best cross-validated one
    near = [
        search.history[i].mask().tobytes()
        for i, c in zip(candidates, cv)
        if c >= cv[best] - 1.5 / n_fold
    ]
    assert clf.best_mask_.tobytes() in near
    assert clf.best_fitness_ == pytest.approx(
        next(r.fitness for r in search.history if r.mask().tobytes() == clf.best_mask_.tobytes())
    )


def test_final_check_front_is_non_dominated_in_cross_validated_accuracy():
    X, y = _digits(300)
    clf = EvoPruneClassifier(
        hidden_size=16,
        population=8,
        evaluations=8,
        shared_evaluations=80,
        fidelity="shared",
        objectives="accuracy,size",
        final_check="cv",
        final_check_folds=3,
        final_check_top=5,
    ).fit(X, y)
    p = clf.pareto_
    assert 1 <= len(p["check_accuracy"]) <= 5
    from evoprune.pareto import non_dominated
    from evoprune.runs.front import tie_broken

    score = tie_broken(p["check_accuracy"], p["check_probability"])
    assert non_dominated(np.column_stack([1 - score, p["active_fraction"]])).all()
    assert list(p["active_fraction"]) == sorted(p["active_fraction"])
    assert np.array_equal(clf.best_mask_, p["mask"][p["selected"]][0])


def test_a_multi_fidelity_run_records_fidelity_and_selection_bias(
    faces_folder, feature_cache, tmp_path
):
    from evoprune.runs.experiment import run_experiment
    from evoprune.runs.store import open_run

    cfg = RunConfig(
        data=str(faces_folder),
        encoding="fs",
        population=6,
        evaluations=10,
        shared_evaluations=60,
        fidelity="multi",
        objectives="accuracy,size",
        final_check_folds=3,
        final_check_top=4,
        seed=1,
    )
    result = run_experiment(cfg, tmp_path / "run", progress=False, cache_dir=feature_cache)
    assert (result["fidelity"], result["final_check"]) == ("multi", "cv-prob")
    assert result["shared_evaluations"] == 60 and result["evaluations"] == 10
    assert result["selection_bias"] == pytest.approx(result["fitness"] - result["test_accuracy"])
    assert result["check_selection_bias"] == pytest.approx(
        result["check_accuracy"] - result["test_accuracy"]
    )
    run = open_run(tmp_path / "run")
    history = read_history(tmp_path / "run" / "history.csv", result["genes"])
    assert Counter(r.fidelity for r in history) == {SHARED: 60, FULL: 10}
    full = {r.mask().tobytes(): r.fitness for r in history if r.fidelity == FULL}
    with (tmp_path / "run" / "pareto.csv").open() as fh:
        front = list(csv.DictReader(fh))
    for row in front:  # the front was trained at full fidelity and re-scored
        mask = np.unpackbits(np.frombuffer(bytes.fromhex(row["mask"]), np.uint8))
        assert full[mask[: result["genes"]].tobytes()] == pytest.approx(float(row["fitness"]))
        assert row["check_accuracy"]
    assert run.result.check_accuracy == result["check_accuracy"]
    # what the check took off the search's own masks, recorded and read back (None when no
    # candidate was a ranking's top-k, else never below zero)
    assert "check_leak" in result and run.result.check_leak == result["check_leak"]
    assert result["check_leak"] is None or result["check_leak"] >= 0


def test_recorded_hypervolume_equals_that_of_every_row_so_far():
    """The evaluator keeps only the non-dominated rows for the hypervolume (thousands of
    shared rows); each record's value equals the hypervolume of all rows up to it."""
    from evoprune.pareto import hypervolume

    class Bumpy:
        objectives = ("accuracy", "size")
        n_obj = 2
        n_genes = 40

        def evaluate(self, chromosomes):
            out = []
            for c in chromosomes:
                acc = 0.5 * c[:20].mean() + 0.3 * np.sin(c[::3].sum()) ** 2
                out.append(Evaluation(F=np.array([1 - acc, c.mean()]), accuracy=float(acc)))
            return out

    algo = make_algorithm(
        "nsga2",
        SearchSettings(population=10, evaluations=150, mutation_prob=0.1, init="random", seed=4),
    )
    result = run_search(algo, Evaluator(Bumpy(), 150))
    for i, rec in enumerate(result.history):
        assert rec.hypervolume == hypervolume(result.F[: i + 1])


def test_the_command_line_runs_a_shared_search(faces_folder, feature_cache, tmp_path, capsys):
    from evoprune.cli import main

    out = tmp_path / "run"
    argv = ["run", "--data", str(faces_folder), "--out", str(out), "--cache-dir"]
    argv += [str(feature_cache), "--population", "6", "--evaluations", "6"]
    argv += ["--fidelity", "shared", "--shared-evaluations", "40", "--final-check-folds", "3"]
    assert main([*argv, "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "fidelity shared" in printed and "40 shared" in printed
    assert "selection bias" in printed and "cross-validated accuracy" in printed
    history = read_history(out / "history.csv", 1280)
    assert {r.fidelity for r in history} == {SHARED} and len(history) == 40


def test_bad_fidelity_options_stop_the_command_line_before_any_work(faces_folder, tmp_path, caplog):
    from evoprune.cli import main

    out = tmp_path / "run"
    argv = ["run", "--data", str(faces_folder), "--out", str(out), "--encoding", "edges"]
    assert main([*argv, "--layer", "fc", "--fidelity", "multi"]) == 2
    assert "whole units" in caplog.text and not out.exists()
