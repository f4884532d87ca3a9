"""Ranking baselines and accuracy-size curves: exactly k units, scores from the training data
only (a different test set never changes a choice), determinism per seed, and the curves'
files in a real comparison."""

import csv
import json

import numpy as np
import pytest

from evoprune.cli import main
from evoprune.compare import curves as cv
from evoprune.compare import rankings as rk
from evoprune.compare.baselines import kept_units, run_rankings
from evoprune.encodings import make_encoding
from evoprune.errors import ConfigError
from evoprune.runs.config import RunConfig
from evoprune.runs.context import RunContext
from evoprune.runs.store import hex_to_mask

N_FEATURES, HIDDEN, N_CLASSES = 20, 12, 3
CLASSES = [f"class{c}" for c in range(N_CLASSES)]
ENCODINGS = ["fs", "fc", "fc1", "fc2", "both"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _informative(features, n, seed, strength=2.5):
    """n rows of 20 noise features; ``features`` (one pair per class) carry the class."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % N_CLASSES
    X = rng.normal(size=(n, N_FEATURES)).astype(np.float32)
    X[:, features] += strength * np.eye(N_CLASSES)[y].repeat(2, axis=1)
    return X, y


@pytest.fixture(scope="module")
def data():
    """Training: features 0-5 carry the class. Two held-out sets: one like training, one
    (larger) where only features 10-15 carry it, which a ranking that saw it would pick."""
    X, y = _informative(slice(0, 6), 120, 0)
    X_same, y_same = _informative(slice(0, 6), 60, 1)
    X_other, y_other = _informative(slice(10, 16), 300, 2, strength=4.0)
    return X, y, (X_same, y_same), (X_other, y_other)


def _evolved(enc, fraction=0.3, seed=3):
    rng = np.random.default_rng(seed)
    m = np.zeros(enc.n_genes, dtype=np.uint8)
    m[rng.choice(enc.n_genes, int(round(fraction * enc.n_genes)), replace=False)] = 1
    return m


def _ranker(enc, data, test, seed=0):
    """The ranker of the training data, handed the held-out set as a comparison hands it."""
    return rk.Ranker(_context(enc, data[0], data[1], seed, held_out=test))


def _context(enc, X, y, seed=0, held_out=None):
    """The run context of a run of ``enc`` on (X, y), heads on the CPU."""
    cfg = RunConfig(encoding=enc.name, hidden_size=HIDDEN, seed=seed, device="cpu")
    return RunContext.of_arrays(cfg, X, y, CLASSES, held_out=held_out)


def _rank(enc, data, test, seed=0, methods=None):
    return run_rankings(_ranker(enc, data, test, seed), _evolved(enc), *test, methods=methods)


def test_each_encoding_gets_the_rankings_that_fit_its_units():
    names = {e: rk.rankings_for(make_encoding(e, N_FEATURES, HIDDEN)) for e in ENCODINGS}
    optional = tuple(m for m in ("mrmr", "lassonet") if rk.ranking_available(m))
    paper = {
        "inputs": (
            "mutual_info",
            "anova_f",
            "l1_logistic",
            "norm_retrained",
            "rfe",
            "relieff",
            *optional,
        ),
        "neurons": ("norm_retrained", "activation_variance"),
    }
    assert names["fs"] == rk.feature_rankings()
    for e in ENCODINGS:
        kind = "inputs" if e == "fs" else "neurons"
        # the paper's rankings, in order, and any other registered for that kind of unit only
        assert tuple(n for n in names[e] if n in paper[kind]) == paper[kind]
        assert all(kind in rk.RANKINGS[n].units for n in names[e])


@pytest.mark.parametrize("name", ENCODINGS)
def test_rankings_keep_exactly_the_evolved_units_per_layer_from_training_data_only(data, name):
    enc = make_encoding(name, N_FEATURES, HIDDEN)
    evolved = kept_units(enc, _evolved(enc))
    same = _rank(enc, data, data[2])
    other = _rank(enc, data, data[3])
    assert list(same) == list(rk.rankings_for(enc))
    for method, r in same.items():
        chrom = hex_to_mask(r.details["mask"], enc.n_genes)
        assert kept_units(enc, chrom) == evolved, method  # exactly k in each layer
        assert r.active_fraction == pytest.approx(chrom.mean())
        # another test set changes the score of the same head, never the choice of units
        assert other[method].details["mask"] == r.details["mask"], method
        assert r.details["seed"] == 0 and r.details["scored_on"] == "120 training images"
    assert any(other[m].test_accuracy != same[m].test_accuracy for m in same)


def test_feature_rankings_pick_the_features_informative_in_training(data):
    """The leaked test set makes features 10-15 the informative ones; the training data
    features 0-5. Rankings that saw the test set would pick from 10-15."""
    enc = make_encoding("fs", N_FEATURES, HIDDEN)
    mask = np.zeros(enc.n_genes, dtype=np.uint8)
    mask[:6] = 1
    X, y = data[0], data[1]
    for method, r in run_rankings(_ranker(enc, data, data[3]), mask, *data[3]).items():
        chosen = set(np.flatnonzero(hex_to_mask(r.details["mask"], enc.n_genes)))
        if method == "mrmr":  # features come in copies (0-1, 2-3, 4-5): it takes one of each
            assert all(chosen & {2 * c, 2 * c + 1} for c in range(3)), chosen
            assert not chosen & set(range(10, 16)), chosen
        elif method != "norm_retrained":  # a small head's norms barely rank (issue 14's table)
            assert chosen == set(range(6)), method
    # the filter scores are those of the training data, computed once
    ranker = rk.Ranker(_context(enc, X, y, seed=0))
    target = enc.prune_targets[0]
    expected = rk.filter_scores("mutual_info", X, y, seed=0)
    np.testing.assert_array_equal(ranker.scores("mutual_info", target), expected)


def test_l1_strength_is_chosen_on_the_fitness_split_and_recorded(data):
    enc = make_encoding("fs", N_FEATURES, HIDDEN)
    r = _rank(enc, data, data[2], methods=("l1_logistic",))["l1_logistic"]
    fitness = r.details["fitness_by_strength"]
    assert set(fitness) == {str(c) for c in rk.L1_STRENGTHS}
    best = max(rk.L1_STRENGTHS, key=lambda c: (fitness[str(c)], -c))
    assert r.details["strength"] == best
    assert not r.details["leaked_test_set"]


def test_rankings_are_deterministic_per_seed(data):
    enc = make_encoding("fs", N_FEATURES, HIDDEN)
    a, b = _rank(enc, data, data[2], seed=5), _rank(enc, data, data[2], seed=5)
    for m in a:
        assert a[m].details["mask"] == b[m].details["mask"]
        assert a[m].test_accuracy == b[m].test_accuracy
        assert a[m].details["seed"] == 5


def test_top_k_is_exact_with_ties_and_nan():
    assert np.flatnonzero(rk.top_k([1.0, np.nan, 1.0, 3.0, 1.0], 3)).tolist() == [0, 2, 3]
    assert rk.top_k([np.nan] * 4, 2).sum() == 2
    with pytest.raises(ConfigError, match="cannot keep 5 of 4"):
        rk.top_k(np.zeros(4), 5)


def test_select_features_is_the_python_entry_point(data):
    X, y = data[0], data[1]
    for method in rk.feature_rankings():
        mask = rk.select_features(X, y, 6, method, seed=0, hidden_size=HIDDEN)
        assert mask.dtype == bool and int(mask.sum()) == 6
    with pytest.raises(ConfigError, match="activation_variance.*does not apply"):
        rk.select_features(X, y, 6, "activation_variance")


def test_curve_points_cover_every_method_and_density(data):
    enc = make_encoding("fc1", N_FEATURES, HIDDEN)
    points = cv.curve_points(_ranker(enc, data, data[2]), *data[2], (0.25, 1.0))
    names = rk.rankings_for(enc) + ("narrow", "random")
    assert [(p["method"], p["density"]) for p in points] == [
        (m, d) for d in (0.25, 1.0) for m in names
    ]
    for p in points:
        assert p["active_genes"] == max(1, round(p["density"] * HIDDEN))
    full = {p["test_accuracy"] for p in points if p["density"] == 1.0}
    assert len(full) == 1  # every method keeps every unit: one head
    with pytest.raises(ConfigError, match="densities"):
        cv.check_densities([0.1, 0.1])
    with pytest.raises(ConfigError, match="densities"):
        cv.check_densities([0.0, 0.5])


def test_compare_with_curves_writes_csv_and_figure_and_resumes(
    faces_folder, feature_cache, tmp_path, monkeypatch
):
    out = tmp_path / "cmp"
    args = [
        "-q",
        "compare",
        "--data",
        str(faces_folder),
        "--encodings",
        "fs,fc2",
        "--algorithms",
        "ssga,nsga2",
        "--runs",
        "1",
        "--evaluations",
        "6",
        "--population",
        "4",
        "--hidden-size",
        "16",
        "--curves",
        "0.05,0.5,1",
        "--out",
        str(out),
        "--cache-dir",
        str(feature_cache),
        "--no-progress",
    ]
    assert main(args) == 0
    rows = list(csv.DictReader((out / "curves.csv").open()))
    assert list(rows[0]) == cv.CURVE_FIELDS
    got = {(r["encoding"], r["method"], r["density"]) for r in rows}
    expected = {
        (e, m, d)
        for e in ("fs", "fc2")
        for m in cv.curve_methods(make_encoding(e, 10, 16))
        for d in ("0.05", "0.5", "1.0")
    }
    assert got == expected and len(rows) == len(expected)
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((out / "curves" / "fs_run0.json").read_text())
    assert saved["settings"]["densities"] == [0.05, 0.5, 1.0]
    summary = list(csv.DictReader((out / "summary.csv").open()))
    fs_methods = {r["method"] for r in summary if r["encoding"] == "fs"}
    assert {"mutual_info", "anova_f", "l1_logistic", "norm_retrained"} <= fs_methods
    stats = list(csv.DictReader((out / "stats.csv").open()))
    assert ("fc2", "activation_variance") in {(s["encoding"], s["baseline"]) for s in stats}
    assert "Mutual information" in (out / "table.md").read_text()

    def boom(*a, **k):
        raise AssertionError("saved curves were computed again")

    monkeypatch.setattr(cv, "curve_points", boom)
    before = (out / "curves.csv").read_text()
    assert main(args) == 0
    assert (out / "curves.csv").read_text() == before
    # settings that change no result (threads, workers) reuse the saved curves too
    assert main(args + ["--threads-per-worker", "2"]) == 0


def _redundant(seed=0, n=150):
    """Feature 0 carries the class best, feature 1 is a noisy copy of feature 0, feature 2
    carries the class less well through an uncorrelated pattern of class means (-1, 0, 1)
    against (1, -2, 1); the rest is noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % N_CLASSES
    X = rng.normal(size=(n, N_FEATURES)).astype(np.float32)
    X[:, 0] += 3.0 * np.array([-1.0, 0.0, 1.0])[y]
    X[:, 1] = X[:, 0] + 0.3 * rng.normal(size=n)
    X[:, 2] += 1.0 * np.array([1.0, -2.0, 1.0])[y]
    return X, y


def test_mrmr_starts_with_the_most_relevant_feature_then_avoids_redundancy():
    pytest.importorskip("mrmrs")
    X, y = _redundant()
    first, second = rk.ranking_masks("mrmr", X, y, [1, 2], seed=0)
    f_order = np.argsort(-rk.filter_scores("anova_f", X, y))
    assert np.flatnonzero(first).tolist() == [f_order[0]] == [0]
    # ANOVA F takes the copy next; mRMR the independent feature (relevance over redundancy)
    assert f_order[1] == 1
    assert np.flatnonzero(second).tolist() == [0, 2]
    scores = rk.mrmr_scores(X, y)
    assert np.argsort(-scores)[:2].tolist() == [0, 2]


def test_relieff_finds_features_that_matter_only_together():
    """The class is the XOR of the signs of features 3 and 7: neither says anything alone, so
    ANOVA F cannot see them; ReliefF, comparing nearest neighbours, ranks them first."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 12)).astype(np.float32)
    y = ((X[:, 3] > 0) ^ (X[:, 7] > 0)).astype(np.int64)
    assert set(np.flatnonzero(rk.ranking_masks("relieff", X, y, 2, seed=0))) == {3, 7}
    assert set(np.flatnonzero(rk.ranking_masks("anova_f", X, y, 2, seed=0))) != {3, 7}


@pytest.mark.parametrize("case", ["balanced", "imbalanced", "iris"])
def test_relieff_weights_are_scikit_rebates(case):
    """evoprune's vectorised ReliefF gives scikit-rebate's weights (the reference
    implementation) on continuous features: two classes, balanced or 70/30, and iris's three
    (jittered, so that no two distances tie)."""
    from sklearn.datasets import load_iris, make_classification
    from skrebate import ReliefF

    if case == "iris":
        X, y = load_iris(return_X_y=True)
        X = X + np.random.default_rng(0).normal(scale=1e-6, size=X.shape)
    else:
        weights = None if case == "balanced" else [0.7, 0.3]
        X, y = make_classification(
            n_samples=150, n_features=12, n_informative=3, weights=weights, random_state=0
        )
    ours = rk.relieff_scores(X, y)
    reference = ReliefF(n_features_to_select=1, n_neighbors=10).fit(X, y).feature_importances_
    np.testing.assert_allclose(ours, reference, atol=1e-12)
    assert np.abs(ours).max() > 0.01


def test_relieff_holds_few_rows_of_distances_at_once(monkeypatch):
    """Split into chunks of rows, the distances give the same weights as in one piece; a class
    of fewer rows than neighbours asks for fewer."""
    import evoprune.unitscores as us

    rng = np.random.default_rng(2)
    X = rng.normal(size=(60, 8))
    y = np.r_[np.zeros(52), np.ones(8)].astype(int)
    whole = us.relieff_scores(X, y)
    np.testing.assert_allclose(us.relieff_scores(X, y, n_neighbors=7), whole, atol=1e-12)
    assert not np.allclose(us.relieff_scores(X, y, n_neighbors=5), whole)
    monkeypatch.setattr(us, "RELIEFF_CHUNK", 7)
    np.testing.assert_allclose(us.relieff_scores(X, y), whole, atol=1e-12)


def test_rfe_is_sklearns_elimination_on_a_standardised_linear_probe():
    """Every size from one shared elimination equals scikit-learn's RFE run for that size alone
    (40 features: steps of 2, so odd sizes end with a smaller step), asked in any order."""
    from sklearn.feature_selection import RFE
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    y = np.arange(150) % N_CLASSES
    X = rng.normal(size=(150, 40)).astype(np.float32)
    X[:, :6] += 1.5 * np.eye(N_CLASSES)[y].repeat(2, axis=1)
    X *= np.linspace(0.1, 10.0, 40, dtype=np.float32)  # scales that matter unstandardised
    Xs = (X - X.mean(axis=0)) / X.std(axis=0)
    sizes = [6, 3, 5, 17]
    masks = rk.ranking_masks("rfe", X, y, sizes, seed=0)
    for k, mask in zip(sizes, masks):
        probe = LogisticRegression(C=rk.RFE_C, max_iter=rk.RFE_MAX_ITER, random_state=0)
        expected = RFE(probe, n_features_to_select=k, step=rk.RFE_STEP).fit(Xs, y).support_
        assert mask.tolist() == expected.tolist() and int(mask.sum()) == k, k
    assert set(np.flatnonzero(masks[0])) == set(range(6))


def test_lassonet_path_keeps_the_informative_features(data):
    """Runs where the selection extra is installed (a path takes 15-30 s here)."""
    pytest.importorskip("lassonet")
    X, y = data[0], data[1]
    mask = rk.ranking_masks("lassonet", X, y, 6, seed=0)
    assert set(np.flatnonzero(mask)) == set(range(6))


def test_a_ranking_whose_library_is_missing_is_skipped_with_a_log_line(data, monkeypatch, caplog):
    real = rk.importlib.util.find_spec
    monkeypatch.setattr(
        rk.importlib.util, "find_spec", lambda name: None if name == "mrmrs" else real(name)
    )
    monkeypatch.setattr(rk, "_reported_missing", set())
    enc = make_encoding("fs", N_FEATURES, HIDDEN)
    with caplog.at_level("INFO", logger="evoprune.compare.rankings"):
        assert "mrmr" not in rk.rankings_for(enc)
        assert "mrmr" not in rk.rankings_for(enc)
    skipped = [r.getMessage() for r in caplog.records if "ranking mrmr" in r.getMessage()]
    assert skipped == [
        "ranking mrmr skipped: mrmrs not installed (pip install 'evoprune[selection]')"
    ]
    assert "mrmr" not in run_rankings(_ranker(enc, data, data[2]), _evolved(enc), *data[2])
    with pytest.raises(ConfigError, match=r"mrmr.*needs mrmrs.*evoprune\[selection\]"):
        rk.ranking_masks("mrmr", data[0], data[1], 3)
