"""The search's knowledge of units: a start on the rankings' curve (``init="ranked"``), variation
guided by per-unit scores (``variation="guided"``), and scores that see only the fitness split's
training part."""

import numpy as np
import pytest

from evoprune.errors import ConfigError
from evoprune.search import SteadyStateGA, make_algorithm
from evoprune.search.evaluator import Evaluation, Evaluator, run_search
from evoprune.search.guided import (
    UnitScores,
    exact_sizes,
    guided_flip,
    guided_swap,
    guided_variation,
    log_uniform_sizes,
    percentile_ranks,
    prior_scores,
    ranked_population,
    top_k,
)
from evoprune.settings import SearchSettings


def _rankings(n_genes=300, seed=0):
    rng = np.random.default_rng(seed)
    return {name: rng.normal(size=n_genes) for name in ("a", "b", "c")}


def test_ranked_masks_have_exactly_the_sizes_drawn_and_are_the_rankings_top_k():
    rankings = _rankings()
    rng = np.random.default_rng(7)
    pop, drawn = ranked_population(rng, 30, 300, rankings, (0.0, 1.0))
    # the sizes are the first thing the generator draws: the same draws from a twin
    sizes = log_uniform_sizes(np.random.default_rng(7), 15, 300)
    assert [k for _, k in drawn] == sizes.tolist()
    assert pop.shape == (30, 300) and pop.dtype == np.uint8
    for row, (name, k) in zip(pop, drawn):
        assert row.sum() == k
        assert np.array_equal(row.astype(bool), top_k(rankings[name], k))
    # the rankings are taken in turn, and the sizes cover 1 unit to most of them
    assert [name for name, _ in drawn[:3]] == ["a", "b", "c"]
    assert sizes.min() <= 2 and sizes.max() >= 200
    assert np.all(np.diff(sizes) >= 0)
    # the other half: the paper's density-sampled masks (none empty)
    assert np.all(pop[15:].sum(axis=1) >= 1)


def test_asked_sizes_start_with_every_rankings_top_k_at_exactly_those_sizes():
    rankings = _rankings()
    pop, drawn = ranked_population(
        np.random.default_rng(7), 30, 300, rankings, (0.0, 1.0), sizes=(0.1, 0.02, 0.05)
    )
    assert exact_sizes((0.1, 0.02, 0.05), 300) == [6, 15, 30]
    # first every ranking at each size, the smallest first, each exactly its top-k
    assert drawn[:9] == [(n, k) for k in (6, 15, 30) for n in ("a", "b", "c")]
    for row, (name, k) in zip(pop[:9], drawn[:9]):
        assert row.sum() == k and np.array_equal(row.astype(bool), top_k(rankings[name], k))
    # they count toward the 15 ranked rows: 6 more at drawn sizes, then the paper's masks
    assert len(drawn) == 15 and pop.shape == (30, 300)
    without, _ = ranked_population(np.random.default_rng(7), 30, 300, rankings, (0.0, 1.0))
    again, _ = ranked_population(np.random.default_rng(7), 30, 300, rankings, sizes=())
    assert np.array_equal(without, again)  # no sizes: the start as before


def test_more_asked_masks_than_the_population_fill_it_without_repeats():
    pop, drawn = ranked_population(
        np.random.default_rng(0), 4, 50, _rankings(50), sizes=(0.1, 0.2, 0.5)
    )
    assert len(pop) == 4 and [k for _, k in drawn] == [5, 5, 5, 10]
    assert len({row.tobytes() for row in pop}) == 4


def test_log_uniform_sizes_put_as_many_masks_below_a_tenth_as_above():
    sizes = log_uniform_sizes(np.random.default_rng(0), 400, 10_000)
    # log-uniform over [1, 10^4]: a quarter below 10, a quarter above 1000
    assert 80 <= np.sum(sizes < 10) <= 120
    assert 80 <= np.sum(sizes > 1000) <= 120


