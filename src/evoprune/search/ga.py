"""The paper's steady-state genetic algorithm over binary chromosomes.

The GA sees only ``evaluate``: a function from a (B, L) 0/1 array of chromosomes to B fitness
values (higher is better). It knows nothing about images, heads or torch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError
from .operators import (init_population, mutate, nam_select, parse_init, rank_key,
                        replace_worst, uniform_crossover)

log = logging.getLogger(__name__)

Evaluate = Callable[[np.ndarray], np.ndarray]


@dataclass
class EvaluationRecord:
    """One fitness evaluation that used budget (1-based ``index``)."""

    index: int
    iteration: int
    fitness: float
    active_genes: int
    active_fraction: float
    best_fitness: float
    best_active_fraction: float
    chromosome: np.ndarray = field(repr=False, compare=False, default=None)

    def as_row(self) -> dict:
        """The record without its chromosome (for tables)."""
        return {k: v for k, v in self.__dict__.items() if k != "chromosome"}


@dataclass
class GAResult:
    best: np.ndarray
    best_fitness: float
    history: list[EvaluationRecord]
    population: np.ndarray
    fitness: np.ndarray
    evaluations: int
    iterations: int
    memory_hits: int
    stopped_early: bool = False
    notes: list[str] = field(default_factory=list)


class SteadyStateGA:
    """EvoPruneDeepTL's GA: population ``population``, 2 children per iteration, density-sampled
    initialisation, negative assortative mating, uniform crossover, one-gene mutation with
    probability ``mutation_prob`` per child, replacement of the worst, memory of evaluated
    chromosomes (no budget spent on them), and a budget of ``evaluations`` that includes the
    initial population."""

    def __init__(self, population: int = 30, evaluations: int = 200, mutation_prob: float = 0.07,
                 init: str | float = "random", nam_candidates: int = 3, children: int = 2,
                 seed: int = 0, max_stale_iterations: int = 1000):
        if int(population) < 4:
            raise ConfigError(f"population={population} must be at least 4 (mating draws 1 + 3)")
        if int(evaluations) < int(population):
            raise ConfigError(
                f"evaluations={evaluations} must be at least population={population}: "
                "the initial population counts toward the budget")
        if not 0.0 <= float(mutation_prob) <= 1.0:
            raise ConfigError(f"mutation_prob={mutation_prob} must be within [0, 1]")
        if int(children) < 1:
            raise ConfigError(f"children={children} must be at least 1")
        self.population = int(population)
        self.evaluations = int(evaluations)
        self.mutation_prob = float(mutation_prob)
        self.density = parse_init(init)
        self.init = init
        self.nam_candidates = int(nam_candidates)
        self.children = int(children)
        self.seed = int(seed)
        self.max_stale_iterations = int(max_stale_iterations)

    def run(self, n_genes: int, evaluate: Evaluate,
            on_evaluation: Callable[[EvaluationRecord], None] | None = None) -> GAResult:
        """Search ``n_genes``-gene chromosomes; ``on_evaluation`` sees each record as it is made."""
        rng = np.random.default_rng(self.seed)
        memory: dict[bytes, float] = {}
        history: list[EvaluationRecord] = []
        best = 0  # index into history of the best so far
        hits = 0

        def record(chrom: np.ndarray, fitness: float, iteration: int) -> None:
            nonlocal best
            active = int(chrom.sum())
            if not history or rank_key(fitness, active) < rank_key(
                    history[best].fitness, history[best].active_genes):
                best = len(history)
                best_fit, best_active = fitness, active
            else:
                best_fit, best_active = history[best].fitness, history[best].active_genes
            rec = EvaluationRecord(
                index=len(history) + 1, iteration=iteration, fitness=fitness, active_genes=active,
                active_fraction=active / chrom.size, best_fitness=best_fit,
                best_active_fraction=best_active / chrom.size, chromosome=chrom.copy())
            history.append(rec)
            if on_evaluation is not None:
                on_evaluation(rec)

        def evaluate_batch(chroms: np.ndarray, iteration: int) -> np.ndarray:
            """Fitness of each row, from memory where known; new ones use budget, in order,
            while budget lasts (NaN for rows that did not fit)."""
            nonlocal hits
            todo: list[int] = []
            seen: set[bytes] = set()
            for i, c in enumerate(chroms):
                key = c.tobytes()
                if key in memory or key in seen:
                    hits += 1
                elif len(history) + len(seen) < self.evaluations:
                    seen.add(key)
                    todo.append(i)
            if todo:
                values = np.asarray(evaluate(chroms[todo]), dtype=float).reshape(-1)
                if values.shape != (len(todo),):
                    raise ValueError(
                        f"evaluate returned {values.shape} values for {len(todo)} chromosomes")
                for i, v in zip(todo, values):
                    memory[chroms[i].tobytes()] = float(v)
                    record(chroms[i], float(v), iteration)
            return np.array([memory.get(c.tobytes(), np.nan) for c in chroms])

        pop = init_population(rng, self.population, n_genes, self.density)
        fit = evaluate_batch(pop, 0)
        iteration = 0
        stale = 0
        stopped_early = False
        while len(history) < self.evaluations:
            iteration += 1
            kids = []
            while len(kids) < self.children:
                i, j = nam_select(rng, pop, self.nam_candidates)
                for child in uniform_crossover(rng, pop[i], pop[j]):
                    kids.append(mutate(rng, child, self.mutation_prob))
            kids = np.stack(kids[: self.children])
            before = len(history)
            kid_fit = evaluate_batch(kids, iteration)
            keep = ~np.isnan(kid_fit)
            pop, fit = replace_worst(pop, fit, kids[keep], kid_fit[keep])
            stale = stale + 1 if len(history) == before else 0
            if stale >= self.max_stale_iterations:
                stopped_early = True
                log.warning("search stopped after %d iterations with no new chromosome; the "
                            "population has converged (%d of %d evaluations used)",
                            self.max_stale_iterations, len(history), self.evaluations)
                break
        return GAResult(best=history[best].chromosome, best_fitness=history[best].fitness, history=history,
                        population=pop, fitness=fit, evaluations=len(history),
                        iterations=iteration, memory_hits=hits, stopped_early=stopped_early)
