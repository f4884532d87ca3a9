"""The paper's steady-state genetic algorithm over binary chromosomes, as an ask/tell algorithm.

It sees only minimised objectives; its fitness is the first one (the error 1 - accuracy), so it
ranks heads by accuracy exactly as the paper's GA did. It knows nothing about images, heads or
torch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from evoprune.errors import ConfigError
from evoprune.search.evaluator import (
    Evaluation,
    EvaluationRecord,
    Evaluator,
    SearchResult,
    run_search,
)
from evoprune.search.fidelity import FULL
from evoprune.search.guided import (
    UnitScores,
    check_ranked_init,
    check_rankings,
    check_variation,
    guided_variation,
    prior_scores,
    ranked_population,
)
from evoprune.search.operators import (
    init_population,
    mutate,
    nam_select,
    parse_init,
    replace_worst,
    uniform_crossover,
)


class SteadyStateGA:
    """EvoPruneDeepTL's GA: population ``population``, 2 children per iteration, density-sampled
    initialisation, negative assortative mating, uniform crossover, one-gene mutation with
    probability ``mutation_prob`` per child and replacement of the worst. Memory of evaluated
    chromosomes and the budget of ``evaluations`` (initial population included) are the
    :class:`~evoprune.search.evaluator.Evaluator`'s.

    ``rankings`` (gene scores by ranking name, higher: keep first) enable ``init="ranked"``
    (the population starts on the rankings' curve; ``sizes``, fractions of the genes: every
    ranking's top-k at exactly those sizes first) and ``variation="guided"`` (each child gets
    score-guided moves instead of the paper's mutation, the scores learning from every
    evaluation); see :mod:`evoprune.search.guided`. ``init="random"`` with
    ``variation="paper"`` is the paper's GA exactly."""

    def __init__(
        self,
        population: int = 30,
        evaluations: int = 200,
        mutation_prob: float = 0.07,
        init: str | float = "random",
        nam_candidates: int = 3,
        children: int = 2,
        seed: int = 0,
        max_stale_iterations: int = 1000,
        variation: str = "paper",
        rankings: Mapping[str, np.ndarray] | None = None,
        sizes: tuple[float, ...] | None = None,
    ):
        if int(population) < 4:
            raise ConfigError(f"population={population} must be at least 4 (mating draws 1 + 3)")
        if int(evaluations) < int(population):
            raise ConfigError(
                f"evaluations={evaluations} must be at least population={population}: "
                "the initial population counts toward the budget"
            )
        if not 0.0 <= float(mutation_prob) <= 1.0:
            raise ConfigError(f"mutation_prob={mutation_prob} must be within [0, 1]")
        if int(children) < 1:
            raise ConfigError(f"children={children} must be at least 1")
        self.population = int(population)
        self.evaluations = int(evaluations)
        self.mutation_prob = float(mutation_prob)
        self.density = parse_init(init)
        self.init = init
        self.ranked = check_ranked_init(init, rankings)
        self.variation = check_variation(variation, rankings)
        self.rankings = dict(rankings or {})
        self.sizes = tuple(sizes or ())
        self.nam_candidates = int(nam_candidates)
        self.children = int(children)
        self.seed = int(seed)
        self.max_stale_iterations = int(max_stale_iterations)

    def setup(self, n_genes: int, n_obj: int = 1) -> None:
        if n_obj != 1:
            raise ConfigError(
                f"the steady-state GA optimises one objective (accuracy), not "
                f"{n_obj}; use algorithm nsga2 for several objectives"
            )
        self.n_genes = int(n_genes)
        check_rankings(self.rankings, self.n_genes)
        self.rng = np.random.default_rng(self.seed)
        self.iteration = 0
        self.pop: np.ndarray | None = None
        self.fit: np.ndarray | None = None
        self.scores = (
            UnitScores(prior_scores(self.rankings)) if self.variation == "guided" else None
        )

    def ask(self) -> np.ndarray:
        """The initial population first, then ``children`` children per iteration."""
        if self.pop is None:
            if self.ranked:
                pop, _ = ranked_population(
                    self.rng,
                    self.population,
                    self.n_genes,
                    self.rankings,
                    self.density,
                    sizes=self.sizes,
                )
                return pop
            return init_population(self.rng, self.population, self.n_genes, self.density)
        self.iteration += 1
        kids: list[np.ndarray] = []
        while len(kids) < self.children:
            i, j = nam_select(self.rng, self.pop, self.nam_candidates)
            for child in uniform_crossover(self.rng, self.pop[i], self.pop[j]):
                if self.scores is not None:
                    kids.append(guided_variation(self.rng, child, self.scores.current))
                else:
                    kids.append(mutate(self.rng, child, self.mutation_prob))
        return np.stack(kids[: self.children])

    def tell(self, chromosomes: np.ndarray, F: np.ndarray) -> None:
        """Fitness is -F[:, 0] (higher is better); rows without objectives (NaN: no budget
        was left for them) are dropped."""
        fitness = -np.asarray(F, dtype=float)[:, 0]
        if self.scores is not None:
            self.scores.tell(chromosomes, fitness)
        if self.pop is None or self.fit is None:  # the first generation
            self.pop, self.fit = np.asarray(chromosomes, dtype=np.uint8), fitness
            return
        keep = ~np.isnan(fitness)
        self.pop, self.fit = replace_worst(self.pop, self.fit, chromosomes[keep], fitness[keep])

    def run(
        self,
        n_genes: int,
        evaluate: Callable[[np.ndarray], np.ndarray],
        on_evaluation: Callable[[EvaluationRecord], None] | None = None,
    ) -> SearchResult:
        """Search ``n_genes``-gene chromosomes for the highest ``evaluate`` value, a function
        from a (B, L) 0/1 array to B values (a convenience for plain fitness functions)."""
        evaluator = Evaluator(
            FunctionProblem(evaluate, n_genes),
            self.evaluations,
            callbacks=[on_evaluation] if on_evaluation else [],
        )
        return run_search(self, evaluator, self.max_stale_iterations)


class FunctionProblem:
    """A problem from a plain function of chromosomes (higher is better): one objective."""

    objectives = ("accuracy",)
    n_obj = 1
    n_folds = None  # no folds: evaluated a batch at a time
    fidelities = (FULL,)

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], n_genes: int):
        self.fn = fn
        self.n_genes = int(n_genes)

    def evaluate_at(self, chromosomes: np.ndarray, fidelity: str) -> list:
        if fidelity != FULL:
            raise ValueError(f"a function problem is scored at full fidelity only, not {fidelity}")
        return self.evaluate(chromosomes)

    def evaluate_fold_batch(self, chromosomes: np.ndarray, fold: int) -> list:
        raise ValueError("a function problem has no folds")

    def combine(self, chromosome: np.ndarray, scores: list) -> Evaluation:
        raise ValueError("a function problem has no folds")

    def evaluate(self, chromosomes: np.ndarray) -> list:
        values = np.asarray(self.fn(chromosomes), dtype=float).reshape(-1)
        if values.shape != (len(chromosomes),):
            raise ValueError(
                f"evaluate returned {values.shape} values for {len(chromosomes)} chromosomes"
            )
        return [Evaluation(F=np.array([-v]), accuracy=float(v)) for v in values]
