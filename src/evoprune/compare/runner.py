"""The paper's comparison, repeated: every encoding R times with recorded seeds, plus the
baselines of each run, all scored on one held-out test set that no search sees.

Layout of the output folder::

    DIR/comparison.json            the settings
    DIR/runs/<encoding>_run<k>/    a normal run folder (seed = seed_base + k) + baselines.json
    DIR/summary.csv                one row per (encoding, method, run)
    DIR/stats.csv, DIR/table.md    paired tests of evoprune against each baseline; the tables
    DIR/convergence_<enc>.png, DIR/accuracy_vs_active.png

Data and features are prepared once. A run whose result.json (of the same configuration) exists
is not searched again, and baselines whose baselines.json (same settings, same evolved mask)
exists are not redone, so an interrupted comparison resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evoprune.cluster import session_for
from evoprune.compare.baselines import METHODS, available_methods
from evoprune.compare.layout import (
    finished_context,
    run_dir,
    split_variant,
    variant_label,
)
from evoprune.errors import ConfigError, EvoPruneError
from evoprune.io import WRITE_ERRORS, OutputFolder, writing_folder
from evoprune.runs.experiment import (
    PreparedData,
    RunConfig,
    prepare_data,
    run_experiment,
)
from evoprune.runs.store import mask_to_hex, read_baselines, write_baselines, write_comparison
from evoprune.search import ALGORITHMS

log = logging.getLogger(__name__)


@dataclass
class CompareConfig:
    """A comparison: ``base`` gives every run setting except the encoding and the seed."""

    base: RunConfig
    encodings: tuple[str, ...] = ("fs", "fc1", "fc2", "both")
    runs: int = 5
    algorithms: tuple[str, ...] = ("ssga",)
    seed_base: int = 0
    initial_sparsity: float = 0.1
    poly_epochs: int = 25
    poly_frequency: int = 5
    curves: tuple[float, ...] = ()  # densities of the accuracy-size curves (none: no curves)

    def check(self) -> None:
        """Every setting, before anything is computed or written: the encodings against the
        run settings' declaration (one list of choices), the number of runs, the seeds, and
        the base run settings (:meth:`RunConfig.validate`)."""

        self._check_encodings()
        self._check_runs()
        bad = [a for a in self.algorithms if a not in ALGORITHMS]
        if bad or not self.algorithms or len(set(self.algorithms)) != len(self.algorithms):
            raise ConfigError(
                f"--algorithms {','.join(self.algorithms)}: give one or more of "
                f"{', '.join(ALGORITHMS)}, each once"
            )
        if self.curves:
            from evoprune.compare.curves import check_densities

            check_densities(self.curves)
        for label in self.variants:  # the base settings, with each encoding's budget
            self.run_config(label, 0)

    def _check_encodings(self) -> None:
        """The encodings against the run settings' declaration (one list of choices)."""
        from evoprune.runs.config import BY_NAME

        choices = BY_NAME["encoding"].choice_list() or []
        shown = ",".join(self.encodings)
        where = f"--encodings {shown or repr('')} (encodings={tuple(self.encodings)!r})"
        if not self.encodings:
            raise ConfigError(f"{where}: give at least one of {', '.join(choices)}")
        bad = [e for e in self.encodings if e not in choices]
        if bad:
            raise ConfigError(
                f"{where}: unknown encoding(s) {', '.join(bad)}; choose from {', '.join(choices)}"
            )
        if len(set(self.encodings)) != len(self.encodings):
            raise ConfigError(f"{where}: repeats an encoding")

    def _check_runs(self) -> None:
        """The number of runs, and seeds that stay 32-bit for all of them."""
        from evoprune.runs.config import MAX_SEED

        if isinstance(self.runs, bool) or not isinstance(self.runs, int) or self.runs < 1:
            raise ConfigError(
                f"--runs {self.runs} (runs={self.runs!r}): must be an integer, at least 1"
            )
        if (
            isinstance(self.seed_base, bool)
            or not isinstance(self.seed_base, int)
            or not 0 <= self.seed_base <= MAX_SEED - (self.runs - 1)
        ):
            raise ConfigError(
                f"--seed-base {self.seed_base} (seed_base={self.seed_base!r}): "
                f"must be an integer in [0, {MAX_SEED - (self.runs - 1)}] so that "
                f"the seeds of all {self.runs} runs stay within [0, {MAX_SEED}]"
            )

    @property
    def variants(self) -> tuple[str, ...]:
        """One label per (encoding, algorithm) compared: the encoding for the paper's GA,
        ``<encoding>-<algorithm>`` for any other (``fs-nsga2``: the multi-objective search's
        selected head)."""
        return tuple(variant_label(enc, alg) for alg in self.algorithms for enc in self.encodings)

    def run_config(self, variant: str, run: int) -> RunConfig:
        """The resolved configuration of run ``run`` (0-based) of ``variant`` (an encoding, or
        ``<encoding>-<algorithm>``; an algorithm that optimises several objectives runs
        accuracy,size unless the base asks for more, any other accuracy alone)."""
        encoding, algorithm = split_variant(variant)
        changes: dict = {
            "encoding": encoding,
            "seed": int(self.seed_base) + int(run),
            "algorithm": algorithm,
        }
        if ALGORITHMS[algorithm].several_objectives:
            if len(self.base.objectives) < 2:
                changes["objectives"] = ("accuracy", "size")
        else:
            changes.update(objectives=("accuracy",), select=None)
        return dataclasses.replace(self.base, **changes).validate()

    def baseline_settings(self, cfg: RunConfig, best_mask: np.ndarray) -> dict:
        return {
            "run": cfg.result_dict(),
            "evolved_mask": mask_to_hex(best_mask),
            "initial_sparsity": self.initial_sparsity,
            "poly_epochs": self.poly_epochs,
            "poly_frequency": self.poly_frequency,
            # baselines written before a method was added (or its library installed) are redone
            "methods": list(available_methods()),
        }

    def to_dict(self) -> dict:
        return {
            "base": self.base.to_dict(),
            "encodings": list(self.encodings),
            "algorithms": list(self.algorithms),
            "runs": int(self.runs),
            "seed_base": int(self.seed_base),
            "initial_sparsity": self.initial_sparsity,
            "poly_epochs": self.poly_epochs,
            "poly_frequency": self.poly_frequency,
            "curves": list(self.curves),
        }


