"""What a results folder holds: the names of its files, the version of their formats, and the
small codecs every file shares (masks as hexadecimal, JSON objects read with one message)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from evoprune.errors import EvoPruneError

#: Version of the folder's file formats; bumped when a file changes incompatibly.
SCHEMA_VERSION = 2

CONFIG_FILE = "config.json"
RESULT_FILE = "result.json"
HISTORY_FILE = "history.csv"
HEAD_FILE = "head.safetensors"
REFERENCE_HEAD_FILE = "reference_head.safetensors"
FRONT_DIR = "front"
PARETO_FILE = "pareto.csv"
#: Written into a finished run folder by later commands: ``evoprune ensemble`` (the ensemble
#: of its front) and ``evoprune compare`` (the baselines of a comparison's run).
ENSEMBLE_FILE = "ensemble.json"
BASELINES_FILE = "baselines.json"

#: Files a finished run writes last; removed when a run (re)starts so that an interrupted run
#: never leaves an older result beside its new configuration.
RESULT_FILES = (RESULT_FILE, HEAD_FILE, REFERENCE_HEAD_FILE, PARETO_FILE)

#: Files only a run writes: a folder holding one of them but no config.json is damaged.
RUN_FILES = (RESULT_FILE, HISTORY_FILE, HEAD_FILE, REFERENCE_HEAD_FILE, PARETO_FILE)


def front_head_path(run_dir: str | Path, rank: int) -> Path:
    """The weights of front member ``rank`` of the multi-objective run in ``run_dir``."""
    return Path(run_dir) / FRONT_DIR / f"head_{rank}.safetensors"


def mask_to_hex(mask: np.ndarray) -> str:
    return np.packbits(np.asarray(mask, dtype=np.uint8)).tobytes().hex()


def hex_to_mask(text: str, n_genes: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(bytes.fromhex(text), dtype=np.uint8))[:n_genes]


def read_json(path: Path) -> dict:
    """A JSON object from ``path``; EvoPruneError naming the file when unreadable."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EvoPruneError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise EvoPruneError(f"{path} does not hold a JSON object")
    return data
