"""The run store: the one reader and writer of a results folder.

A results folder holds ``config.json`` (the settings, trainer and features it was made with),
``history.csv`` (one row per evaluation, appended as it happens), ``result.json`` (written last),
the heads as safetensors state dicts (never pickles) and figures. Every file carries or sits
beside :data:`SCHEMA_VERSION`; a folder written by an older version, or damaged, gets one clear
message. Rules that keep a user's results safe:

- a folder is resumed only by the same configuration; another configuration stops with the
  settings that differ, unless ``overwrite``, which moves the old folder aside (never deletes);
- evoprune never writes into a folder that holds files it did not write (its own are listed in
  the folder's manifest, :class:`~evoprune.io.OutputFolder`), nor inside the data; one writer
  at a time holds the folder's lock;
- history is appended to or atomically replaced, never truncated first, so an interrupted
  resume loses nothing.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import os
import stat
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evoprune.errors import ConfigError, EvoPruneError
from evoprune.io import (
    MANIFEST_FILE,
    OutputFolder,
    atomic_write,
    atomic_write_json,
    temporary_of,
    writing_folder,
)
from evoprune.model.head import CompactHead
from evoprune.search import Evaluation, EvaluationRecord
from evoprune.search.fidelity import FULL

log = logging.getLogger(__name__)

#: Version of the folder's file formats; bumped when a file changes incompatibly.
SCHEMA_VERSION = 2

CONFIG_FILE = "config.json"
RESULT_FILE = "result.json"
HISTORY_FILE = "history.csv"
HEAD_FILE = "head.safetensors"
REFERENCE_HEAD_FILE = "reference_head.safetensors"
FRONT_DIR = "front"
PARETO_FILE = "pareto.csv"

#: Files a finished run writes last; removed when a run (re)starts so that an interrupted run
#: never leaves an older result beside its new configuration.
RESULT_FILES = (RESULT_FILE, HEAD_FILE, REFERENCE_HEAD_FILE, PARETO_FILE)

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


def mask_to_hex(mask: np.ndarray) -> str:
    return np.packbits(np.asarray(mask, dtype=np.uint8)).tobytes().hex()


def hex_to_mask(text: str, n_genes: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(bytes.fromhex(text), dtype=np.uint8))[:n_genes]


# --- history ---------------------------------------------------------------------------------


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
    from evoprune.pareto import to_minimised

    known = {}
    for r in records:
        natural = {"accuracy": r.fitness, "size": r.active_fraction, "ood": r.auroc}
        if any(natural[name] is None for name in objectives):
            continue
        F = np.array([to_minimised(name, natural[name]) for name in objectives])
        known[(r.mask().tobytes(), r.fidelity)] = Evaluation(F=F, accuracy=r.fitness, auroc=r.auroc)
    return known


# --- typed records ---------------------------------------------------------------------------


@dataclass
class RunResult(Mapping):
    """``result.json``: a finished run's outcome. Read as attributes (or, for tables, as a
    read-only mapping of the same names)."""

    dataset: str
    data: str
    backbone: str
    feature_dim: int
    encoding: str
    hidden_size: int
    trainer: str
    fitness_split: str
    leaked_test_set: bool
    seed: int
    classes: list[str]
    n_classes: int
    n_images: int
    n_train: int
    n_test: int
    test_set: str
    skipped_images: list[str]
    genes: int
    active_genes: int
    active_fraction: float
    active_units: dict[str, int]
    total_units: dict[str, int]
    fitness: float
    test_accuracy: float
    reference_test_accuracy: float
    head_params: int
    reference_head_params: int
    head_macs: int
    reference_head_macs: int
    evaluations: int
    iterations: int
    memory_hits: int
    resumed_evaluations: int
    features_cached: bool
    feature_cache_key: str
    timings: dict[str, float]
    wall_seconds: float
    evoprune_version: str
    best_mask: list[int]
    objectives: list[str] = field(default_factory=lambda: ["accuracy"])
    algorithm: str = "ssga"
    select: str | None = None
    front: list[dict] | None = None
    test_auroc: float | None = None
    test_fpr95: float | None = None
    reference_test_auroc: float | None = None
    reference_test_fpr95: float | None = None
    # per-class scores of the shipped and the not-pruned head on the held-out images, and
    # their confusion matrices (true class rows); absent from runs of older versions
    per_class: list[dict] | None = None
    confusion: list[list[int]] | None = None
    reference_confusion: list[list[int]] | None = None
    # where heads were trained ("cpu", "cuda:0 (NVIDIA H100 ...)"); absent in older runs
    device: str | None = None
    # how masks were scored (full, shared, multi) and how many shared-head evaluations the
    # search made; runs of older versions were all full
    fidelity: str = "full"
    shared_evaluations: int = 0
    # how the shipped head was chosen (none: by fitness; cv: re-scored by cross-validation on
    # the training images), its cross-validated accuracy, and the selection bias: fitness
    # minus held-out accuracy (and the same for the cross-validated accuracy)
    final_check: str = "none"
    check_accuracy: float | None = None
    selection_bias: float | None = None
    check_selection_bias: float | None = None
    # the form the backbone ran in for the features ("onnxruntime/cpu", "channels_last/cuda":
    # evoprune.backbones.runtime); features of two forms differ by up to 1e-4
    backbone_form: str | None = None
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if d["front"] is None:  # single-objective runs keep today's keys
            for key in ("front", "select"):
                d.pop(key)
        for key in ("test_auroc", "test_fpr95", "reference_test_auroc", "reference_test_fpr95"):
            if d[key] is None:  # measured only with OOD images
                d.pop(key)
        for key in ("per_class", "confusion", "reference_confusion", "device", "backbone_form"):
            if d[key] is None:  # a run of an older version, read again
                d.pop(key)
        return d

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], path: Path | str = RESULT_FILE) -> RunResult:
        """Check the schema version and every key's presence and type; one message naming the
        file and the key otherwise."""
        version = doc.get("schema_version")
        if version != SCHEMA_VERSION:
            what = (
                "an older version"
                if version is None or (isinstance(version, int) and version < SCHEMA_VERSION)
                else "another version"
            )
            raise EvoPruneError(
                f"{path} was written by {what} of evoprune (schema "
                f"{version}, this one reads {SCHEMA_VERSION}); rerun "
                "'evoprune run' with the same options in a new --out"
            )
        values = {}
        for f in dataclasses.fields(cls):
            if f.name not in doc:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise EvoPruneError(
                        f"{path} lacks {f.name!r}; the file is damaged: rerun "
                        "'evoprune run' to rewrite the run folder"
                    )
                continue
            value = doc[f.name]
            problem = _type_problem(value, str(f.type))
            if problem is None:
                problem = _value_problem(f.name, value, doc)
            if problem is not None:
                raise EvoPruneError(
                    f"{path}: {f.name!r} is {json.dumps(value)[:40]}, {problem}; the file is "
                    "damaged or was edited: rerun 'evoprune run' to rewrite the run folder"
                )
            values[f.name] = value
        return cls(**values)

    def __getitem__(self, key: str) -> Any:
        if key not in self._names():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    def _names(self) -> tuple[str, ...]:
        return tuple(self.to_dict())


_SIMPLE: dict[str, type | tuple[type, ...]] = {
    "str": str,
    "int": int,
    "float": (int, float),
    "bool": bool,
}


def _has_type(value: Any, annotation: object) -> bool:
    """Whether a JSON value fits a field annotation written as text (``from __future__``)."""
    return _type_problem(value, str(annotation)) is None


def _split_top(text: str, sep: str) -> list[str]:
    """``text`` split at ``sep`` outside brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch == "["
        depth -= ch == "]"
        if ch == sep and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    return parts + [text[start:].strip()]


