"""The GA's operators and rules, on small arrays."""

import numpy as np
import pytest

from evoprune.errors import ConfigError
from evoprune.search import (
    SteadyStateGA,
    init_population,
    mutate,
    nam_select,
    parse_init,
    replace_worst,
    uniform_crossover,
)


def rng(seed=0):
    return np.random.default_rng(seed)


def test_init_population_switches_on_round_p_times_L_genes():
    pop = init_population(rng(1), 200, 50, (0.0, 1.0))
    counts = pop.sum(axis=1)
    assert pop.shape == (200, 50) and set(np.unique(pop)) <= {0, 1}
    assert counts.min() >= 1 and counts.max() <= 50
    # densities drawn from U(0, 1): counts spread over the whole range
    assert counts.min() < 10 and counts.max() > 40
    fixed = init_population(rng(2), 20, 50, parse_init("0.3"))
    assert (fixed.sum(axis=1) == 15).all()
    ranged = init_population(rng(3), 100, 100, parse_init("0.3-0.7")).sum(axis=1)
    assert ranged.min() >= 30 and ranged.max() <= 70


@pytest.mark.parametrize("bad", ["abc", "1.5", "0.8-0.2", "-1"])
def test_parse_init_rejects_bad_values(bad):
    with pytest.raises(ConfigError, match="init"):
        parse_init(bad)


def test_nam_picks_the_farthest_of_three_candidates():
    # member 0 is all zeros; the others have 1..5 ones: distance to 0 = number of ones
    pop = np.zeros((6, 10), dtype=np.uint8)
    for i in range(1, 6):
        pop[i, :i] = 1
    g = rng(5)
    for _ in range(200):
        state = g.bit_generator.state
        first, second = nam_select(g, pop, 3)
        # replay the same draws to learn which candidates were offered
        g2 = np.random.default_rng()
        g2.bit_generator.state = state
        f2 = int(g2.integers(6))
        cands = g2.choice(np.delete(np.arange(6), f2), size=3, replace=False)
        assert first == f2 and second != first and second in cands
        d = [np.count_nonzero(pop[c] != pop[first]) for c in cands]
        assert np.count_nonzero(pop[second] != pop[first]) == max(d)


def test_uniform_crossover_takes_each_gene_from_a_parent():
    a = np.zeros(1000, dtype=np.uint8)
    b = np.ones(1000, dtype=np.uint8)
    c1, c2 = uniform_crossover(rng(0), a, b)
    assert ((c1 == a) | (c1 == b)).all()
    assert (c1 + c2 == 1).all()  # complementary choices
    assert 400 < c1.sum() < 600  # each gene from either parent with probability 0.5
    x = rng(1).integers(0, 2, 64).astype(np.uint8)
    y = rng(2).integers(0, 2, 64).astype(np.uint8)
    k1, k2 = uniform_crossover(rng(3), x, y)
    same = x == y
    assert (k1[same] == x[same]).all() and (k2[same] == x[same]).all()


def test_mutation_flips_exactly_one_gene_with_its_probability():
    child = np.zeros(100, dtype=np.uint8)
    always = mutate(rng(0), child, 1.0)
    assert always.sum() == 1 and child.sum() == 0  # input untouched
    assert (mutate(rng(0), child, 0.0) == child).all()
    flips = sum(mutate(rng(i), child, 0.07).sum() for i in range(4000))
    assert 0.05 * 4000 < flips < 0.09 * 4000


