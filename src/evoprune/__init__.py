"""evoprune: evolve which neurons or input features of a transfer-learning head to keep."""

__version__ = "0.1.0"


def load(run_dir):
    """A fitted :class:`~evoprune.estimator.EvoPruneClassifier` from a run folder.

    It predicts on feature matrices and on images (paths or PIL images); see
    :func:`evoprune.rundir.load`. Imported on first use so that ``import evoprune`` stays light.
    """
    from .rundir import load as _load

    return _load(run_dir)