def _type_problem(value: Any, annotation: str) -> str | None:
    """Why a JSON value does not fit an annotation written as text (None when it fits):
    containers are checked element by element, numbers must be finite."""
    problems = []
    for kind in _split_top(annotation, "|"):
        problem = _kind_problem(value, kind)
        if problem is None:
            return None
        problems.append(problem)
    return " or ".join(dict.fromkeys(problems)) or "of another type"


def _kind_problem(value: Any, kind: str) -> str | None:
    """Why ``value`` is not of one alternative ``kind`` of an annotation (None: it is)."""
    if kind == "None":
        return None if value is None else "not null"
    base, _, inner = kind.partition("[")
    inner = inner[:-1] if inner.endswith("]") else inner
    if base == "list":
        return _list_problem(value, inner)
    if base == "dict":
        return _dict_problem(value, inner)
    if base in _SIMPLE:
        if (isinstance(value, bool) and base != "bool") or not isinstance(value, _SIMPLE[base]):
            return f"not {base}"
        if isinstance(value, float) and not math.isfinite(value):
            return "not a finite number"
    return None  # fits, or an annotation this reader does not know: accepted as before


def _list_problem(value: Any, inner: str) -> str | None:
    if not isinstance(value, list):
        return "not a list"
    for i, v in enumerate(value if inner else ()):
        problem = _type_problem(v, inner)
        if problem is not None:
            return f"item {i} is {problem}"
    return None


