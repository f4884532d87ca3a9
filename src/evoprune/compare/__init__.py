"""The paper's comparison: repeated runs of each encoding, the pruning baselines, the rankings
and the accuracy-size curves.

The public API is named here and imported on first use (``from evoprune.compare import
CompareConfig, ...``), so that importing one light module of the package stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from evoprune._lazy import lazy_exports

if TYPE_CHECKING:
    from evoprune.compare.baselines import (
        COMPARISON_METHODS,
        methods_for,
        run_baselines,
    )
    from evoprune.compare.curves import (
        check_densities,
        curve_methods,
        curve_points,
        density_keep,
    )
    from evoprune.compare.rankings import (
        FOR_UNITS,
        RANKINGS,
        Ranker,
        feature_rankings,
        ranking_masks,
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
    "COMPARISON_METHODS": "evoprune.compare.baselines",
    "methods_for": "evoprune.compare.baselines",
    "FOR_UNITS": "evoprune.compare.rankings",
    "RANKINGS": "evoprune.compare.rankings",
    "Ranker": "evoprune.compare.rankings",
    "feature_rankings": "evoprune.compare.rankings",
    "ranking_masks": "evoprune.compare.rankings",
    "check_densities": "evoprune.compare.curves",
    "curve_methods": "evoprune.compare.curves",
    "curve_points": "evoprune.compare.curves",
    "density_keep": "evoprune.compare.curves",
}

__all__ = [
    "COMPARISON_METHODS",
    "CompareConfig",
    "FOR_UNITS",
    "RANKINGS",
    "Ranker",
    "check_densities",
    "curve_methods",
    "curve_points",
    "density_keep",
    "feature_rankings",
    "finished_result",
    "methods_for",
    "ranking_masks",
    "run_baselines",
    "run_comparison",
]

__getattr__ = lazy_exports(__name__, _PUBLIC)
