"""result.json: a finished run's outcome as a typed record, and the checks that read it back.

Every key's presence and type are checked against the record's annotations (containers
element by element, numbers finite), then the values that are well typed but impossible
(fractions outside [0, 1], a mask of the wrong length, a confusion matrix of the wrong size);
an old version's file or a damaged one gets one message naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evoprune.errors import EvoPruneError
from evoprune.runs.store.files import RESULT_FILE, SCHEMA_VERSION


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
    # what the final check took off the search's own masks' cross-validated accuracy: what
    # re-ranking inside its folds took off the rankings' top-k masks (None: none was one)
    check_leak: float | None = None
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
