"""The paper's comparison: repeated runs of each encoding, the pruning baselines, the rankings
and the accuracy-size curves.

The public API is named here and imported on first use (``from evoprune.compare import
CompareConfig, ...``), so that importing one light module of the package stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from evoprune.compare.baselines import (
        run_baselines,
    )
    from evoprune.compare.curves import (
        check_densities,
        curve_points,
        density_keep,
    )
    from evoprune.compare.rankings import (
        FOR_UNITS,
        Ranker,
    )
    from evoprune.compare.runner import (
        CompareConfig,
        finished_result,
        run_comparison,
    )

#: public name -> the module that defines it
_PUBLIC = {
    "CompareConfig": "evoprune.compare.runner",
    "finished_result": "evoprune.compare.runner",
    "run_comparison": "evoprune.compare.runner",
    "run_baselines": "evoprune.compare.baselines",
    "FOR_UNITS": "evoprune.compare.rankings",
    "Ranker": "evoprune.compare.rankings",
    "check_densities": "evoprune.compare.curves",
    "curve_points": "evoprune.compare.curves",
    "density_keep": "evoprune.compare.curves",
}

__all__ = [
    "CompareConfig",
    "FOR_UNITS",
    "Ranker",
    "check_densities",
    "curve_points",
    "density_keep",
    "finished_result",
    "run_baselines",
    "run_comparison",
]


def __getattr__(name: str) -> Any:
    """The public names, imported from their module on first use."""
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'evoprune.compare' has no attribute {name!r}")
