"""Class relevance as the paper measures it: the run's configuration searched again without each
class in turn, and with one class added gradually (a growing share of its training images).

Each variant is a full run on the cached features (no CNN pass): the run's search
(:func:`~evoprune.runs.evolve.evolve`, with an executor when one is given) on the variant's
training images, the best mask retrained and scored on the held-out images of the classes the
head knows, next to the not-pruned head (:func:`~evoprune.runs.front.finish_heads`). A smaller
budget (``evaluations``) makes it practical on a CPU; it is recorded in every row, and the
"all classes" row is searched again with that budget so that rows compare like with like.
Rows are written to the CSV as they finish, and a rerun with the same settings reuses them.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evoprune.analysis.context import AnalysisContext
from evoprune.errors import ConfigError, DataError
from evoprune.model.head import accuracy
from evoprune.progress import WorkBar
from evoprune.runs.config import RunConfig
from evoprune.runs.context import RunContext
from evoprune.runs.experiment import PreparedData
from evoprune.runs.store import read_table, write_records
from evoprune.search import Executor
from evoprune.settings import FitnessSettings, SearchSettings

log = logging.getLogger(__name__)

REMOVE_FILE = "classes_removed.csv"
REMOVE_PLOT = "classes_removed.png"
#: The shares of the added class's training images, as the paper (plus all of them).
FRACTIONS = (0.2, 0.4, 0.6, 0.8, 1.0)


@dataclass
class RelevanceRow:
    """One variant of the run: which class it leaves out or how much of it it adds."""

    variant: str  # "all classes", "without NAME" or "NAME 40%"
    class_name: str
    fraction: float  # share of the class's training images used (0: the class is left out)
    n_classes: int
    n_train: int
    n_test: int
    evaluations: int
    seed: int
    test_accuracy: float
    reference_test_accuracy: float
    active_fraction: float
    class_recall: float  # accuracy on the held-out images of class_name (NaN if not learned)


def subset(data: PreparedData, keep: np.ndarray, classes: Sequence[str]) -> PreparedData:
    """``data`` restricted to the images at positions ``keep``, labels renumbered onto
    ``classes`` (names of the classes the subset holds, in the data's order)."""
    keep = np.sort(np.asarray(keep, dtype=np.int64))
    index = {name: i for i, name in enumerate(classes)}
    new_label = np.array([index.get(name, -1) for name in data.classes])
    position = np.full(len(data.labels), -1, dtype=np.int64)
    position[keep] = np.arange(len(keep))
    return dataclasses.replace(
        data,
        classes=list(classes),
        paths=[data.paths[i] for i in keep],
        labels=new_label[data.labels[keep]],
        train_idx=position[np.intersect1d(data.train_idx, keep)],
        test_idx=position[np.intersect1d(data.test_idx, keep)],
        X=data.X[keep],
    )


def without_class(data: PreparedData, name: str) -> PreparedData:
    """Every image but those of class ``name``."""
    c = data.classes.index(name)
    return subset(data, np.flatnonzero(data.labels != c), [n for n in data.classes if n != name])


def with_share(data: PreparedData, name: str, fraction: float, seed: int) -> PreparedData:
    """All other images, and ``fraction`` of class ``name``'s training images (drawn with
    ``seed``; a larger share holds every image of a smaller one), all its held-out ones."""
    c = data.classes.index(name)
    own_train = np.intersect1d(data.train_idx, np.flatnonzero(data.labels == c))
    order = np.random.default_rng(seed).permutation(own_train)
    taken = order[: int(round(fraction * len(own_train)))]
    dropped = np.setdiff1d(own_train, taken)
    return subset(data, np.setdiff1d(np.arange(len(data.labels)), dropped), data.classes)


def _class_index(ctx: AnalysisContext, name: str, option: str) -> int:
    classes = ctx.data.classes
    if name not in classes:
        raise ConfigError(
            f"{option} {name}: the run has no class {name!r}; its classes are {', '.join(classes)}"
        )
    return classes.index(name)


def _settings(ctx: AnalysisContext, evaluations: int | None) -> RunConfig:
    """The run's settings with the analysis budget (the run's own when None); :func:`rerun`
    trains with the trainer's settings as the run saved them (``ctx.trainer``)."""
    cfg = ctx.cfg
    if evaluations is not None:
        cfg = dataclasses.replace(cfg, evaluations=int(evaluations)).validate()
    return cfg


def rerun(
    ctx: AnalysisContext,
    data: PreparedData,
    cfg: RunConfig,
    *,
    variant: str,
    class_name: str,
    fraction: float,
    executor: Executor | None = None,
) -> RelevanceRow:
    """Search ``data`` with settings ``cfg`` and score the shipped head on its held-out images."""
    from evoprune.runs.evolve import evolve
    from evoprune.runs.experiment import prepare_ood
    from evoprune.runs.front import finish_heads

    ood = prepare_ood(cfg, progress=False, cache_dir=ctx.cache_dir) if cfg.ood else None
    context = RunContext.of_data(
        cfg, data, trainer=ctx.trainer, ood_search=None if ood is None else ood.X_search
    )
    evolved = evolve(context, executor=executor, progress=ctx.progress, progress_label=variant)
    final = finish_heads(context, evolved, ood)
    recall = float("nan")
    if class_name in data.classes:
        own = data.y_test == data.classes.index(class_name)
        recall = accuracy(final.head, data.X_test[own], data.y_test[own])
    return RelevanceRow(
        variant=variant,
        class_name=class_name,
        fraction=float(fraction),
        n_classes=data.n_classes,
        n_train=len(data.train_idx),
        n_test=len(data.test_idx),
        evaluations=cfg.budget,
        seed=int(cfg.seed),
        test_accuracy=float(final.test_accuracy),
        reference_test_accuracy=float(final.reference_test_accuracy),
        active_fraction=float(final.mask.mean()),
        class_recall=recall,
    )


class _Table:
    """A CSV of rows written atomically after each new row; rows of an earlier call with the
    same variant, budget and seed are reused (an interrupted analysis resumes)."""

    def __init__(self, path: Path):
        self.path = path
        self.rows: list[RelevanceRow] = []
        self.old: dict[tuple, RelevanceRow] = {}
        for row in read_table(path):
            try:
                r = _parse_row(row)
            except (KeyError, TypeError, ValueError):
                continue
            self.old[(r.variant, r.evaluations, r.seed)] = r

    def get(self, variant: str, cfg: RunConfig) -> RelevanceRow | None:
        return self.old.get((variant, cfg.budget, int(cfg.seed)))

    def add(self, row: RelevanceRow) -> None:
        self.rows.append(row)
        write_records(self.path, self.rows)


def _parse_row(row: dict) -> RelevanceRow:
    values: dict = {}
    for f in dataclasses.fields(RelevanceRow):
        text = row[f.name]
        values[f.name] = {"int": int, "float": float}.get(str(f.type), str)(text)
    return RelevanceRow(**values)


def _row(
    table: _Table,
    ctx: AnalysisContext,
    data: PreparedData,
    cfg: RunConfig,
    executor,
    bar: WorkBar,
    **what,
) -> RelevanceRow:
    """The variant's row: reused from the table, or measured and written at once."""
    row = table.get(what["variant"], cfg)
    reused = row is not None
    if row is None:
        log.info("class relevance: searching %s (%d evaluations)", what["variant"], cfg.evaluations)
        row = rerun(ctx, data, cfg, executor=executor, **what)
    table.add(row)
    bar.done(skipped=reused)
    return row


def _searches_bar(ctx: AnalysisContext, n: int, what: str) -> WorkBar:
    """A bar over an analysis's ``n`` searches (each also draws its own bar of evaluations)."""
    return WorkBar(n, desc=what, unit="search", enabled=ctx.progress)


def remove_each_class(
    ctx: AnalysisContext, *, evaluations: int | None = None, executor: Executor | None = None
) -> list[RelevanceRow]:
    """The run's configuration on all classes, then without each class in turn: held-out
    accuracy and % active of each. Writes ``analysis/classes_removed.csv`` and ``.png``."""
    from evoprune.plots.analysis import plot_removed

    classes = ctx.data.classes
    if len(classes) < 3:
        raise ConfigError(
            f"--remove-each-class: {ctx.run.path} has {len(classes)} classes; removing one "
            "must leave at least 2 to classify: use a run with 3 or more classes"
        )
    cfg = _settings(ctx, evaluations)
    table = _Table(ctx.out / REMOVE_FILE)
    with _searches_bar(ctx, 1 + len(classes), "classes removed") as bar:
        _row(
            table,
            ctx,
            ctx.data,
            cfg,
            executor,
            bar,
            variant="all classes",
            class_name="",
            fraction=1.0,
        )
        for name in classes:
            _row(
                table,
                ctx,
                without_class(ctx.data, name),
                cfg,
                executor,
                bar,
                variant=f"without {name}",
                class_name=name,
                fraction=0.0,
            )
    plot_removed(table.rows, ctx.out / REMOVE_PLOT, title=_title(ctx, cfg))
    return table.rows


def _min_images(cfg: FitnessSettings) -> int:
    """Training images a class needs so that every fitness fold fits and scores on it."""
    return int(cfg.cv_folds) if cfg.fitness_split == "cv" else 2


def add_class(
    ctx: AnalysisContext,
    name: str,
    *,
    fractions: Sequence[float] = FRACTIONS,
    evaluations: int | None = None,
    executor: Executor | None = None,
) -> list[RelevanceRow]:
    """The run without class ``name``, then with ``fractions`` of its training images added
    (its held-out images are scored once it is learned). Writes
    ``analysis/add_<name>.csv`` and ``.png``."""
    from evoprune.plots.analysis import plot_added

    c = _class_index(ctx, name, "--add-class")
    cfg = _settings(ctx, evaluations)
    data = ctx.data
    n_own = int(np.sum(data.y_train == c))
    smallest = int(round(min(fractions) * n_own))
    if smallest < _min_images(cfg):
        raise DataError(
            f"--add-class {name}: the class has {n_own} training images, so "
            f"{min(fractions):.0%} of them is {smallest}, too few to search with (each "
            f"class needs at least {_min_images(cfg)} in the fitness split "
            f"{cfg.fitness_split!r}); add images of {name!r} or pick a larger class"
        )
    if len(data.classes) < 3:
        raise ConfigError(
            f"--add-class {name}: {ctx.run.path} has {len(data.classes)} classes; without "
            f"{name!r} at least 2 must remain to classify: use a run with 3 or more classes"
        )
    table = _Table(ctx.out / f"add_{_safe(name)}.csv")
    with _searches_bar(ctx, 1 + len(fractions), f"adding {name}") as bar:
        _row(
            table,
            ctx,
            without_class(data, name),
            cfg,
            executor,
            bar,
            variant=f"{name} 0%",
            class_name=name,
            fraction=0.0,
        )
        for fraction in fractions:
            _row(
                table,
                ctx,
                with_share(data, name, fraction, int(cfg.seed)),
                cfg,
                executor,
                bar,
                variant=f"{name} {fraction:.0%}",
                class_name=name,
                fraction=fraction,
            )
    plot_added(table.rows, ctx.out / f"add_{_safe(name)}.png", title=_title(ctx, cfg))
    return table.rows


def _safe(name: str) -> str:
    """A class name as part of a file name."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def _title(ctx: AnalysisContext, cfg: SearchSettings) -> str:
    r = ctx.run.result
    return f"{r.dataset} · {r.encoding} · seed {r.seed} · {cfg.evaluations} evaluations"
