"""Where a comparison's files are, shared by the runner that writes the run folders and the
report that reads them (so that neither imports the other)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from evoprune.errors import EvoPruneError
from evoprune.model.head import CompactHead, TrainerConfig

if TYPE_CHECKING:
    from evoprune.runs.config import RunConfig
    from evoprune.runs.context import RunContext, TrainTestData

#: The columns of summary.csv, one row per (encoding, method, run).
SUMMARY_FIELDS = [
    "encoding",
    "method",
    "run",
    "seed",
    "test_accuracy",
    "active_fraction",
    "head_params",
    "seconds",
]


def variant_label(encoding: str, algorithm: str) -> str:
    """A comparison's label of ``encoding`` searched by ``algorithm``: the encoding alone for
    the paper's GA (``fs``), else ``<encoding>-<algorithm>`` (``fs-nsga2``)."""
    from evoprune.search.algorithms import AUTO_ONE_OBJECTIVE

    return encoding if algorithm == AUTO_ONE_OBJECTIVE else f"{encoding}-{algorithm}"


def split_variant(variant: str) -> tuple[str, str]:
    """``"fs-nsga2"`` -> ``("fs", "nsga2")``, ``"edges-out"`` -> ``("edges-out", "ssga")``: the
    encoding (whose name may hold a dash) and the search algorithm of a comparison's variant
    label (:func:`variant_label`), both read from their registries."""
    from evoprune.encodings import REGISTRY
    from evoprune.search.algorithms import ALGORITHMS, AUTO_ONE_OBJECTIVE

    if variant not in REGISTRY:
        for name in ALGORITHMS:
            if name != AUTO_ONE_OBJECTIVE and variant.endswith(f"-{name}"):
                return variant[: -len(name) - 1], name
    return variant, AUTO_ONE_OBJECTIVE


def run_dir(out: Path, encoding: str, run: int) -> Path:
    """The run folder of run ``run`` (0-based) of ``encoding`` in the comparison folder ``out``."""
    return Path(out) / "runs" / f"{encoding}_run{run}"


def run_reference(path: Path, n_inputs: int) -> CompactHead:
    """The not-pruned head that the finished run in ``path`` trained, which its baselines and
    curves start from (not trained again)."""
    from evoprune.runs.store import REFERENCE_HEAD_FILE, load_head

    try:
        return load_head(Path(path) / REFERENCE_HEAD_FILE, n_inputs=n_inputs)
    except EvoPruneError as exc:
        raise EvoPruneError(
            f"{exc}; the run folder {path} is incomplete: delete it and run the "
            "comparison again to redo that run"
        ) from None


def finished_context(
    cfg: RunConfig,
    data: TrainTestData,
    path: Path,
    reference_seconds: float = 0.0,
    trainer: TrainerConfig | None = None,
) -> RunContext:
    """The context of the finished run of ``cfg`` in ``path`` on ``data``, with the not-pruned
    head that run trained (:func:`run_reference`; ``reference_seconds``: its training time),
    which its baselines and curves start from. ``trainer``: the trainer's settings (default:
    the trainer ``cfg`` names)."""
    from evoprune.runs.context import RunContext

    context = RunContext.of_data(cfg, data, trainer=trainer)
    return context.reuse_reference(run_reference(path, data.X.shape[1]), reference_seconds)
