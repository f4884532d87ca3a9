"""Files that later commands add to a finished run folder: ``ensemble.json`` (``evoprune
ensemble``: an ensemble of a multi-objective run's front heads) and ``baselines.json``
(``evoprune compare``: the comparison methods of one of its runs, with the settings they were
made with, so that a resumed comparison reuses them)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from evoprune import __version__
from evoprune.io import atomic_write_json, check_file_target, claim_file, writing_folder
from evoprune.runs.store.files import BASELINES_FILE, ENSEMBLE_FILE


def check_ensemble_target(run_dir: str | Path) -> Path:
    """``RUN_DIR/ensemble.json`` when ``evoprune ensemble`` may write it (before any work):
    not a file that another command or the user wrote there."""
    return check_file_target(Path(run_dir) / ENSEMBLE_FILE, "ensemble", "RUN_DIR")


def write_ensemble_file(run_dir: str | Path, doc: Mapping) -> Path:
    """``RUN_DIR/ensemble.json``, written atomically with the folder locked and the file listed
    in its manifest as ``evoprune ensemble``'s."""
    path = Path(run_dir) / ENSEMBLE_FILE
    with claim_file([path], "ensemble", "RUN_DIR"), writing_folder(run_dir, "RUN_DIR"):
        atomic_write_json(path, doc)
    return path


def saved_with(path: str | Path, settings: Mapping) -> dict | None:
    """The JSON object saved in ``path`` if it was made with exactly ``settings`` (its
    ``"settings"`` entry); None when the file is missing, damaged or from other settings, so
    that the part is made again."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("settings") != settings:
        return None
    return doc


def save_with(path: str | Path, settings: Mapping, **parts: object) -> Path:
    """A JSON object made with ``settings``: ``{"settings", "evoprune_version", **parts}``,
    which :func:`saved_with` reads back."""
    return atomic_write_json(path, {"settings": settings, "evoprune_version": __version__, **parts})


def read_baselines(run_dir: str | Path, settings: Mapping) -> dict | None:
    """``RUN_DIR/baselines.json`` if its methods were made with exactly ``settings``."""
    return saved_with(Path(run_dir) / BASELINES_FILE, settings)


def write_baselines(run_dir: str | Path, settings: Mapping, methods: Mapping[str, dict]) -> Path:
    """``RUN_DIR/baselines.json``: each comparison method's result (``to_dict()``) by name."""
    return save_with(Path(run_dir) / BASELINES_FILE, settings, methods=dict(methods))
