"""A comparison folder's own files (``evoprune compare``): ``comparison.json`` (its settings,
written first), the tables ``summary.csv``, ``stats.csv`` and ``table.md``, and the
accuracy-size curves (``curves/<variant>_run<k>.json``, ``curves.csv``). Its run folders
(``runs/<variant>_run<k>/``) are run folders, with the comparison's ``baselines.json``
(:mod:`.derived`); its CSV tables are written by :mod:`.tables`. The figures are the plots'
(``plots/``)."""

from __future__ import annotations

import json
from pathlib import Path

from evoprune import __version__
from evoprune.io import atomic_write_json, atomic_write_text

COMPARISON_FILE = "comparison.json"
SUMMARY_FILE = "summary.csv"
STATS_FILE = "stats.csv"
TABLE_FILE = "table.md"
CURVES_FILE = "curves.csv"
CURVES_DIR = "curves"


def is_comparison(path: str | Path) -> bool:
    """Whether ``path`` is a folder written by ``evoprune compare``."""
    return (Path(path) / COMPARISON_FILE).is_file()


def write_comparison(out: str | Path, settings: dict) -> Path:
    """``comparison.json``: the comparison's settings and the version that ran it."""
    return atomic_write_json(
        Path(out) / COMPARISON_FILE, {"comparison": settings, "evoprune_version": __version__}
    )


def read_comparison(folder: str | Path) -> dict:
    """The settings in a comparison folder's ``comparison.json`` (OSError or ValueError when it
    cannot be read)."""
    doc = json.loads((Path(folder) / COMPARISON_FILE).read_text(encoding="utf-8"))
    return doc.get("comparison", doc)


def curves_file(out: str | Path, encoding: str, run: int) -> Path:
    """The saved accuracy-size curve points of run ``run`` of ``encoding``."""
    return Path(out) / CURVES_DIR / f"{encoding}_run{run}.json"


def write_table_md(out: str | Path, text: str) -> Path:
    """``table.md``: the comparison's tables in Markdown."""
    return atomic_write_text(Path(out) / TABLE_FILE, text)


def read_table_md(folder: str | Path) -> str | None:
    """The text of a comparison's ``table.md``; None before the comparison has finished."""
    path = Path(folder) / TABLE_FILE
    return path.read_text(encoding="utf-8") if path.is_file() else None
