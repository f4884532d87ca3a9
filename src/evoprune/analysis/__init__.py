"""The paper's analyses of a finished run: how robust the evolved head is (CKA against its
nearest evaluated neighbour and the not-pruned head), how much each class matters (remove a
class, add one gradually), what the kept features look at (Grad-CAM heatmaps) and, over the
runs of a comparison, which backbone channels feature selection keeps most often.

Every part is a function that reads a run folder through the run store, writes its tables (CSV)
and plots (PNG) into ``RUN_DIR/analysis/`` and returns what it measured; ``evoprune analyze``
calls them.
"""

from evoprune.analysis.channels import channel_frequency
from evoprune.analysis.cka import linear_cka, median_distance, rbf_cka, robustness
from evoprune.analysis.context import AnalysisContext, open_analysis
from evoprune.analysis.heatmaps import grad_cam, heatmap_grid
from evoprune.analysis.relevance import add_class, remove_each_class

__all__ = [
    "AnalysisContext",
    "add_class",
    "channel_frequency",
    "grad_cam",
    "heatmap_grid",
    "linear_cka",
    "median_distance",
    "open_analysis",
    "rbf_cka",
    "remove_each_class",
    "robustness",
]
