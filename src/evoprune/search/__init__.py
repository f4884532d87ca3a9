"""Search over binary chromosomes: one evaluator, ask/tell algorithms, executors.

The search sees only a problem that maps chromosomes to minimised objectives; it knows nothing
about images, heads or torch. NSGA-II (``evoprune.search.nsga2``) imports pymoo on first use.
"""

from evoprune.search.algorithms import (
    ALGORITHMS,
    AlgorithmSpec,
    algorithm_spec,
    make_algorithm,
    register_algorithm,
)
from evoprune.search.asynchronous import run_async_search
from evoprune.search.evaluator import (
    Evaluation,
    EvaluationRecord,
    Evaluator,
    SearchResult,
    StoppingRule,
    run_search,
)
from evoprune.search.executors import AsyncExecutor, Executor, LocalExecutor, Problem
from evoprune.search.guided import VARIATIONS, UnitScores, ranked_population, top_k
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

__all__ = [
    "ALGORITHMS",
    "AlgorithmSpec",
    "AsyncExecutor",
    "Evaluation",
    "EvaluationRecord",
    "Evaluator",
    "Executor",
    "Problem",
    "StoppingRule",
    "FunctionProblem",
    "INIT_CHOICES",
    "LocalExecutor",
    "SearchResult",
    "SteadyStateGA",
    "UnitScores",
    "VARIATIONS",
    "init_population",
    "algorithm_spec",
    "make_algorithm",
    "mutate",
    "nam_select",
    "parse_init",
    "ranked_population",
    "register_algorithm",
    "replace_worst",
    "run_async_search",
    "run_search",
    "top_k",
    "uniform_crossover",
]