def test_replacement_keeps_best_two_of_children_and_two_worst():
    pop = np.array([[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=np.uint8)
    fit = np.array([0.9, 0.8, 0.5, 0.4])
    kids = np.array([[0, 1, 1, 1], [0, 0, 0, 1]], dtype=np.uint8)
    new_pop, new_fit = replace_worst(pop, fit, kids, np.array([0.6, 0.3]))
    # pool: kid 0.6, worst 0.5, worst 0.4, kid 0.3 -> 0.6 and 0.5 stay
    assert sorted(new_fit.tolist()) == [0.5, 0.6, 0.8, 0.9]
    assert any((row == kids[0]).all() for row in new_pop)
    assert not any((row == kids[1]).all() for row in new_pop)
    assert not any((row == pop[3]).all() for row in new_pop)


def test_replacement_tie_goes_to_fewer_active_genes():
    pop = np.array([[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]], dtype=np.uint8)
    fit = np.array([0.9, 0.9, 0.5, 0.5])
    sparse_kid = np.array([[1, 0, 0, 0], [0, 0, 0, 0]], dtype=np.uint8)
    new_pop, new_fit = replace_worst(pop, fit, sparse_kid, np.array([0.5, 0.1]))
    # pool at 0.5: kid (1 gene), [1,1,0,0] (2 genes), [1,1,1,1] (4 genes) -> kid and 2-gene stay
    assert any((row == sparse_kid[0]).all() for row in new_pop)
    assert any((row == pop[2]).all() for row in new_pop)
    assert sum((row == pop[3]).all() for row in new_pop) == 1  # only member 0 remains all-ones


def _onemax(calls):
    w = np.linspace(1, 2, 40)

    def f(chroms):
        calls.append(len(chroms))
        return (chroms @ w) / w.sum() - 0.5 * chroms.mean(axis=1) ** 2

    return f


def test_budget_is_never_exceeded_and_history_is_complete():
    calls = []
    res = SteadyStateGA(population=10, evaluations=57, seed=3).run(40, _onemax(calls))
    assert sum(calls) == 57 == res.evaluations == len(res.history)
    assert calls[0] == 10  # the initial population as one batch
    assert [r.index for r in res.history] == list(range(1, 58))
    best = [r.best_fitness for r in res.history]
    assert all(b2 >= b1 for b1, b2 in zip(best, best[1:]))
    assert res.best_fitness == max(r.fitness for r in res.history)
    assert res.best_fitness > np.median([r.fitness for r in res.history[:10]])


def test_memory_uses_no_budget():
    # a tiny chromosome space (3 genes, 7 non-empty masks): duplicates are certain
    seen = []

    def f(chroms):
        seen.extend(c.tobytes() for c in chroms)
        return chroms.sum(axis=1) / 3.0

    res = SteadyStateGA(population=4, evaluations=7, seed=0, max_stale_iterations=200).run(3, f)
    assert len(seen) == len(set(seen))  # never trained twice
    assert res.evaluations == len(seen) <= 7
    assert res.memory_hits > 0


def test_stops_when_no_new_chromosome_can_be_made():
    res = SteadyStateGA(population=4, evaluations=50, seed=0, max_stale_iterations=30).run(
        2, lambda c: c.sum(axis=1).astype(float)
    )
    assert res.stopped_early and res.evaluations <= 3


def test_same_seed_same_search_other_seed_differs():
    a = SteadyStateGA(population=8, evaluations=40, seed=11).run(40, _onemax([]))
    b = SteadyStateGA(population=8, evaluations=40, seed=11).run(40, _onemax([]))
    c = SteadyStateGA(population=8, evaluations=40, seed=12).run(40, _onemax([]))
    assert [r.fitness for r in a.history] == [r.fitness for r in b.history]
    assert (a.best == b.best).all()
    assert [r.fitness for r in a.history] != [r.fitness for r in c.history]


def test_best_result_ties_go_to_fewer_active_genes():
    # fitness ignores the genes entirely: every evaluation ties; the sparsest must win
    res = SteadyStateGA(population=6, evaluations=30, seed=2).run(20, lambda c: np.zeros(len(c)))
    assert res.best.sum() == min(r.active_genes for r in res.history)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(population=3), "population"),
        (dict(population=30, evaluations=10), "evaluations"),
        (dict(mutation_prob=2.0), "mutation_prob"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        SteadyStateGA(**kwargs)
