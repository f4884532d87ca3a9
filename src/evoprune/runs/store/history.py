"""history.csv: one row per evaluation, appended as it happens, read back to resume.

History is appended to or atomically replaced, never truncated first, so an interrupted
resume loses nothing; a last row cut short by an interruption is skipped, any other damaged
row is one message naming the file, the line and the field.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evoprune.errors import EvoPruneError
from evoprune.io import atomic_write, writing_folder
from evoprune.runs.store.files import hex_to_mask, mask_to_hex
from evoprune.search import Evaluation, EvaluationRecord
from evoprune.search.fidelity import FULL

HISTORY_FIELDS = [
    "index",
    "iteration",
    "fitness",
    "active_genes",
    "active_fraction",
    "best_fitness",
    "best_active_fraction",
]
_OPTIONAL_FIELDS = ["auroc", "hypervolume"]
_HISTORY_INTS = ("index", "iteration", "active_genes")


def history_fields(objectives: Sequence[str] = ("accuracy",)) -> list[str]:
    """Columns of history.csv for a search over ``objectives``: the fidelity that scored each
    row before the mask, the mask last. (Folders written before fidelities existed lack the
    ``fidelity`` column; their rows are read as ``full``.)"""
    extra = (["auroc"] if "ood" in objectives else []) + (
        ["hypervolume"] if len(objectives) > 1 else []
    )
    return HISTORY_FIELDS + extra + ["fidelity", "mask"]


def history_row(rec: EvaluationRecord) -> dict:
    row = rec.as_row()
    row["mask"] = mask_to_hex(rec.mask())
    return row


#: The values a history row may hold: (low, high) bounds of each number (None: unbounded).
_HISTORY_BOUNDS: dict[str, tuple[float | None, float | None]] = {
    "index": (0, None),
    "iteration": (0, None),
    "active_genes": (0, None),
    "fitness": (0.0, 1.0),
    "active_fraction": (0.0, 1.0),
    "best_fitness": (0.0, 1.0),
    "best_active_fraction": (0.0, 1.0),
    "auroc": (0.0, 1.0),
    "hypervolume": (0.0, None),
}


class _CutRow(Exception):
    """A row that does not parse: the last one may have been cut short by an interruption."""


def read_history(path: str | Path, n_genes: int | None = None) -> list[EvaluationRecord]:
    """history.csv as records, in order; a last row cut short by an interruption is skipped.

    Every value is checked: numbers finite and in range (fitness in [0, 1]...), the mask hex
    of the length ``n_genes`` needs; any other damaged row is one EvoPruneError naming the
    file, the line and the field. With ``n_genes`` each record's ``chromosome`` is decoded.
    """
    path = Path(path)
    records = []
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise EvoPruneError(
            f"cannot read {path}: {exc}; the file is damaged: rerun 'evoprune run' in a new "
            "--out (or move history.csv away to start that run afresh)"
        ) from None
    for i, row in enumerate(rows):
        line = i + 2  # the header is line 1
        try:
            records.append(_history_record(path, line, row, n_genes))
        except _CutRow as exc:
            if i == len(rows) - 1:
                continue  # a row cut short by an interruption
            raise EvoPruneError(
                f"{path} line {line}: {exc}; the file is damaged: rerun 'evoprune run' in a "
                "new --out (or move history.csv away to start that run afresh)"
            ) from None
    return records


def _history_record(path: Path, line: int, row: dict, n_genes: int | None) -> EvaluationRecord:
    def number(name: str, kind: type) -> Any:
        text = row.get(name)
        if text is None:
            raise _CutRow(f"{name!r} is missing")
        try:
            value = kind(text)
        except (TypeError, ValueError):
            raise _CutRow(f"{name!r} is {text!r}, not a number") from None
        low, high = _HISTORY_BOUNDS[name]
        if (
            not math.isfinite(value)
            or (low is not None and value < low)
            or (high is not None and value > high)
        ):
            raise EvoPruneError(
                f"{path} line {line}: {name!r} is {text!r}, not a finite number in "
                f"[{low}, {'inf' if high is None else high}]; the file is damaged or was "
                "edited: rerun 'evoprune run' in a new --out (or move history.csv away to "
                "start that run afresh)"
            )
        return value

    values: dict[str, Any] = {k: number(k, int) for k in _HISTORY_INTS}
    values.update({k: number(k, float) for k in HISTORY_FIELDS if k not in values})
    values.update({k: number(k, float) for k in _OPTIONAL_FIELDS if row.get(k)})
    values["fidelity"] = row.get("fidelity") or FULL
    text = row.get("mask")
    if not isinstance(text, str):
        raise _CutRow("'mask' is missing")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise _CutRow(f"'mask' is {text[:20]!r}, not hexadecimal") from None
    if n_genes is not None:
        if len(raw) != (n_genes + 7) // 8:
            raise _CutRow(
                f"'mask' has {len(text)} hex digits, not the {2 * ((n_genes + 7) // 8)} of "
                f"{n_genes} genes"
            )
        values["chromosome"] = hex_to_mask(text, n_genes)
    return EvaluationRecord(**values)


def write_history(
    path: Path, history: Sequence[EvaluationRecord], objectives: Sequence[str] = ("accuracy",)
) -> None:
    """The complete history, written atomically over the file appended during the search."""

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=history_fields(objectives))
            writer.writeheader()
            writer.writerows(history_row(r) for r in history)

    atomic_write(path, write)


class HistoryAppender:
    """Appends each evaluation to history.csv as it happens (a search callback).

    A resumed search replays its known evaluations first; those rows are already in the file
    (``existing``) and are not written again, so the file only grows. If a replayed record
    differs from the row it should match, the file is atomically rewritten up to it.
    """

    def __init__(
        self, path: Path, objectives: Sequence[str], existing: Sequence[EvaluationRecord] = ()
    ):
        self.path = path
        self.objectives = tuple(objectives)
        self.existing = list(existing)
        self.written: list[EvaluationRecord] = []
        # drop a row cut short by an interruption: rewrite the valid rows (atomic) first
        write_history(path, self.existing, self.objectives)
        self.fh = path.open("a", newline="")
        self.writer = csv.DictWriter(self.fh, fieldnames=history_fields(self.objectives))

    def __call__(self, rec: EvaluationRecord) -> None:
        # disk full or read-only while the search appends: one message; the rows written so
        # far stay, and the same command resumes from them
        with writing_folder(self.path.parent):
            self._append(rec)

    def _append(self, rec: EvaluationRecord) -> None:
        i = len(self.written)
        self.written.append(rec)
        if i < len(self.existing):
            old = self.existing[i]
            if (
                old.chromosome is not None
                and np.array_equal(old.chromosome, rec.mask())
                and old.fidelity == rec.fidelity
            ):
                return
            self.fh.close()  # the replay left the recorded path: keep what matches
            self.existing = []
            write_history(self.path, self.written, self.objectives)
            self.fh = self.path.open("a", newline="")
            self.writer = csv.DictWriter(self.fh, fieldnames=history_fields(self.objectives))
            return
        self.writer.writerow(history_row(rec))
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


def known_evaluations(
    records: Sequence[EvaluationRecord], objectives: Sequence[str]
) -> dict[tuple[bytes, str], Evaluation]:
    """What an interrupted search measured, keyed by (chromosome, fidelity), for the
    evaluator to reuse."""
    from evoprune.pareto import natural_values, to_minimised

    known = {}
    for r in records:
        natural = natural_values(r, objectives)
        if any(natural[name] is None for name in objectives):
            continue
        F = np.array([to_minimised(name, natural[name]) for name in objectives])
        known[(r.mask().tobytes(), r.fidelity)] = Evaluation(F=F, accuracy=r.fitness, auroc=r.auroc)
    return known