def _dict_problem(value: Any, inner: str) -> str | None:
    if not isinstance(value, dict):
        return "not an object"
    value_kind = _split_top(inner, ",")[-1] if inner else ""
    for k, v in value.items() if inner else ():
        if _type_problem(v, value_kind) is not None:
            return f"its {k!r} is not {value_kind}"
    return None


#: Keys and types of each Pareto front member and each per-class entry in result.json.
_FRONT_TYPES = {
    "rank": "int",
    "active_fraction": "float",
    "head_params": "int",
    "fitness": "float",
    "test_accuracy": "float",
    "selected": "bool",
    "mask": "str",
}
_PER_CLASS_TYPES = {"class": "str", "support": "int"} | {
    f"{prefix}{score}": "float"
    for prefix in ("", "reference_")
    for score in ("precision", "recall", "f1")
}
_FRACTIONS = ("active_fraction", "fitness", "test_accuracy", "reference_test_accuracy")


def _value_problem(name: str, value: Any, doc: Mapping[str, Any]) -> str | None:
    """Why a well-typed value of result.json is still impossible (None when it is fine)."""
    if name in _FRACTIONS and not 0 <= value <= 1:
        return "not in [0, 1]"
    if name == "best_mask":
        genes = doc.get("genes")
        if isinstance(genes, int) and len(value) != genes:
            return f"{len(value)} values: not the {genes} genes"
        if any(v not in (0, 1) for v in value):
            return "not a mask of 0 and 1"
    if name in ("front", "per_class") and value is not None:
        return _entries_problem(name, value)
    if name in ("confusion", "reference_confusion") and value is not None:
        n = doc.get("n_classes")
        if isinstance(n, int) and (len(value) != n or any(len(row) != n for row in value)):
            return f"not a {n} x {n} matrix"
    return None


def _entries_problem(name: str, value: list) -> str | None:
    """Why an entry of result.json's ``front`` or ``per_class`` list is impossible."""
    types = _FRONT_TYPES if name == "front" else _PER_CLASS_TYPES
    for i, entry in enumerate(value):
        if not isinstance(entry, dict):
            return f"item {i} is not an object"
        for key, kind in types.items():
            if key not in entry:
                return f"item {i} lacks {key!r}"
            problem = _type_problem(entry[key], kind)
            if problem is not None:
                return f"item {i}'s {key!r} is {problem}"
        if name == "front":
            try:
                bytes.fromhex(entry["mask"])
            except ValueError:
                return f"item {i}'s 'mask' is not hexadecimal"
    return None


