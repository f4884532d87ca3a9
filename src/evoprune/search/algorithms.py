"""The registry of search algorithms: name, description, how many objectives it optimises,
whether it can run asynchronously, and how it is built from the search settings.

``--algorithm`` choices, the checks between settings and the comparison's algorithms all read
:data:`ALGORITHMS`; a new algorithm is one :func:`register_algorithm` call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from evoprune.errors import ConfigError
from evoprune.search.evaluator import Algorithm
from evoprune.settings import SearchSettings


@dataclass(frozen=True)
class AlgorithmSpec:
    """One search algorithm: ``build(settings, rankings)`` returns an ask/tell
    :class:`~evoprune.search.evaluator.Algorithm` for a run's search settings (resolved:
    ``settings.budget`` is known) and the run's per-unit scores (``rankings``: gene scores by
    ranking name, for ``init="ranked"`` and ``variation="guided"``; None when the run has
    none). ``several_objectives``: whether it optimises more than one
    objective (a front); ``asynchronous``: whether the asynchronous steady-state mode runs it."""

    name: str
    description: str
    build: Callable[[SearchSettings, Rankings], Algorithm]
    several_objectives: bool = False
    asynchronous: bool = False


#: Gene scores by ranking name (higher: keep first), or None.
Rankings = Mapping[str, np.ndarray] | None

#: name -> spec, in the order of the ``--algorithm`` choices.
ALGORITHMS: dict[str, AlgorithmSpec] = {}

#: What ``--algorithm auto`` picks for one objective (the paper's GA; also the algorithm of a
#: comparison's rows that carry no algorithm suffix) and for several (a front).
AUTO_ONE_OBJECTIVE = "ssga"
AUTO_SEVERAL_OBJECTIVES = "nsga2"


def auto_algorithm(several_objectives: bool) -> str:
    """The algorithm ``--algorithm auto`` runs for one objective or for several."""
    return AUTO_SEVERAL_OBJECTIVES if several_objectives else AUTO_ONE_OBJECTIVE


def algorithm_help() -> str:
    """``--algorithm``'s help text, from the registry: each algorithm's name and description,
    what it optimises, and what ``auto`` picks."""

    def one(spec: AlgorithmSpec) -> str:
        what = "one or more objectives" if spec.several_objectives else "one objective"
        return f"{spec.name} ({spec.description}; {what})"

    return (
        "search algorithm: "
        + ", ".join(one(spec) for spec in ALGORITHMS.values())
        + f", or auto ({AUTO_SEVERAL_OBJECTIVES} with more than one objective, else "
        f"{AUTO_ONE_OBJECTIVE}). Default: auto"
    )


def register_algorithm(spec: AlgorithmSpec, *, replace: bool = False) -> AlgorithmSpec:
    """Add ``spec`` under its name (``replace`` to overwrite one)."""
    if spec.name in ALGORITHMS and not replace:
        raise ConfigError(f"algorithm {spec.name!r} is registered already; pass replace=True")
    ALGORITHMS[spec.name] = spec
    return spec


def algorithm_spec(name: str) -> AlgorithmSpec:
    """The registered algorithm ``name``, or ConfigError naming the choices."""
    if name not in ALGORITHMS:
        raise ConfigError(f"algorithm={name!r} is unknown; choose one of {', '.join(ALGORITHMS)}")
    return ALGORITHMS[name]


def make_algorithm(name: str, settings: SearchSettings, rankings: Rankings = None) -> Algorithm:
    """The algorithm ``name`` built for the search settings ``settings`` and the per-unit
    scores ``rankings`` (needed by ``init="ranked"`` and ``variation="guided"``). Unresolved
    ``init`` and ``variation`` (None) are the paper's (random, paper)."""
    return algorithm_spec(name).build(settings, rankings)


def _ssga(s: SearchSettings, rankings: Rankings) -> Algorithm:
    from evoprune.search.ssga import SteadyStateGA

    return SteadyStateGA(
        population=s.population,
        evaluations=s.budget,
        mutation_prob=s.mutation_prob,
        init=s.init or "random",
        seed=s.seed,
        variation=s.variation or "paper",
        rankings=rankings,
        sizes=s.sizes,
    )


def _nsga2(s: SearchSettings, rankings: Rankings) -> Algorithm:
    from evoprune.search.nsga2 import NSGA2Search  # imports pymoo

    return NSGA2Search(
        population=s.population,
        init=s.init or "random",
        seed=s.seed,
        variation=s.variation or "paper",
        rankings=rankings,
        sizes=s.sizes,
    )


register_algorithm(
    AlgorithmSpec(
        "ssga",
        "steady-state GA",  # the paper's; one objective
        _ssga,
        several_objectives=False,
        asynchronous=True,
    )
)
register_algorithm(
    AlgorithmSpec(
        "nsga2",
        "NSGA-II",  # pymoo's; a front; mutation 1/L per gene
        _nsga2,
        several_objectives=True,
    )
)