def finished_result(path: Path, cfg: RunConfig) -> dict | None:
    """result.json of ``path`` if it holds a finished run of exactly ``cfg`` (read through the
    run store; a missing, unfinished or damaged folder is simply not finished)."""
    from evoprune.runs.experiment import saved_settings
    from evoprune.runs.store import open_run

    try:
        run = open_run(path)
    except EvoPruneError:
        return None
    if run.run_config != saved_settings(cfg, path):
        return None
    return run.result.to_dict()


def finished_baselines(path: Path, settings: dict) -> dict | None:
    return read_baselines(path, settings)


def run_comparison(
    cc: CompareConfig,
    out: str | Path,
    *,
    progress: bool = True,
    cache_dir: str | Path | None = None,
) -> list[dict]:
    """Run (or resume) the comparison into ``out``; returns the summary rows and writes every
    output file."""
    cc.check()
    out = Path(out)
    check_compare_out(cc, out)  # nothing is written before every check has passed
    with OutputFolder(out, "compare").claim(), writing_folder(out, only=WRITE_ERRORS):
        return _run_comparison(cc, out, progress=progress, cache_dir=cache_dir)


#: What a refused comparison's run folder advises: compare never moves a run aside.
_COMPARE_ADVICE = (
    "compare keeps every run it finds and never moves one aside: give compare --out another "
    "folder (or move that run folder away yourself)"
)


def check_compare_out(cc: CompareConfig, out: Path) -> None:
    """Refuse, before anything is written, a comparison folder that cannot take this
    comparison: a file, inside the data, holding files evoprune did not write, or a run folder
    inside it holding a run of other settings (or damaged)."""
    from evoprune.runs.experiment import data_roots, saved_settings
    from evoprune.runs.store import RunWriter

    roots = data_roots(cc.base)
    OutputFolder(out, "compare").check(roots)
    for enc in cc.variants:
        for k in range(int(cc.runs)):
            cfg = cc.run_config(enc, k)
            path = run_dir(out, enc, k)
            RunWriter(path, advice=_COMPARE_ADVICE).check(saved_settings(cfg, path), roots)


def _run_comparison(
    cc: CompareConfig, out: Path, *, progress: bool, cache_dir: str | Path | None
) -> list[dict]:
    from tqdm.auto import tqdm

    from evoprune.compare.tables import write_reports

    with writing_folder(out):
        write_comparison(out, cc.to_dict())
    prepared: PreparedData | None = None

    def data() -> PreparedData:
        nonlocal prepared
        if prepared is None:  # only when something is left to do
            prepared = prepare_data(
                dataclasses.replace(cc.base, seed=int(cc.seed_base)),
                progress=progress,
                cache_dir=cache_dir,
            )
        return prepared

    plan = [(enc, k) for k in range(int(cc.runs)) for enc in cc.variants]
    done = 0
    with (
        session_for(cc.base),
        tqdm(
            total=len(plan), desc="compare", unit="run", disable=not progress, dynamic_ncols=True
        ) as bar,
    ):
        for was_done in _dispatch(cc, out, plan, data, progress):
            done += was_done
            bar.update(1)
    if done:
        log.info("%d of %d runs were finished already and were not redone", done, len(plan))
    if cc.curves:
        from evoprune.compare.curves import run_curves

        results = {
            (v, k): finished_result(run_dir(out, v, k), cc.run_config(v, k)) for v, k in plan
        }
        run_curves(cc, out, data, results, progress=progress)
    rows = summary_rows(cc, out)
    with writing_folder(out):
        write_reports(cc, out, rows)
    return rows


