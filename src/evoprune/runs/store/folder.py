"""A finished run folder, read back: its typed result, its saved settings, its heads; and the
paths results store relative to their folder (results hold no absolute paths of the user's
machine, so the folder can move together with its data)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from evoprune.errors import ConfigError, EvoPruneError
from evoprune.model.head import CompactHead
from evoprune.runs.store.files import (
    CONFIG_FILE,
    HEAD_FILE,
    HISTORY_FILE,
    REFERENCE_HEAD_FILE,
    RESULT_FILE,
    front_head_path,
    hex_to_mask,
    read_json,
)
from evoprune.runs.store.heads import load_head
from evoprune.runs.store.schema import RunResult


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
            return front_head_path(self.path, rank)
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


def list_runs(folder: str | Path) -> list[dict]:
    """One entry per run folder directly inside ``folder`` (``runs/`` or a comparison's
    ``runs/``), sorted by name: finished ones with their results, unfinished ones with the
    evaluations recorded so far."""
    root = Path(folder)
    if not root.is_dir():
        return []
    out = []
    for p in sorted(root.iterdir()):
        if not p.is_dir() or not ((p / RESULT_FILE).is_file() or (p / CONFIG_FILE).is_file()):
            continue
        entry: dict = {"run": p.name, "path": str(p)}
        try:
            if (p / RESULT_FILE).is_file():
                r = json.loads((p / RESULT_FILE).read_text(encoding="utf-8"))
                entry.update(
                    status="finished",
                    dataset=r.get("dataset"),
                    encoding=r.get("encoding"),
                    backbone=r.get("backbone"),
                    seed=r.get("seed"),
                    evaluations=r.get("evaluations"),
                    test_accuracy=r.get("test_accuracy"),
                    reference_test_accuracy=r.get("reference_test_accuracy"),
                    active_fraction=r.get("active_fraction"),
                    wall_seconds=r.get("wall_seconds"),
                )
            else:
                run = json.loads((p / CONFIG_FILE).read_text(encoding="utf-8")).get("run", {})
                history = p / HISTORY_FILE
                done = (
                    max(0, len(history.read_text(encoding="utf-8").splitlines()) - 1)
                    if history.is_file()
                    else 0
                )
                entry.update(
                    status="unfinished",
                    dataset=run.get("data"),
                    encoding=run.get("encoding"),
                    backbone=run.get("backbone"),
                    seed=run.get("seed"),
                    evaluations=done,
                )
        except (OSError, ValueError, AttributeError):
            entry["status"] = "unreadable"
        out.append(entry)
    return out


def peek_result(run_dir: str | Path) -> dict | None:
    """The JSON object in a run folder's ``result.json`` as it is, unchecked (for summaries
    that must not stop at an older or damaged run); None when it cannot be read."""
    try:
        doc = json.loads((Path(run_dir) / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None
