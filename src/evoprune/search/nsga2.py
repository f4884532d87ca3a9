"""NSGA-II from pymoo as an ask/tell algorithm, with MO-EvoPruneDeepTL's defaults.

Population 30, 2 offspring per iteration, uniform crossover, bit-flip mutation with probability
1/L per gene, the paper's density-sampled initialisation (density U(0, 1), exactly round(pL)
genes on) and duplicates eliminated. pymoo does the sorting, crowding and survival; memory,
budget and history stay with the :class:`~evoprune.search.evaluator.Evaluator`.
"""

from __future__ import annotations

import numpy as np

from evoprune.errors import ConfigError
from evoprune.search.operators import init_population, parse_init


class NSGA2Search:
    """pymoo's NSGA-II behind :func:`~evoprune.search.evaluator.run_search`'s ask/tell loop."""

    def __init__(
        self,
        population: int = 30,
        offspring: int = 2,
        init: str | float = "random",
        mutation_prob: float | None = None,
        seed: int = 0,
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

    def setup(self, n_genes: int, n_obj: int) -> None:
        from pymoo.algorithms.moo.nsga2 import NSGA2
        from pymoo.core.problem import Problem
        from pymoo.core.sampling import Sampling
        from pymoo.core.termination import NoTermination
        from pymoo.operators.crossover.ux import UX
        from pymoo.operators.mutation.bitflip import BitflipMutation

        density = self.density

        class DensitySampling(Sampling):
            """The paper's initialisation: a density per individual, exactly round(pL) on."""

            def _do(self, problem, n_samples, *args, random_state=None, **kwargs):
                return init_population(random_state, n_samples, problem.n_var, density).astype(bool)

        prob_var = (1.0 / n_genes) if self.mutation_prob is None else float(self.mutation_prob)
        self.algorithm = NSGA2(
            pop_size=self.population,
            n_offsprings=self.offspring,
            sampling=DensitySampling(),
            crossover=UX(),
            mutation=BitflipMutation(prob=1.0, prob_var=prob_var),
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
        self.algorithm.tell(infills=infills)
