"""Folder safety for a run folder: what may be resumed, replaced or refused, before any work.

A folder is resumed only by the same configuration; another configuration stops with the
settings that differ, unless ``overwrite``, which moves the old folder aside (never deletes).
evoprune never writes into a folder that holds files it did not write (its own are listed in
the folder's manifest, :class:`~evoprune.io.OutputFolder`), nor inside the data; one writer at
a time holds the folder's lock. A run folder holding a run's files without its config.json,
or a damaged config.json, is refused rather than replaced.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from evoprune.errors import ConfigError, EvoPruneError
from evoprune.io import MANIFEST_FILE, OutputFolder, temporary_of
from evoprune.runs.store.files import (
    CONFIG_FILE,
    HEAD_FILE,
    REFERENCE_HEAD_FILE,
    RESULT_FILE,
    RESULT_FILES,
    RUN_FILES,
)
from evoprune.runs.store.schema import RunResult


def check_out_dir(out: Path, data_roots: Sequence[Path] = ()) -> None:
    """Stop before anything is computed when ``out`` cannot hold this run: a file, inside the
    data, or a folder holding files that evoprune did not write (by its manifest)."""
    OutputFolder(out, "run").check(data_roots)


def read_saved_config(
    cfg_file: Path,
    advice: str = "give --out another folder, or --overwrite to move that folder aside",
) -> dict:
    """config.json of a results folder, checked: a JSON object whose ``run`` is an object;
    ConfigError naming the file and the field otherwise."""
    try:
        doc = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"{cfg_file} is damaged ({exc}); the run there is neither resumed nor replaced: "
            + advice
        ) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("run"), dict):
        field_ = "the file" if not isinstance(doc, dict) else "'run'"
        value = doc if not isinstance(doc, dict) else doc.get("run")
        raise ConfigError(
            f"{cfg_file}: {field_} is {json.dumps(value)[:40]}, not a JSON object of settings; "
            "the file is damaged: " + advice
        )
    return doc


def saved_config(out: Path, overwrite: bool, advice: str) -> dict | None:
    """The checked config.json of the run folder ``out``; None for a new or empty folder. A
    damaged one, or a run's files without it, is refused (unless ``overwrite``)."""
    cfg_file = out / CONFIG_FILE
    if not cfg_file.is_file():
        present = [n for n in RUN_FILES if (out / n).exists()]
        if present and not overwrite:
            raise ConfigError(
                f"{cfg_file} is missing but {out} holds a run ({', '.join(present)}); "
                "the folder is damaged and is not replaced: " + advice.replace("that run", "it")
            )
        return None
    try:
        return read_saved_config(cfg_file, advice.replace("that run", "that folder"))
    except ConfigError:
        if overwrite:
            return {"run": {}}
        raise


def differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """``"name: old there, new now"`` for each setting that differs, sorted by name."""
    keys = sorted(set(saved) | set(current))
    return [
        f"{k}: {saved.get(k)!r} there, {current.get(k)!r} now"
        for k in keys
        if saved.get(k) != current.get(k)
    ]


def results_part(run_doc: Mapping[str, Any]) -> dict:
    """The settings of a saved run that can change its results (a run may be resumed with
    another ``--device``, say)."""
    from evoprune.runs.config import BY_NAME

    return {k: v for k, v in run_doc.items() if k not in BY_NAME or BY_NAME[k].result}


def refuse(
    out: Path, saved: Mapping[str, Any], current: Mapping[str, Any], advice: str
) -> NoReturn:
    """Stop: ``out`` holds a run of other settings (the first six differences named)."""
    diff = differences(saved, current)
    raise ConfigError(
        f"{out} holds a run of another configuration ("
        + "; ".join(diff[:6])
        + (" ..." if len(diff) > 6 else "")
        + "); "
        + advice
    )


def finished_result(out: Path, run_doc: Mapping[str, Any]) -> dict | None:
    """The ``result.json`` of this very run when ``out`` holds it finished (same result
    settings, a readable result, both heads), else None: starting it again must change
    nothing."""
    try:
        saved = json.loads((out / CONFIG_FILE).read_text(encoding="utf-8")).get("run")
        doc = json.loads((out / RESULT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(saved, dict) or results_part(saved) != results_part(run_doc):
        return None
    if not all((out / name).is_file() for name in (HEAD_FILE, REFERENCE_HEAD_FILE)):
        return None  # damaged: running it again rewrites it
    try:
        return RunResult.from_dict(doc, out / RESULT_FILE).to_dict()
    except EvoPruneError:
        return None


def clear_for_restart(folder: OutputFolder) -> None:
    """In a held run folder that (re)starts: remove the temporary files of a killed run's
    unfinished writes (only those of files the manifest lists) and the files a finished run
    writes last, so that no older result stays beside a new configuration."""
    out = folder.path
    listed = folder.listed()
    for leftover in out.iterdir():
        original = temporary_of(leftover.name)
        ours = original is not None and (original in listed or original == MANIFEST_FILE)
        if leftover.is_file() and ours:
            leftover.unlink()
    for name in RESULT_FILES:
        (out / name).unlink(missing_ok=True)
    folder.forget(RESULT_FILES)
