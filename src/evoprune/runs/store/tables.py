"""The CSV tables of a results folder: a comparison's ``summary.csv``, ``stats.csv`` and
``curves.csv``, and an analysis's tables (``analysis/*.csv``), written atomically and read
back (an interrupted analysis resumes from its table)."""

from __future__ import annotations

import csv
import dataclasses
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from evoprune.io import atomic_write


def write_table(path: Path, fields: Sequence[str], rows: Sequence[dict]) -> Path:
    """A CSV table with the columns ``fields`` (``summary.csv``, ``stats.csv``,
    ``curves.csv``): floats written exactly (``repr``), NaN as an empty cell."""

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(fields))
            w.writeheader()
            w.writerows({k: _cell(r.get(k)) for k in fields} for r in rows)

    return atomic_write(path, write)


def _cell(v):
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return v


def read_table(path: Path) -> list[dict]:
    """The rows of a CSV table as mappings of its header; none when it does not exist."""
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def read_table_cells(path: Path) -> list[list[str]]:
    """The rows of a CSV table (of a run or comparison folder) as cells, the header first."""
    with path.open(newline="", encoding="utf-8") as fh:
        return [row for row in csv.reader(fh)]


def write_records(path: Path, records: Sequence[Any]) -> Path:
    """A CSV of dataclass records (``records``, at least one, of one class): their fields
    as the header, one row each."""
    fields = list(dataclasses.asdict(records[0]))

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields)
            writer.writeheader()
            writer.writerows(dataclasses.asdict(r) for r in records)

    return atomic_write(path, write)


def write_rows(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> Path:
    """A CSV of a header and rows of cells, as they are."""

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            writer.writerows(rows)

    return atomic_write(path, write)
