"""EvoPruneClassifier: the scikit-learn contract, fitness splits, determinism, pipelines."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from evoprune import EvoPruneClassifier, ImageFeatures
from evoprune.encodings import make_encoding
from evoprune.errors import ConfigError
from evoprune.problem import HeadProblem, HeadTraining, make_folds
from evoprune.settings import FitnessSettings


def _data(n=240, d=24, seed=0):
    g = np.random.default_rng(seed)
    y = g.integers(0, 3, n)
    X = g.normal(size=(n, d)).astype(np.float32)
    X[:, :4] += 2.5 * np.eye(3)[y] @ g.normal(size=(3, 4))  # only 4 informative features
    return X, np.array(["cat", "dog", "owl"])[y]


def _small(**kw):
    return EvoPruneClassifier(hidden_size=16, population=6, evaluations=14, **kw)


def test_fit_predict_score_and_learned_attributes():
    X, y = _data()
    clf = _small(encoding="fs", random_state=2).fit(X[:180], y[:180])
    assert list(clf.classes_) == ["cat", "dog", "owl"] and clf.n_features_in_ == 24
    assert clf.best_mask_.shape == (24,) and set(np.unique(clf.best_mask_)) <= {0, 1}
    assert len(clf.history_) == 14 and clf.history_[-1]["index"] == 14
    assert "chromosome" not in clf.history_[0]
    proba = clf.predict_proba(X[180:])
    assert proba.shape == (60, 3) and np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    assert set(clf.predict(X[180:])) <= set(clf.classes_)
    assert clf.score(X[180:], y[180:]) > 0.6
    assert clf.head_.sizes[0] == clf.best_mask_.sum()  # unselected features removed


def test_same_seed_same_model_and_clone_refits_identically():
    X, y = _data()
    a = _small(encoding="fc", random_state=5).fit(X, y)
    b = clone(a).fit(X, y)
    assert (a.best_mask_ == b.best_mask_).all()
    assert [h["fitness"] for h in a.history_] == [h["fitness"] for h in b.history_]
    assert np.array_equal(a.predict_proba(X), b.predict_proba(X))


def test_the_same_mask_always_gets_the_same_fitness():
    X, y = _data()
    folds = make_folds(
        X, np.unique(y, return_inverse=True)[1], FitnessSettings(fitness_split="validation", seed=0)
    )
    problem = HeadProblem(make_encoding("fs", 24, 16), 3, folds, HeadTraining.of("fast", seed=0))
    chrom = (np.arange(24) % 3 == 0).astype(np.uint8)
    first = problem.accuracy(np.stack([chrom, chrom]))
    assert first[0] == first[1] == problem.accuracy(chrom[None])[0]


def test_cv_fitness_averages_folds_inside_training_data():
    X, y = _data()
    yi = np.unique(y, return_inverse=True)[1]
    folds = make_folds(X, yi, FitnessSettings(fitness_split="cv", seed=0, cv_folds=4))
    assert len(folds) == 4
    assert sum(len(f.y_score) for f in folds) == len(y)  # every sample validated once
    clf = _small(encoding="fs", fitness_split="cv", cv_folds=3, random_state=4).fit(X, y)
    # the best fitness is the mean accuracy of the best mask over the 3 folds, computed again
    # here, and above chance (1/3) by a margin (a short search with the fast trainer)
    cv = make_folds(X, yi, FitnessSettings(fitness_split="cv", seed=4, cv_folds=3))
    again = HeadProblem(make_encoding("fs", 24, 16), 3, cv, HeadTraining.of(clf.trainer, seed=4))
    assert again.accuracy(clf.best_mask_[None])[0] == pytest.approx(clf.best_fitness_)
    assert clf.best_fitness_ > 0.42


def test_eval_set_scores_fitness_on_it():
    """37 eval samples, while the default validation split of the 240 training samples would
    hold 47: a fitness measured on the validation split instead fails both checks."""
    X, y = _data(n=277)
    Xe, ye, Xf, yf = X[:37], y[:37], X[37:], y[37:]
    clf = _small(encoding="fs", random_state=3).fit(Xf, yf, eval_set=(Xe, ye))
    yi_f, yi_e = np.searchsorted(clf.classes_, yf), np.searchsorted(clf.classes_, ye)
    on_val = make_folds(Xf, yi_f, FitnessSettings(fitness_split="validation", seed=3))
    assert len(on_val[0].y_score) == 47  # stratified
    # an accuracy on 37 samples: a multiple of 1/37 (1/48 would not be, except 0 and 1) ...
    assert abs(clf.best_fitness_ * 37 - round(clf.best_fitness_ * 37)) < 1e-9
    assert 0 < clf.best_fitness_ < 1
    # ... and the one that the best mask's head scores on the eval set, computed again here
    on_eval = make_folds(
        Xf, yi_f, FitnessSettings(fitness_split="test", seed=3), eval_set=(Xe, yi_e)
    )
    again = HeadProblem(
        make_encoding("fs", 24, 16), 3, on_eval, HeadTraining.of(clf.trainer, seed=3)
    )
    assert again.accuracy(clf.best_mask_[None])[0] == pytest.approx(clf.best_fitness_)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(encoding="fc9"), "encoding"),
        (dict(trainer="slow"), "trainer"),
        (dict(fitness_split="holdout"), "fitness_split"),
    ],
)
def test_bad_parameters_are_named(kwargs, match):
    X, y = _data()
    with pytest.raises(ConfigError, match=match):
        EvoPruneClassifier(**kwargs).fit(X, y)


def test_single_class_and_shape_errors():
    X, y = _data()
    with pytest.raises(ConfigError, match="class"):
        _small().fit(X, np.zeros(len(X)))
    clf = _small().fit(X, y)
    with pytest.raises(
        ConfigError, match="X has 5 features, but EvoPruneClassifier is expecting 24 features"
    ):
        clf.predict(X[:, :5])


def test_pipeline_from_image_paths(faces_folder, feature_cache):
    paths = sorted(str(p) for p in faces_folder.rglob("*.png"))
    labels = np.array([p.split("/")[-2] for p in paths])
    g = np.random.default_rng(0)
    order = g.permutation(len(paths))
    train, test = order[:150], order[150:]
    model = Pipeline(
        [
            ("features", ImageFeatures("efficientnet-lite0", cache_dir=feature_cache)),
            (
                "head",
                EvoPruneClassifier(encoding="fs", population=6, evaluations=10, random_state=0),
            ),
        ]
    )
    model.fit([paths[i] for i in train], labels[train])
    assert model.score([paths[i] for i in test], labels[test]) > 0.8
    assert model.named_steps["head"].best_mask_.size == 1280


# --- one declaration, validated in one place --------------------------------------------------


def test_init_signature_is_the_declarations_estimator_subset():
    import inspect

    from evoprune.estimator import OUTPUT_PARAMS
    from evoprune.runs.config import estimator_defaults

    sig = inspect.signature(EvoPruneClassifier.__init__)
    params = {n: p.default for n, p in sig.parameters.items() if n != "self"}
    expected = {**estimator_defaults(), **OUTPUT_PARAMS}
    assert list(params) == list(expected)  # names and order
    assert params == expected  # defaults
    assert EvoPruneClassifier().get_params() == expected


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(population=1), r"--population 1 \(population=1\): must be at least 4"),
        (dict(random_state=-1), r"\(random_state=-1\): must be an integer in \[0, 4294967295\]"),
        (dict(random_state=2**64), r"random_state=18446744073709551616"),
        (dict(evaluations=0), r"evaluations=0"),
        (dict(population=10, evaluations=5), r"must be at least population=10"),
        (dict(mutation_prob=2.0), r"mutation_prob=2.0\): must be within \[0, 1\]"),
        (dict(init="1.5"), r"init='1.5'"),
        (dict(val_fraction=1.0), r"val_fraction=1.0"),
        (dict(cv_folds=1), r"cv_folds=1"),
        (dict(hidden_size=0), r"hidden_size=0"),
        (dict(objectives="size"), r"must include accuracy"),
        (dict(objectives=("accuracy", "size"), algorithm="ssga"), r"algorithm='ssga'"),
        (dict(select="knee"), r"needs more than one objective"),
        (dict(ood_score="logit"), r"ood_score='logit'"),
    ],
)
def test_every_parameter_is_checked_before_any_work(kwargs, match, monkeypatch):
    import evoprune.estimator as est

    def no_search(*a, **k):
        raise AssertionError("the search started before the parameters were checked")

    monkeypatch.setattr(est, "evolve", no_search)
    X, y = _data(n=30)
    with pytest.raises(ConfigError, match=match):
        EvoPruneClassifier(**kwargs).fit(X, y)


def test_test_fitness_split_needs_eval_set():
    X, y = _data(n=30)
    with pytest.raises(ConfigError, match="eval_set"):
        _small(fitness_split="test").fit(X, y)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_features_are_refused_in_fit_and_predict(bad):
    X, y = _data(n=60)
    Xb = X.copy()
    Xb[7, 3] = bad
    with pytest.raises(ConfigError, match=r"NaN or infinite .* the first \[7\]"):
        _small().fit(Xb, y)
    clf = EvoPruneClassifier(hidden_size=8, population=4, evaluations=4).fit(X, y)
    with pytest.raises(ConfigError, match="NaN or infinite"):
        clf.predict(Xb)
    with pytest.raises(ConfigError, match="eval_set's X contains NaN"):
        EvoPruneClassifier(hidden_size=8, population=4, evaluations=4).fit(X, y, eval_set=(Xb, y))


def test_eval_set_with_other_feature_count_names_the_expected_count():
    X, y = _data(n=60)
    with pytest.raises(ConfigError, match="eval_set's X has 5 features.*expecting 24"):
        _small().fit(X, y, eval_set=(X[:, :5], y))


# --- scikit-learn's estimator contract ----------------------------------------------------------


def _tiny():
    # hidden_size 32: check_classifiers_train wants > 83 % training accuracy on 2-d blobs
    return EvoPruneClassifier(hidden_size=32, population=4, evaluations=6)


#: The checks that failed before (not fitted, n_features_in_, empty data, NaN/inf, sparse input,
#: 2-d y, 1-d X, requires y) and the parameter contract: fast enough for every test run.
FAST_CHECKS = [
    "check_estimators_unfitted",
    "check_n_features_in_after_fitting",
    "check_estimators_empty_data_messages",
    "check_estimators_nan_inf",
    "check_estimator_sparse_array",
    "check_estimator_sparse_matrix",
    "check_supervised_y_2d",
    "check_fit1d",
    "check_requires_y_none",
    "check_fit2d_predict1d",
    "check_parameters_default_constructible",
    "check_get_params_invariance",
    "check_set_params",
    "check_no_attributes_set_in_init",
    "check_classifiers_one_label",
]


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("check", FAST_CHECKS)
def test_sklearn_check(check):
    import sklearn.utils.estimator_checks as checks

    getattr(checks, check)("EvoPruneClassifier", _tiny())


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")
def test_check_estimator_passes_every_check():
    from sklearn.utils.estimator_checks import check_estimator

    results = check_estimator(_tiny(), on_fail=None)
    failed = {
        r["check_name"]: repr(r["exception"])[:300] for r in results if r["status"] == "failed"
    }
    assert len(results) >= 50 and not failed