def _dispatch(cc: CompareConfig, out: Path, plan: list, data, progress: bool):
    """Each run of ``plan`` with its baselines: here, in order, or as Ray tasks (the features
    put in the object store once) when the base settings ask for workers or a cluster. Yields
    for each whether it was finished already."""
    from evoprune.cluster import parallel_map, uses_ray

    base = cc.base
    if not uses_ray(base.workers, base.ray_address):
        for enc, k in plan:
            yield _compare_one(data, (cc, out, enc, k, progress))
        return
    todo = [(enc, k) for enc, k in plan if not _finished_run(cc, out, enc, k)]
    yield from [True] * (len(plan) - len(todo))
    jobs = [(cc, out, enc, k, False) for enc, k in todo]
    shared = data() if jobs else None
    for _, was_done in parallel_map(
        _compare_one,
        jobs,
        shared,
        workers=base.workers,
        address=base.ray_address,
        threads=base.threads_per_worker,
    ):
        yield was_done


def _finished_run(cc: CompareConfig, out: Path, enc: str, k: int) -> bool:
    """Whether run ``k`` of ``enc`` and its baselines are finished."""
    cfg = cc.run_config(enc, k)
    result = finished_result(run_dir(out, enc, k), cfg)
    if result is None:
        return False
    settings = cc.baseline_settings(cfg, np.asarray(result["best_mask"], dtype=np.uint8))
    return finished_baselines(run_dir(out, enc, k), settings) is not None


def _compare_one(data, job: tuple) -> bool:
    """Run ``k`` of encoding ``enc`` and its baselines, each unless finished already (``data``:
    the prepared data, or a function that prepares it). True when the run was finished."""
    cc, out, enc, k, progress = job
    cfg = cc.run_config(enc, k)
    path = run_dir(out, enc, k)
    prepared = data if isinstance(data, PreparedData) else None
    result = finished_result(path, cfg)
    was_done = result is not None
    if result is None:
        prepared = prepared or data()
        result = run_experiment(cfg, path, progress=progress, prepared=prepared)
    best_mask = np.asarray(result["best_mask"], dtype=np.uint8)
    settings = cc.baseline_settings(cfg, best_mask)
    if finished_baselines(path, settings) is None:
        prepared = prepared or data()
        _run_and_save_baselines(cc, cfg, prepared, result, path, settings)
    return was_done


def _run_and_save_baselines(
    cc: CompareConfig, cfg: RunConfig, data: PreparedData, result: dict, path: Path, settings: dict
) -> None:
    """The baselines of the finished run in ``path``, reusing the not-pruned head it trained."""
    from evoprune.compare.baselines import PolySchedule, run_baselines

    seconds = result.get("timings", {}).get("reference_training") or 0.0
    results = run_baselines(
        finished_context(cfg, data, path, seconds),
        np.asarray(result["best_mask"], dtype=np.uint8),
        schedule=PolySchedule(cc.initial_sparsity, cc.poly_epochs, cc.poly_frequency),
    )
    write_baselines(path, settings, {name: r.to_dict() for name, r in results.items()})


def summary_rows(cc: CompareConfig, out: Path) -> list[dict]:
    """One row per (encoding, method, run) of the finished runs, evoprune first."""
    rows = []
    for enc in cc.variants:
        for k in range(int(cc.runs)):
            cfg = cc.run_config(enc, k)
            path = run_dir(out, enc, k)
            result = finished_result(path, cfg)
            if result is None:
                continue
            t = result.get("timings", {})
            rows.append(
                {
                    "encoding": enc,
                    "method": "evoprune",
                    "run": k,
                    "seed": cfg.seed,
                    "test_accuracy": result["test_accuracy"],
                    "active_fraction": result["active_fraction"],
                    "head_params": result["head_params"],
                    "seconds": t.get("search", 0.0) + t.get("final_training", 0.0),
                }
            )
            base = finished_baselines(
                path, cc.baseline_settings(cfg, np.asarray(result["best_mask"], dtype=np.uint8))
            )
            if base is None:
                continue
            for method in METHODS:
                m = base["methods"].get(method)  # None: a ranking for other encodings
                if m is None:
                    continue
                rows.append(
                    {
                        "encoding": enc,
                        "method": method,
                        "run": k,
                        "seed": cfg.seed,
                        "test_accuracy": m["test_accuracy"],
                        "active_fraction": m["active_fraction"],
                        "head_params": m["head_params"],
                        "seconds": m["seconds"],
                    }
                )
    return rows