def test_a_repeated_top_k_mask_takes_the_next_ranking_or_random_units_of_the_same_size():
    same = np.arange(10.0)
    pop, drawn = ranked_population(
        np.random.default_rng(0), 20, 10, {"x": same, "y": same.copy()}, ranked_fraction=1.0
    )
    keys = [row.tobytes() for row, (name, _) in zip(pop, drawn) if name != "random"]
    assert len(keys) == len(set(keys))  # no ranked mask twice
    assert [row.sum() for row in pop] == [k for _, k in drawn]
    assert any(name == "random" for name, _ in drawn)


def test_ranked_init_needs_rankings_of_every_gene():
    with pytest.raises(ConfigError, match="init='ranked' needs rankings"):
        SteadyStateGA(population=4, evaluations=8, init="ranked")
    ga = SteadyStateGA(population=4, evaluations=8, init="ranked", rankings={"a": np.zeros(5)})
    with pytest.raises(ConfigError, match="ranking 'a' has 5 scores for 6 genes"):
        ga.setup(6)
    with pytest.raises(ConfigError, match="variation='guided' needs per-unit scores"):
        SteadyStateGA(population=4, evaluations=8, variation="guided")
    with pytest.raises(ConfigError, match="variation='smart' is unknown; choose one of paper"):
        make_algorithm(
            "nsga2",
            SearchSettings(
                population=4,
                evaluations=8,
                mutation_prob=0.1,
                init="random",
                seed=0,
                variation="smart",
            ),
            None,
        )


def test_percentile_ranks_share_ties_and_put_nan_last():
    r = percentile_ranks(np.array([3.0, np.nan, 1.0, 3.0, 2.0]))
    assert r.tolist() == [0.875, 0.0, 0.25, 0.875, 0.5]
    p = prior_scores({"a": np.array([1.0, 2.0, 3.0]), "b": np.array([30.0, 20.0, 10.0])})
    assert p.tolist() == [0.5, 0.5, 0.5]


def test_guided_moves_keep_size_or_move_one_unit_the_way_the_scores_say():
    rng = np.random.default_rng(0)
    scores = np.linspace(0, 1, 100)  # unit 99 the best
    child = np.zeros(100, dtype=np.uint8)
    child[40:60] = 1
    added, removed = np.zeros(100), np.zeros(100)
    for _ in range(400):
        s = guided_swap(rng, child, scores)
        assert s.sum() == 20 and np.count_nonzero(s != child) == 2
        up = guided_flip(rng, child, scores, switch_on=True)
        down = guided_flip(rng, child, scores, switch_on=False)
        assert up.sum() == 21 and down.sum() == 19
        added += up != child
        removed += down != child
    # high scores are switched on, low ones off
    assert added[80:].sum() > 0.6 * 400 and added[:40].sum() < 0.05 * 400
    assert removed[40:45].sum() > removed[55:60].sum() * 3
    one = np.zeros(100, dtype=np.uint8)
    one[3] = 1
    assert guided_flip(rng, one, scores, switch_on=False).sum() == 1  # never empty
    assert child.sum() == 20  # the argument is never changed
    v = guided_variation(rng, child, scores)
    assert 0 < np.count_nonzero(v != child)


def test_unit_scores_learn_which_units_raise_fitness():
    rng = np.random.default_rng(0)
    L = 40
    prior = np.full(L, 0.5)
    good = [3, 17, 29]
    scores = UnitScores(prior)
    X = (rng.random((120, L)) < 0.3).astype(np.uint8)
    fitness = X[:, good].sum(axis=1) + 0.05 * rng.normal(size=120)
    for i in range(0, 120, 2):
        scores.tell(X[i : i + 2], fitness[i : i + 2])
    scores.tell(X[:10], fitness[:10] + 100)  # repeats teach nothing
    scores.tell(X[:1] ^ 1, np.array([np.nan]))  # nor rows without fitness
    assert scores.n == len({r.tobytes() for r in X})
    assert set(np.argsort(-scores.learned)[:3]) == set(good)
    assert set(np.argsort(-scores.current)[:3]) == set(good)
    assert 0.3 < scores.weight < 0.5


