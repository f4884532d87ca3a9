"""evoprune: evolve which neurons or input features of a transfer-learning head to keep."""

import os as _os

from evoprune._lazy import lazy_exports

__version__ = "0.1.0"

# OpenMP's idle threads sleep instead of spinning, so that two processes on the same cores (two
# evoprune runs, or one beside any busy job) do not slow each other tenfold; read when torch
# loads, so set here, before any evoprune module imports torch. The user's own setting wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def load(run_dir, rank=None):
    """A fitted :class:`~evoprune.estimator.EvoPruneClassifier` from a run folder (``rank``:
    that front member of a multi-objective run instead of the shipped head).

    It predicts on feature matrices and on images (paths or PIL images); see
    `evoprune.estimator.load`. Imported on first use so that ``import evoprune`` stays light.
    """
    from evoprune.estimator import load as _load

    return _load(run_dir, rank=rank)


_LAZY = {
    "EvoPruneClassifier": "evoprune.estimator",
    "ImageFeatures": "evoprune.features",
    "RunConfig": "evoprune.runs.experiment",
    "run_experiment": "evoprune.runs.experiment",
}

__all__ = ["__version__", "load", *_LAZY]

# the public classes, imported on first use (torch is heavy to import)
__getattr__ = lazy_exports(__name__, _LAZY)
