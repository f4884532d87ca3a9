"""NSGA-II from pymoo as an ask/tell algorithm, with MO-EvoPruneDeepTL's defaults.

Population 30, 2 offspring per iteration, uniform crossover, bit-flip mutation with probability
1/L per gene, the paper's density-sampled initialisation (density U(0, 1), exactly round(pL)
genes on) and duplicates eliminated. pymoo does the sorting, crowding and survival; memory,
budget and history stay with the :class:`~evoprune.search.evaluator.Evaluator`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from evoprune.errors import ConfigError
from evoprune.search.guided import (
    UnitScores,
    check_ranked_init,
    check_rankings,
    check_variation,
    guided_variation,
    prior_scores,
    ranked_population,
)
from evoprune.search.operators import init_population, parse_init


class NSGA2Search:
    """pymoo's NSGA-II behind :func:`~evoprune.search.evaluator.run_search`'s ask/tell loop.

    ``rankings`` (gene scores by ranking name) enable ``init="ranked"`` (pymoo's sampling
    starts on the rankings' curve) and ``variation="guided"`` (a pymoo ``Mutation`` making
    score-guided moves on each offspring instead of bit flips; the scores learn from every
    evaluation told); see :mod:`evoprune.search.guided`."""

    def __init__(
        self,
        population: int = 30,
        offspring: int = 2,
        init: str | float = "random",
        mutation_prob: float | None = None,
        seed: int = 0,
        variation: str = "paper",
        rankings: Mapping[str, np.ndarray] | None = None,
        sizes: tuple[float, ...] | None = None,
    ):
        if int(population) < 2:
            raise ConfigError(f"population={population} must be at least 2 for NSGA-II")
        if int(offspring) < 1:
            raise ConfigError(f"offspring={offspring} must be at least 1")
        if mutation_prob is not None and not 0.0 <= float(mutation_prob) <= 1.0:
            raise ConfigError(f"mutation_prob={mutation_prob} must be within [0, 1]")
        self.population = int(population)
        self.offspring = int(offspring)
        self.density = parse_init(init)
        self.mutation_prob = mutation_prob
        self.seed = int(seed)
        self.ranked = check_ranked_init(init, rankings)
        self.variation = check_variation(variation, rankings)
        self.rankings = dict(rankings or {})
        self.sizes = tuple(sizes or ())

    def setup(self, n_genes: int, n_obj: int) -> None:
        from pymoo.algorithms.moo.nsga2 import NSGA2
        from pymoo.core.mutation import Mutation
        from pymoo.core.problem import Problem
        from pymoo.core.sampling import Sampling
        from pymoo.core.termination import NoTermination
        from pymoo.operators.crossover.ux import UX
        from pymoo.operators.mutation.bitflip import BitflipMutation

        check_rankings(self.rankings, int(n_genes))
        density, rankings, ranked, sizes = self.density, self.rankings, self.ranked, self.sizes
        self.scores = (
            UnitScores(prior_scores(self.rankings)) if self.variation == "guided" else None
        )
        scores = self.scores

        class DensitySampling(Sampling):
            """The paper's initialisation: a density per individual, exactly round(pL) on;
            with ``init="ranked"`` half of them are the rankings' top-k masks instead."""

            def _do(self, problem, n_samples, *args, random_state=None, **kwargs):
                if ranked:
                    pop, _ = ranked_population(
                        random_state, n_samples, problem.n_var, rankings, density, sizes=sizes
                    )
                    return pop.astype(bool)
                return init_population(random_state, n_samples, problem.n_var, density).astype(bool)

        class GuidedMutation(Mutation):
            """Score-guided moves on each offspring (:func:`guided_variation`)."""

            def _do(self, problem, X, *args, random_state=None, **kwargs):
                assert scores is not None
                out = np.asarray(X, dtype=np.uint8).copy()
                for i in range(len(out)):
                    out[i] = guided_variation(random_state, out[i], scores.current)
                return out.astype(bool)

        prob_var = (1.0 / n_genes) if self.mutation_prob is None else float(self.mutation_prob)
        mutation = (
            GuidedMutation(prob=1.0)
            if scores is not None
            else BitflipMutation(prob=1.0, prob_var=prob_var)
        )
        self.algorithm = NSGA2(
            pop_size=self.population,
            n_offsprings=self.offspring,
            sampling=DensitySampling(),
            crossover=UX(),
            mutation=mutation,
            eliminate_duplicates=True,
        )
        problem = Problem(n_var=int(n_genes), n_obj=int(n_obj), xl=0, xu=1, vtype=bool)
        self.algorithm.setup(problem, termination=NoTermination(), seed=self.seed, verbose=False)
        self.iteration = 0
        self._asked = None
        self._started = False

    def ask(self) -> np.ndarray:
        if self._started:
            self.iteration += 1
        self._started = True
        asked = self._asked = self.algorithm.ask()
        return asked.get("X").astype(np.uint8)

    def tell(self, chromosomes: np.ndarray, F: np.ndarray) -> None:
        """Rows with objectives (not NaN) go to pymoo's survival."""
        F = np.asarray(F, dtype=float)
        keep = ~np.isnan(F).any(axis=1)
        if self._asked is None:
            raise RuntimeError("NSGA2Search.tell() before ask()")
        infills = self._asked[keep]
        infills.set("F", F[keep])
        if self.scores is not None:
            self.scores.tell(chromosomes, -F[:, 0])
        self.algorithm.tell(infills=infills)
