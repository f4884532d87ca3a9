"""Search over binary chromosomes: one evaluator, ask/tell algorithms, executors.

The search sees only a problem that maps chromosomes to minimised objectives; it knows nothing
about images, heads or torch. NSGA-II (``evoprune.search.nsga2``) imports pymoo on first use.
"""

from evoprune.search.asynchronous import run_async_search
from evoprune.search.evaluator import (
    Evaluation,
    EvaluationRecord,
    Evaluator,
    SearchResult,
    run_search,
)
from evoprune.search.executors import AsyncExecutor, Executor, LocalExecutor
from evoprune.search.operators import (
    INIT_CHOICES,
    init_population,
    mutate,
    nam_select,
    parse_init,
    replace_worst,
    uniform_crossover,
)
from evoprune.search.ssga import FunctionProblem, SteadyStateGA

ALGORITHMS = ("ssga", "nsga2")


def make_algorithm(
    name: str, *, population: int, evaluations: int, mutation_prob: float, init: str, seed: int
):
    """The algorithm ``name`` with a run's settings (NSGA-II uses mutation 1/L per gene)."""
    if name == "ssga":
        return SteadyStateGA(
            population=population,
            evaluations=evaluations,
            mutation_prob=mutation_prob,
            init=init,
            seed=seed,
        )
    if name == "nsga2":
        from evoprune.search.nsga2 import NSGA2Search

        return NSGA2Search(population=population, init=init, seed=seed)
    from evoprune.errors import ConfigError

    raise ConfigError(f"algorithm={name!r} is unknown; choose one of {', '.join(ALGORITHMS)}")


__all__ = [
    "ALGORITHMS",
    "AsyncExecutor",
    "Evaluation",
    "EvaluationRecord",
    "Evaluator",
    "Executor",
    "FunctionProblem",
    "INIT_CHOICES",
    "LocalExecutor",
    "SearchResult",
    "SteadyStateGA",
    "init_population",
    "make_algorithm",
    "mutate",
    "nam_select",
    "parse_init",
    "replace_worst",
    "run_async_search",
    "run_search",
    "uniform_crossover",
]
