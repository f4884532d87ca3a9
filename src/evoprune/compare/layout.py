"""Where a comparison's files are, shared by the runner that writes the run folders and the
report that reads them (so that neither imports the other)."""

from __future__ import annotations

from pathlib import Path

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


def run_dir(out: Path, encoding: str, run: int) -> Path:
    """The run folder of run ``run`` (0-based) of ``encoding`` in the comparison folder ``out``."""
    return Path(out) / "runs" / f"{encoding}_run{run}"