class Hidden:
    """Fitness: how many of the good units are on, minus a little per other unit."""

    objectives = ("accuracy",)
    n_obj = 1

    def __init__(self, n_genes=200, good=10):
        self.n_genes = n_genes
        self.good = np.zeros(n_genes, dtype=bool)
        self.good[np.random.default_rng(1).choice(n_genes, good, replace=False)] = True

    def evaluate(self, chromosomes):
        out = []
        for c in np.atleast_2d(chromosomes).astype(bool):
            acc = (c & self.good).sum() / self.good.sum() - (c & ~self.good).mean()
            out.append(Evaluation(F=np.array([1 - acc]), accuracy=float(acc)))
        return out


def _noisy_rankings(problem, seed=2):
    rng = np.random.default_rng(seed)
    return {
        "a": problem.good + rng.normal(0, 0.6, problem.n_genes),
        "b": problem.good + rng.normal(0, 0.6, problem.n_genes),
    }


def _best(algorithm, problem, budget=120):
    return run_search(algorithm, Evaluator(problem, budget)).best_fitness


@pytest.mark.parametrize("name", ["ssga", "nsga2"])
def test_a_ranked_start_and_guided_variation_find_more_than_the_papers_operators(name):
    problem = Hidden()
    rankings = _noisy_rankings(problem)

    def mean_best(init, variation):
        return np.mean(
            [
                _best(
                    make_algorithm(
                        name,
                        SearchSettings(
                            population=20,
                            evaluations=120,
                            mutation_prob=0.07,
                            init=init,
                            seed=seed,
                            variation=variation,
                        ),
                        rankings,
                    ),
                    problem,
                )
                for seed in range(4)
            ]
        )

    paper = mean_best("random", "paper")  # 0.57 (ssga), 0.57 (nsga2)
    ranked = mean_best("ranked", "paper")  # 0.81, 0.85
    guided = mean_best("ranked", "guided")  # 0.83, 0.91
    assert ranked > paper + 0.15
    assert guided > ranked


@pytest.mark.parametrize("name", ["ssga", "nsga2"])
def test_guided_search_is_repeatable_from_its_seed(name):
    problem = Hidden(60, 5)
    rankings = _noisy_rankings(problem)

    def history(seed):
        algo = make_algorithm(
            name,
            SearchSettings(
                population=8,
                evaluations=40,
                mutation_prob=0.07,
                init="ranked",
                seed=seed,
                variation="guided",
            ),
            rankings,
        )
        result = run_search(algo, Evaluator(problem, 40))
        return [r.chromosome.tobytes() for r in result.history]

    assert history(3) == history(3)
    assert history(3) != history(4)


# --- the scores a run starts from: the fitness split's training part only ----------------------