@dataclass
class RunFolder:
    """A finished run folder: its path, typed result and its config.json (empty if absent)."""

    path: Path
    result: RunResult
    config: dict = field(default_factory=dict)

    @property
    def run_config(self) -> dict:
        """The run's settings as saved (the ``run`` part of config.json)."""
        return self.config.get("run", {})

    def settings(self):
        """The run's :class:`~evoprune.runs.config.RunConfig`, its image sources (data, ood)
        resolved from the folder, to run it again or reuse its data."""
        from evoprune.runs.config import RunConfig

        doc = dict(self.run_config)
        for key in ("data", "ood"):
            if doc.get(key):
                doc[key] = resolve_path(doc[key], self.path)
        if doc.get("backbone"):
            doc["backbone"] = resolve_backbone(doc["backbone"], self.path)
        return RunConfig.from_dict(doc)

    @property
    def backbone(self) -> str:
        """The run's backbone, to build it again: a registered name or a spec whose file
        (stored relative to the folder) is resolved from here."""
        return resolve_backbone(self.result.backbone, self.path)

    def data_roots(self) -> list[Path]:
        """The folders of the run's images (data and OOD sets, CSV manifests' image folders):
        nothing is written inside them."""
        from evoprune.data.loading import source_roots

        roots = []
        for key in ("data", "ood"):
            text = self.run_config.get(key)
            if isinstance(text, str) and text:
                roots += [Path(r) for r in source_roots(resolve_path(text, self.path))]
        return roots

    def front_member(self, rank: int) -> dict:
        """The entry of the front member ``rank`` (result.json's ``front``, pareto.csv's rows);
        one message naming the run and the ranks there are otherwise."""
        front = self.result.front
        if not front:
            raise ConfigError(
                f"--rank {rank}: {self.path} is a single-objective run with one head; drop "
                "--rank (only a multi-objective run has a front to choose from)"
            )
        ranks = [int(m["rank"]) for m in front]
        if isinstance(rank, bool) or rank not in ranks:
            raise ConfigError(
                f"--rank {rank}: the front of {self.path} has ranks {min(ranks)} to "
                f"{max(ranks)} (see pareto.csv; rank {self.selected_rank()} is the shipped head)"
            )
        return front[ranks.index(rank)]

    def selected_rank(self) -> int | None:
        """The rank of the shipped head on the front (None for a single-objective run)."""
        for m in self.result.front or []:
            if m.get("selected"):
                return int(m["rank"])
        return None

    def mask(self, rank: int | None = None) -> np.ndarray:
        """The 0/1 genes of the shipped head, or of front member ``rank``."""
        if rank is None:
            return np.asarray(self.result.best_mask, dtype=np.uint8)
        return hex_to_mask(self.front_member(rank)["mask"], self.result.genes)

    def head_path(self, reference: bool = False, rank: int | None = None) -> Path:
        if rank is not None:
            if reference:
                raise ConfigError("--rank and --reference exclude each other: choose one head")
            self.front_member(rank)
            return self.path / FRONT_DIR / f"head_{rank}.safetensors"
        return self.path / (REFERENCE_HEAD_FILE if reference else HEAD_FILE)

    def head(self, reference: bool = False, rank: int | None = None) -> CompactHead:
        """The evolved head, the not-pruned one with ``reference=True``, or front member
        ``rank`` of a multi-objective run, in eval mode."""
        head = load_head(self.head_path(reference, rank), n_inputs=self.result.feature_dim)
        if head.sizes[-1] != self.result.n_classes:
            raise EvoPruneError(
                f"{self.head_path(reference, rank)} has {head.sizes[-1]} outputs but "
                f"result.json lists {self.result.n_classes} classes; the folder "
                "is inconsistent: run the experiment again"
            )
        return head


def open_run(run_dir: str | Path) -> RunFolder:
    """The finished run folder at ``run_dir``; EvoPruneError naming the path otherwise."""
    path = Path(run_dir)
    if not path.exists():
        raise EvoPruneError(
            f"run folder {path} does not exist; pass the folder that "
            "'evoprune run' wrote (its --out)"
        )
    if not path.is_dir():
        raise EvoPruneError(
            f"{path} is not a folder; pass the run folder that 'evoprune run' wrote (its --out)"
        )
    result_file = path / RESULT_FILE
    if not result_file.is_file():
        raise EvoPruneError(
            f"{path} has no {RESULT_FILE}, so it is not a finished run; an "
            "interrupted run finishes when the same 'evoprune run' command is "
            "started again"
        )
    result = RunResult.from_dict(read_json(result_file), result_file)
    if not (path / HEAD_FILE).is_file():
        raise EvoPruneError(
            f"{path} has no {HEAD_FILE} (the evolved head's weights); run the "
            "experiment again to write it"
        )
    config_file = path / CONFIG_FILE
    config = {}
    if config_file.is_file():
        config = read_json(config_file)
        if not isinstance(config.get("run", {}), dict):
            raise EvoPruneError(
                f"{config_file}: 'run' is {json.dumps(config['run'])[:40]}, not a JSON object "
                "of settings; the file is damaged or was edited: rerun 'evoprune run' to "
                "rewrite the run folder"
            )
    return RunFolder(path=path, result=result, config=config)


