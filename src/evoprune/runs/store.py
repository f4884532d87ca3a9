"""Reading a finished run folder back: its result, its heads and a fitted classifier.

A run folder is what :func:`evoprune.runs.experiment.run_experiment` writes. Heads are stored as
safetensors state dicts (never pickles) and rebuilt with :meth:`CompactHead.from_state_dict`.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from evoprune.errors import EvoPruneError
from evoprune.model.head import CompactHead

HEAD_FILE = "head.safetensors"
REFERENCE_HEAD_FILE = "reference_head.safetensors"

_HISTORY_INTS = ("index", "iteration", "active_genes")
_HISTORY_FLOATS = ("fitness", "active_fraction", "best_fitness", "best_active_fraction")


@dataclass
class RunFolder:
    """A finished run folder: its path, ``result.json`` and ``config.json`` (empty if absent)."""

    path: Path
    result: dict
    config: dict = field(default_factory=dict)

    @property
    def run_config(self) -> dict:
        """The run's settings (the ``run`` part of config.json)."""
        return self.config.get("run", {})

    def head_path(self, reference: bool = False) -> Path:
        return self.path / (REFERENCE_HEAD_FILE if reference else HEAD_FILE)

    def head(self, reference: bool = False) -> CompactHead:
        """The evolved head, or the not-pruned one with ``reference=True``, in eval mode."""
        head = load_head(self.head_path(reference), n_inputs=self.result.get("feature_dim"))
        n_classes = int(self.result.get("n_classes", len(self.result.get("classes", []))))
        if head.sizes[-1] != n_classes:
            raise EvoPruneError(f"{self.head_path(reference)} has {head.sizes[-1]} outputs but "
                                f"result.json lists {n_classes} classes; the folder is "
                                "inconsistent: run the experiment again")
        return head


def open_run(run_dir: str | Path) -> RunFolder:
    """The run folder at ``run_dir``; EvoPruneError naming the path if it is not a finished run."""
    path = Path(run_dir)
    if not path.exists():
        raise EvoPruneError(f"run folder {path} does not exist; pass the folder that "
                            "'evoprune run' wrote (its --out)")
    if not path.is_dir():
        raise EvoPruneError(f"{path} is not a folder; pass the run folder that 'evoprune run' "
                            "wrote (its --out)")
    result_file = path / "result.json"
    if not result_file.is_file():
        raise EvoPruneError(f"{path} has no result.json, so it is not a finished run; an "
                            "interrupted run finishes when the same 'evoprune run' command is "
                            "started again")
    result = _read_json(result_file)
    for key in ("classes", "n_classes", "backbone", "encoding", "best_mask", "test_accuracy",
                "reference_test_accuracy"):
        if key not in result:
            raise EvoPruneError(f"{result_file} lacks {key!r}; it was not written by this "
                                "version of evoprune's 'run'")
    if not (path / HEAD_FILE).is_file():
        raise EvoPruneError(f"{path} has no {HEAD_FILE} (the evolved head's weights); run the "
                            "experiment again to write it")
    config_file = path / "config.json"
    config = _read_json(config_file) if config_file.is_file() else {}
    return RunFolder(path=path, result=result, config=config)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EvoPruneError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise EvoPruneError(f"{path} does not hold a JSON object")
    return data


def load_head(path: str | Path, n_inputs: int | None = None) -> CompactHead:
    """A :class:`CompactHead` from a safetensors file written by the experiment."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise EvoPruneError(f"head file {path} does not exist")
    try:
        state = load_file(str(path))
    except (OSError, SafetensorError) as exc:
        raise EvoPruneError(f"cannot read head file {path}: {exc}") from None
    try:
        return CompactHead.from_state_dict(state, n_inputs=n_inputs)
    except EvoPruneError as exc:
        raise EvoPruneError(f"{path}: {exc}") from None


def read_history(path: str | Path) -> list[dict]:
    """history.csv as one dict per evaluation (the classifier's ``history_`` rows)."""
    rows = []
    with Path(path).open(newline="") as fh:
        for row in csv.DictReader(fh):
            try:
                rec = {k: int(row[k]) for k in _HISTORY_INTS}
                rec.update({k: float(row[k]) for k in _HISTORY_FLOATS})
            except (KeyError, TypeError, ValueError):
                continue  # a row cut short by an interruption
            rows.append(rec)
    return rows


def load(run_dir: str | Path):
    """A fitted :class:`~evoprune.estimator.EvoPruneClassifier` from a run folder.

    It predicts on feature matrices of the run's backbone and, because it knows that backbone
    (``backbone_``), on images too: a list of paths or PIL images, or a 4-d array.
    ``classes_`` are the run's class names.
    """
    from evoprune.encodings import make_encoding
    from evoprune.estimator import EvoPruneClassifier

    run = open_run(run_dir)
    r, cfg = run.result, run.run_config
    params = {"encoding": r["encoding"], "hidden_size": int(r.get("hidden_size", 512))}
    for name in ("population", "evaluations", "trainer", "fitness_split", "val_fraction",
                 "cv_folds", "init", "mutation_prob"):
        if name in cfg:
            params[name] = cfg[name]
    if "seed" in r:
        params["random_state"] = int(r["seed"])
    clf = EvoPruneClassifier(**params)
    head = run.head()
    n_features = int(r.get("feature_dim", head.n_inputs))
    encoding = make_encoding(r["encoding"], n_features, params["hidden_size"])
    best_mask = np.asarray(r["best_mask"], dtype=np.uint8)
    try:
        masks = encoding.decode(best_mask)
    except EvoPruneError as exc:
        raise EvoPruneError(f"{run.path / 'result.json'}: best_mask does not fit: {exc}") from None
    expected = masks.sizes + (len(r["classes"]),)
    if head.sizes != expected or not np.array_equal(head.feature_index.numpy(),
                                                    np.flatnonzero(masks.features)):
        raise EvoPruneError(f"{run.head_path()} (layer sizes {head.sizes}) does not match the "
                            f"best mask in result.json (sizes {expected}); the folder is "
                            "inconsistent: run the experiment again")
    clf.classes_ = np.asarray(r["classes"])
    clf.n_features_in_ = n_features
    clf.encoding_ = encoding
    clf.best_mask_ = best_mask
    clf.masks_ = masks
    clf.head_ = head
    clf.backbone_ = r["backbone"]
    if "fitness" in r:
        clf.best_fitness_ = float(r["fitness"])
    history = run.path / "history.csv"
    clf.history_ = read_history(history) if history.is_file() else []
    clf.run_dir_ = run.path
    return clf