def _blobs(n=120, d=12, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    X = rng.normal(size=(n, d)).astype(np.float32)
    X[:, :3] += y[:, None] * 0.8  # three informative features
    return X, y


def _initial_masks(X, y, eval_set=None, **settings):
    from evoprune.runs.config import RunConfig
    from evoprune.runs.context import RunContext
    from evoprune.runs.evolve import evolve

    cfg = RunConfig(
        encoding="fs", hidden_size=8, population=8, evaluations=8, device="cpu", **settings
    ).validate()
    assert (cfg.init, cfg.variation) == ("ranked", "guided")  # the defaults
    evolved = evolve(RunContext.of_arrays(cfg, X, y, ["a", "b", "c"], eval_set=eval_set))
    return [r.chromosome.tobytes() for r in evolved.result.history]


def _poison(X, y, rows):
    """Rows whose features 4..11 shout the class: any score that saw them ranks those first."""
    X = X.copy()
    X[np.ix_(rows, np.arange(4, 12))] = y[rows, None] * 50.0
    return X


@pytest.mark.parametrize("split", ["validation", "cv"])
def test_no_unit_score_sees_the_rows_fitness_is_measured_on(split):
    from evoprune.data import kfold_splits, stratified_split

    X, y = _blobs()
    fit, score = stratified_split(y, 0.2, 0) if split == "validation" else kfold_splits(y, 5, 0)[0]
    clean = _initial_masks(X, y, fitness_split=split)
    assert _initial_masks(_poison(X, y, score), y, fitness_split=split) == clean
    # the check can fail: poisoning the rows the scores are computed on changes the start
    assert _initial_masks(_poison(X, y, fit), y, fitness_split=split) != clean


def test_no_unit_score_sees_the_held_out_images():
    X, y = _blobs()
    Xt, yt = _blobs(60, seed=1)
    clean = _initial_masks(X, y, eval_set=(Xt, yt), fitness_split="test")
    poisoned = _poison(Xt, yt, np.arange(60))
    assert _initial_masks(X, y, eval_set=(poisoned, yt), fitness_split="test") == clean


def test_search_rankings_cover_the_units_each_encoding_switches():
    from evoprune.encodings import make_encoding
    from evoprune.unitscores import search_rankings

    X, y = _blobs(90, 10)

    def names_and_sizes(name):
        enc = make_encoding(name, 10, 6, 3)
        got = search_rankings(enc, X, y, 3, seed=0)
        assert all(s.shape == (enc.n_genes,) for s in got.values())
        return list(got), enc.n_genes

    assert names_and_sizes("fs") == (["anova_f", "l1_logistic", "norm_retrained"], 10)
    assert names_and_sizes("fc") == (["norm_retrained", "activation_variance"], 6)
    assert names_and_sizes("both") == (["norm_retrained", "activation_variance"], 12)
    assert names_and_sizes("edges-fc")[0] == []
    fs = search_rankings(make_encoding("fs", 10, 6, 3), X, y, 3, seed=0)
    for name in ("anova_f", "l1_logistic"):  # the informative features first
        assert set(np.argsort(-fs[name])[:3]) == {0, 1, 2}


def test_the_estimator_takes_init_and_variation_and_names_a_bad_value():
    from evoprune.estimator import EvoPruneClassifier

    X, y = _blobs()
    kw = dict(hidden_size=8, population=6, evaluations=10, device="cpu")
    ranked = EvoPruneClassifier(**kw).fit(X, y)
    paper = EvoPruneClassifier(**kw, init="random", variation="paper").fit(X, y)
    sizes = [int(r.chromosome.sum()) for r in ranked.search_.history[:3]]
    assert sizes == sorted(sizes) and sizes[0] <= 2  # the ranked start: small masks first
    assert [r.chromosome.tobytes() for r in ranked.search_.history] != [
        r.chromosome.tobytes() for r in paper.search_.history
    ]
    with pytest.raises(ConfigError, match=r"--variation smart \(variation='smart'\): is unknown"):
        EvoPruneClassifier(variation="smart").fit(X, y)
    with pytest.raises(ConfigError, match=r"\(init='ranked'\): encoding edges-fc switches no"):
        EvoPruneClassifier(encoding="edges-fc", init="ranked").fit(X, y)


def test_the_cli_takes_init_and_variation():
    import argparse

    from evoprune.runs.config import add_run_options, config_from_args

    parser = argparse.ArgumentParser()
    add_run_options(parser)
    cfg = config_from_args(parser.parse_args(["--init", "ranked", "--variation", "paper"]))
    assert (cfg.validate().init, cfg.validate().variation) == ("ranked", "paper")
    with pytest.raises(SystemExit):
        parser.parse_args(["--variation", "smart"])


@pytest.mark.parametrize("name", ["ssga", "nsga2"])
def test_a_resumed_guided_search_retraces_its_path(name):
    problem = Hidden(60, 5)
    rankings = _noisy_rankings(problem)

    def run(known=None, budget=40):
        algo = make_algorithm(
            name,
            SearchSettings(
                population=8,
                evaluations=budget,
                mutation_prob=0.07,
                init="ranked",
                seed=1,
                variation="guided",
            ),
            rankings,
        )
        return run_search(algo, Evaluator(problem, 40, known=known))

    whole = run()
    part = whole.history[:23]  # an interrupted run's history: its evaluations are reused
    known = {r.chromosome.tobytes(): problem.evaluate(r.chromosome[None])[0] for r in part}
    again = run(known)
    assert [r.chromosome.tobytes() for r in again.history] == [
        r.chromosome.tobytes() for r in whole.history
    ]