def read_json(path: Path) -> dict:
    """A JSON object from ``path``; EvoPruneError naming the file when unreadable."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EvoPruneError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise EvoPruneError(f"{path} does not hold a JSON object")
    return data


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


# --- writing a run ---------------------------------------------------------------------------


def portable_path(path: str, base: Path) -> str:
    """``path`` relative to the results folder ``base``: results hold no absolute paths of the
    user's machine, and the folder can move together with its data."""
    try:
        return os.path.relpath(os.path.abspath(path), os.path.abspath(base))
    except ValueError:  # another drive on Windows
        return Path(path).name


def resolve_path(text: str, base: Path) -> str:
    """The inverse of :func:`portable_path`: a stored source that names a path beside ``base``
    (other values, such as built-in set names, stay as they are)."""
    candidate = Path(base) / text
    return str(candidate.resolve()) if candidate.exists() else text


def portable_backbone(spec: str, base: Path) -> str:
    """A backbone spec as results store it: a file it names relative to the folder ``base``."""
    from evoprune.backbones.specs import local_path, with_local_path

    path = local_path(spec)
    return spec if path is None else with_local_path(spec, portable_path(path, base))


def resolve_backbone(spec: str, base: Path) -> str:
    """The inverse of :func:`portable_backbone`."""
    from evoprune.backbones.specs import local_path, with_local_path

    path = local_path(spec)
    return spec if path is None else with_local_path(spec, resolve_path(path, base))


def check_out_dir(out: Path, data_roots: Sequence[Path] = ()) -> None:
    """Stop before anything is computed when ``out`` cannot hold this run: a file, inside the
    data, or a folder holding files that evoprune did not write (by its manifest)."""
    OutputFolder(out, "run").check(data_roots)


#: Files only a run writes: a folder holding one of them but no config.json is damaged.
_RUN_FILES = (RESULT_FILE, HISTORY_FILE, HEAD_FILE, REFERENCE_HEAD_FILE, PARETO_FILE)


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


def _differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    keys = sorted(set(saved) | set(current))
    return [
        f"{k}: {saved.get(k)!r} there, {current.get(k)!r} now"
        for k in keys
        if saved.get(k) != current.get(k)
    ]


def _results_part(run_doc: Mapping[str, Any]) -> dict:
    """The settings of a saved run that can change its results (a run may be resumed with
    another ``--device``, say)."""
    from evoprune.runs.config import BY_NAME

    return {k: v for k, v in run_doc.items() if k not in BY_NAME or BY_NAME[k].result}


