"""The search core: one evaluator for every algorithm, NSGA-II from pymoo on a problem whose
front is known, and resume of a multi-objective search."""

import numpy as np
import pytest

from evoprune.errors import ConfigError, EvoPruneError
from evoprune.pareto import non_dominated
from evoprune.runs.store import known_evaluations
from evoprune.search import Evaluation, Evaluator, SteadyStateGA, make_algorithm, run_search
from evoprune.settings import SearchSettings


class TwoObjectives:
    """size = fraction of genes on; error = 1 - (genes on among the first half) / half.

    The true front: every chromosome whose second half is all off (error falls as size rises).
    Counts the chromosomes it is asked to evaluate."""

    objectives = ("accuracy", "size")
    n_obj = 2

    def __init__(self, n_genes=12):
        self.n_genes = n_genes
        self.asked = []

    def evaluate(self, chromosomes):
        half = self.n_genes // 2
        out = []
        for c in chromosomes:
            self.asked.append(c.tobytes())
            acc = c[:half].sum() / half
            out.append(Evaluation(F=np.array([1.0 - acc, c.mean()]), accuracy=float(acc)))
        return out


def test_nsga2_finds_the_known_front():
    problem = TwoObjectives()
    evaluator = Evaluator(problem, 300)
    result = run_search(
        make_algorithm(
            "nsga2",
            SearchSettings(
                population=20, evaluations=300, mutation_prob=0.07, init="random", seed=0
            ),
        ),
        evaluator,
    )
    assert result.evaluations == 300 == len(set(problem.asked))  # no chromosome trained twice
    front = np.stack([r.chromosome for r in result.history])[non_dominated(result.F)]
    assert (front[:, 6:] == 0).all()  # every non-dominated head is on the true front
    found = {int(c[:6].sum()) for c in front}
    assert len(found) >= 6  # of the 7 points k = 0..6 of the true front


def test_nsga2_is_deterministic_for_a_seed():
    runs = [
        run_search(
            make_algorithm(
                "nsga2",
                SearchSettings(
                    population=10, evaluations=40, mutation_prob=0.1, init="random", seed=s
                ),
            ),
            Evaluator(TwoObjectives(), 40),
        )
        for s in (3, 3, 4)
    ]
    assert np.array_equal(runs[0].F, runs[1].F)
    assert not np.array_equal(runs[0].F, runs[2].F)


def test_evaluator_remembers_every_objective_and_spends_no_budget_on_repeats():
    problem = TwoObjectives()
    ev = Evaluator(problem, 3)
    a, b = np.eye(12, dtype=np.uint8)[:2]
    F1 = ev.evaluate(np.stack([a, a, b]), iteration=0)
    assert len(problem.asked) == 2 and ev.n_evaluated == 2 and ev.hits == 1
    assert np.array_equal(F1[0], F1[1]) and F1.shape == (3, 2)
    F2 = ev.evaluate(np.stack([b, a]), iteration=1)
    assert np.array_equal(F2, F1[[2, 0]]) and len(problem.asked) == 2
    c, d = np.eye(12, dtype=np.uint8)[2:4]
    F3 = ev.evaluate(np.stack([c, d]), iteration=2)  # one evaluation of budget left
    assert ev.n_evaluated == 3 and not np.isnan(F3[0]).any() and np.isnan(F3[1]).all()


def test_hypervolume_is_recorded_and_never_falls():
    result = run_search(
        make_algorithm(
            "nsga2",
            SearchSettings(population=8, evaluations=30, mutation_prob=0.1, init="random", seed=1),
        ),
        Evaluator(TwoObjectives(), 30),
    )
    hv = [r.hypervolume for r in result.history]
    assert all(h is not None for h in hv)
    assert all(b >= a for a, b in zip(hv, hv[1:]))
    assert hv[-1] > hv[0]


def test_a_resumed_multiobjective_search_retraces_its_path_without_training_again():
    first = run_search(
        make_algorithm(
            "nsga2",
            SearchSettings(population=8, evaluations=30, mutation_prob=0.1, init="random", seed=5),
        ),
        Evaluator(TwoObjectives(), 30),
    )
    part = first.history[:17]
    known = known_evaluations(part, ("accuracy", "size"))
    problem = TwoObjectives()
    again = run_search(
        make_algorithm(
            "nsga2",
            SearchSettings(population=8, evaluations=30, mutation_prob=0.1, init="random", seed=5),
        ),
        Evaluator(problem, 30, known=known),
    )
    assert [r.as_row() for r in again.history] == [r.as_row() for r in first.history]
    assert len(problem.asked) == 30 - 17  # only the evaluations that were not known
    assert np.array_equal(again.F, first.F)


def test_ssga_refuses_several_objectives():
    with pytest.raises(ConfigError, match="nsga2"):
        run_search(SteadyStateGA(population=4, evaluations=8), Evaluator(TwoObjectives(), 8))


def test_estimator_with_two_objectives_fits_the_selected_front_head():
    from sklearn.datasets import load_digits

    from evoprune.estimator import EvoPruneClassifier

    d = load_digits()
    X, y = d.data[:300].astype(np.float32), d.target[:300]
    clf = EvoPruneClassifier(
        objectives=("accuracy", "size"),
        hidden_size=16,
        population=8,
        evaluations=24,
        random_state=0,
    ).fit(X, y)
    front = clf.pareto_
    assert front["selected"].sum() == 1
    assert np.array_equal(clf.best_mask_, front["mask"][front["selected"]][0])
    assert list(front["active_fraction"]) == sorted(front["active_fraction"])
    assert clf.head_.sizes[0] == clf.best_mask_.sum()
    # accuracy rule: the most accurate front head is fitted
    acc = EvoPruneClassifier(
        objectives=("accuracy", "size"),
        select="accuracy",
        hidden_size=16,
        population=8,
        evaluations=24,
        random_state=0,
    ).fit(X, y)
    assert acc.best_fitness_ == front["fitness"].max()


def test_a_fitness_split_error_names_the_class():
    from evoprune.estimator import EvoPruneClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 6)).astype(np.float32)
    y = np.array(["cat"] * 37 + ["cup"] * 3)
    with pytest.raises(EvoPruneError, match="class .cup. has 3"):
        EvoPruneClassifier(
            fitness_split="cv", cv_folds=5, hidden_size=4, population=4, evaluations=4
        ).fit(X, y)
