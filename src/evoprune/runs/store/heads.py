"""The heads of a results folder: safetensors state dicts (never pickles), written atomically
and checked when read; and a multi-objective run's front: ``pareto.csv`` (one row per
member) beside ``front/head_<rank>.safetensors``."""

from __future__ import annotations

import csv
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from evoprune.errors import EvoPruneError
from evoprune.io import atomic_write
from evoprune.model.head import CompactHead
from evoprune.runs.store.files import PARETO_FILE, front_head_path

#: The columns of pareto.csv, one row per front member (``FrontMember.summary()``).
PARETO_FIELDS = [
    "rank",
    "evaluation",
    "active_fraction",
    "active_genes",
    "head_params",
    "fitness",
    "fitness_auroc",
    "check_accuracy",
    "check_probability",
    "test_accuracy",
    "test_auroc",
    "test_fpr95",
    "selected",
    "mask",
]


class FrontHead(Protocol):
    """A member of the front as the store writes it: its rank, its head and its pareto.csv
    row (``runs.front.FrontMember``)."""

    rank: int
    head: CompactHead

    def summary(self) -> dict: ...


def save_head(head: CompactHead, path: Path) -> None:
    """The head's weights as safetensors (never a pickle), written atomically: serialised in
    memory, then through :func:`~evoprune.io.atomic_write` (safetensors' own ``save_file``
    writes through a temporary file of its own that a killed process would leave behind)."""
    from safetensors.torch import save

    tensors = {k: v.detach().contiguous() for k, v in head.state_dict().items()}
    data = save(tensors, metadata={"format": "pt"})
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def load_head(path: str | Path, n_inputs: int | None = None) -> CompactHead:
    """A :class:`CompactHead` from a safetensors file written by the experiment."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise EvoPruneError(f"head file {path} does not exist")
    if not stat.S_ISREG(path.stat().st_mode):
        raise EvoPruneError(f"head file {path} is not a regular file")
    try:
        state = load_file(str(path))
    except (OSError, SafetensorError) as exc:
        raise EvoPruneError(f"cannot read head file {path}: {exc}") from None
    _check_head_tensors(path, state)
    try:
        return CompactHead.from_state_dict(state, n_inputs=n_inputs)
    except EvoPruneError as exc:
        raise EvoPruneError(f"{path}: {exc}") from None


def _check_head_tensors(path: Path, state: Mapping[str, Any]) -> None:
    """A head's tensors as the experiment writes them: finite floating-point weights, biases
    and feature statistics, a 1-D integer feature index; one message naming the file and the
    tensor otherwise (integer or NaN weights predicted one class for every image)."""
    import torch

    for name, tensor in state.items():
        if name == "feature_index":
            if tensor.dtype.is_floating_point or tensor.dtype == torch.bool or tensor.dim() != 1:
                problem = f"{tensor.dtype} of shape {tuple(tensor.shape)}, not a 1-D integer index"
            elif tensor.numel() and (
                int(tensor.min()) < 0 or len(set(tensor.tolist())) < tensor.numel()
            ):
                problem = "not distinct non-negative feature numbers"
            else:
                continue
        elif not tensor.dtype.is_floating_point:
            problem = f"{tensor.dtype}, not floating-point weights"
        elif not bool(torch.isfinite(tensor).all()):
            problem = "not finite (NaN or infinite values)"
        elif name.endswith(".weight") and tensor.dim() != 2:
            problem = f"of shape {tuple(tensor.shape)}, not a matrix"
        else:
            continue
        raise EvoPruneError(
            f"head file {path}: tensor {name!r} is {problem}; the file is damaged or was "
            "edited: rerun 'evoprune run' to rewrite the run folder"
        )


def write_front(out: Path, front: Sequence[FrontHead]) -> None:
    """pareto.csv and the front's heads (front/head_<rank>.safetensors)."""
    for m in front:
        save_head(m.head, front_head_path(out, m.rank))

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=PARETO_FIELDS)
            writer.writeheader()
            writer.writerows(
                {k: ("" if v is None else v) for k, v in m.summary().items()} for m in front
            )

    atomic_write(out / PARETO_FILE, write)