class RunWriter:
    """Writes one run into its folder. :meth:`check` writes nothing; :meth:`claimed` creates
    and locks the folder, :meth:`begin` resumes or starts the run in it, so a run that fails
    before either leaves nothing behind."""

    def __init__(
        self,
        out: str | Path,
        overwrite: bool = False,
        *,
        command: str = "run",
        advice: str = "give --out another folder, or --overwrite to move that run aside and "
        "start afresh",
    ):
        self.out = Path(out)
        self.overwrite = bool(overwrite)
        self.folder = OutputFolder(self.out, command)
        self.advice = advice

    def check(self, run_doc: dict, data_roots: Sequence[Path] = ()) -> None:
        """Before any work: the folder can hold this run (:func:`check_out_dir`), and a run
        already there has the same settings (else the differences, unless ``overwrite``)."""
        self.folder.check(data_roots)
        if self.overwrite:
            return
        saved = self._saved()
        if saved is not None and _results_part(saved["run"]) != _results_part(run_doc):
            self._refuse(saved["run"], run_doc)

    def _saved(self) -> dict | None:
        """The checked config.json of the folder; None for a new or empty folder. A damaged
        one, or a run's files without it, is refused (unless ``overwrite``)."""
        cfg_file = self.out / CONFIG_FILE
        if not cfg_file.is_file():
            present = [n for n in _RUN_FILES if (self.out / n).exists()]
            if present and not self.overwrite:
                raise ConfigError(
                    f"{cfg_file} is missing but {self.out} holds a run ({', '.join(present)}); "
                    "the folder is damaged and is not replaced: "
                    + self.advice.replace("that run", "it")
                )
            return None
        try:
            return read_saved_config(cfg_file, self.advice.replace("that run", "that folder"))
        except ConfigError:
            if self.overwrite:
                return {"run": {}}
            raise

    def finished(self, run_doc: dict) -> dict | None:
        """The ``result.json`` of this very run when the folder holds it finished (same result
        settings, a readable result), else None: starting it again must change nothing."""
        try:
            saved = json.loads((self.out / CONFIG_FILE).read_text(encoding="utf-8")).get("run")
            doc = json.loads((self.out / RESULT_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError, AttributeError):
            return None
        if not isinstance(saved, dict) or _results_part(saved) != _results_part(run_doc):
            return None
        if not all((self.out / name).is_file() for name in (HEAD_FILE, REFERENCE_HEAD_FILE)):
            return None  # damaged: running it again rewrites it
        try:
            return RunResult.from_dict(doc, self.out / RESULT_FILE).to_dict()
        except EvoPruneError:
            return None

    def _refuse(self, saved: Mapping[str, Any], current: Mapping[str, Any]) -> None:
        diff = _differences(saved, current)
        raise ConfigError(
            f"{self.out} holds a run of another configuration ("
            + "; ".join(diff[:6])
            + (" ..." if len(diff) > 6 else "")
            + "); "
            + self.advice
        )

    @contextmanager
    def claimed(self) -> Iterator[RunWriter]:
        """Create and lock the folder (a second writer is refused) while the run writes it."""
        with self.folder.claim():
            yield self

    def begin(
        self, config_doc: dict, n_genes: int, objectives: Sequence[str]
    ) -> tuple[dict[tuple[bytes, str], Evaluation], HistoryAppender]:
        """Write config.json and open history.csv (inside :meth:`claimed`); returns what an
        interrupted run of the same configuration already evaluated (reused, not retrained)
        and the history appender."""
        config_doc = {"schema_version": SCHEMA_VERSION, **config_doc}
        records: list[EvaluationRecord] = []
        cfg_file, hist = self.out / CONFIG_FILE, self.out / HISTORY_FILE
        saved = self._saved()  # again, under the lock
        if saved is not None:
            same = {k: saved.get(k) for k in config_doc if k != "evoprune_version"} == {
                k: v for k, v in config_doc.items() if k != "evoprune_version"
            }
            if not same:
                if not self.overwrite:

                    def flat(doc: Mapping[str, Any]) -> dict:
                        return {
                            **doc.get("run", {}),
                            **{
                                k: v for k, v in doc.items() if k not in ("run", "evoprune_version")
                            },
                        }

                    self._refuse(flat(saved), flat(config_doc))
                self._move_aside()
            elif hist.is_file():
                records = read_history(hist, n_genes)
                if records:
                    log.info("resuming: %d evaluations are already in %s", len(records), hist)
        elif self.folder.listed() and self.overwrite:
            self._move_aside()
        with self.writing():
            listed = self.folder.listed()
            for leftover in self.out.iterdir():  # unfinished writes of a killed run
                original = temporary_of(leftover.name)
                ours = original is not None and (original in listed or original == MANIFEST_FILE)
                if leftover.is_file() and ours:
                    leftover.unlink()
            for name in RESULT_FILES:
                (self.out / name).unlink(missing_ok=True)
            self.folder.forget(RESULT_FILES)
            atomic_write_json(cfg_file, config_doc)
            appender = HistoryAppender(hist, objectives, records)
        return known_evaluations(records, objectives), appender

    def _move_aside(self) -> None:
        target = self.folder.move_aside()
        log.warning("moved the previous run in %s aside to %s (--overwrite)", self.out, target)

    def writing(self):
        """An OSError while writing the folder (read-only, disk full...) as one message."""
        return writing_folder(self.out)

    def finish(
        self, result: RunResult, history: Sequence[EvaluationRecord], objectives: Sequence[str]
    ) -> None:
        """The complete history (atomically) and result.json, the last file written."""
        with self.writing():
            write_history(self.out / HISTORY_FILE, history, objectives)
            atomic_write_json(self.out / RESULT_FILE, result.to_dict())
