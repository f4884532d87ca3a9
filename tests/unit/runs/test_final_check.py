"""The final check scores a ranking's top-k as the ranking made again inside each fold, and the
search's own masks less what that took off (runs.front.mask_check_scores)."""

import numpy as np
import pytest

from evoprune.encodings import make_encoding
from evoprune.problem import HeadProblem, HeadTraining, make_folds
from evoprune.runs.front import mask_check_scores, ranking_procedures
from evoprune.search.guided import top_k
from evoprune.settings import FitnessSettings, SearchSettings
from evoprune.unitscores import search_rankings


def _noise(n=60, d=400, seed=0):
    """Features that say nothing of the labels: any accuracy above chance is a leak."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype(np.float32), np.tile([0, 1], n // 2)


def _problem(X, y, enc):
    folds = make_folds(X, y, FitnessSettings(fitness_split="validation", seed=0))
    return HeadProblem(enc, 2, folds, HeadTraining(seed=0))


def test_ranking_procedures_name_the_ranking_whose_top_k_a_mask_is():
    rankings = {"a": np.array([0.9, 0.8, 0.1, 0.2]), "b": np.array([0.1, 0.2, 0.9, 0.8])}
    chroms = np.array([[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 1, 0], [0, 0, 1, 0]], dtype=np.uint8)
    assert ranking_procedures(chroms, rankings) == ["a", "b", None, "b"]
    assert ranking_procedures(chroms, None) == [None] * 4


def test_a_rankings_top_k_is_scored_as_the_ranking_made_again_inside_each_fold():
    X, y = _noise()
    enc = make_encoding("fs", X.shape[1], 8, 2)
    problem = _problem(X, y, enc)
    cfg = SearchSettings(seed=3, final_check_folds=3)
    # the rankings of every training image: what the check's folds then score on
    rankings = search_rankings(enc, X, y, 2, seed=0)
    own = np.zeros(enc.n_genes, dtype=np.uint8)
    own[[5, 50, 100, 150, 200]] = 1
    chroms = np.stack([top_k(rankings["anova_f"], 5).astype(np.uint8), own])
    got = mask_check_scores(cfg, problem, X, y, chroms, rankings=rankings)
    assert got.procedures == ["anova_f", None]

    # by hand: the check's folds (seed + 1), the ranking on each fitting part, its top 5
    folds = make_folds(X, y, FitnessSettings(fitness_split="cv", seed=4, cv_folds=3))
    check = HeadProblem(enc, 2, folds, problem.training)
    fixed, again = [], []
    for k, f in enumerate(folds):
        made = search_rankings(enc, f.X_fit, f.y_fit, 2, seed=0)["anova_f"]
        again.append(check.evaluate_fold(top_k(made, 5).astype(np.uint8), k).accuracy)
        fixed.append([s.accuracy for s in check.evaluate_fold_batch(chroms, k)])
    fixed_mean = np.mean(fixed, axis=0)
    assert got.accuracy[0] == pytest.approx(np.mean(again))
    leak = max(0.0, fixed_mean[0] - np.mean(again))
    assert got.leak is not None and got.leak[0] == pytest.approx(leak)
    assert got.accuracy[1] == pytest.approx(max(0.0, fixed_mean[1] - leak))
    # the leak is real on labels the features know nothing of: the top 5 of every image
    # score well above chance on those images, the ranking made again does not
    assert fixed_mean[0] - np.mean(again) > 0.1
    assert np.mean(again) < 0.65


def test_without_rankings_every_mask_is_scored_as_it_is():
    X, y = _noise(seed=1)
    enc = make_encoding("fs", X.shape[1], 8, 2)
    chroms = np.eye(enc.n_genes, dtype=np.uint8)[:2]
    cfg = SearchSettings(seed=0, final_check_folds=3)
    plain = mask_check_scores(cfg, _problem(X, y, enc), X, y, chroms)
    assert plain.procedures == [None, None] and plain.leak is None
    # rankings none of the masks is a top-k of change nothing
    far = {"r": np.linspace(0, 1, enc.n_genes)}  # its top-1 is the last gene
    same = mask_check_scores(cfg, _problem(X, y, enc), X, y, chroms, rankings=far)
    assert np.array_equal(same.accuracy, plain.accuracy) and same.leak is None
