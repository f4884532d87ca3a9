"""Is the search worth running? Its best head at or below each density against the strongest
one-shot ranking there, and the paper's GA beside them, on several real datasets and seeds.

    python benchmarks/search_vs_rankings.py            # elpv, digits, mnist, textures; 5 seeds
    python benchmarks/search_vs_rankings.py --quick    # digits, 2 seeds, 16 evaluations
    python benchmarks/search_vs_rankings.py --evaluations 100 --init ranked   # another recipe
    python benchmarks/search_vs_rankings.py --plot cells.png   # draw the JSON's cells, run nothing

The search's recipe is given like ``evoprune run``'s options (every run option except --data and
--seed; ``--objectives accuracy,size`` and, where the setting exists, ``--fidelity multi`` are
this script's defaults; init and variation keep the run defaults). The paper's GA is the same
recipe with ``--init random``, the paper's variation, ``--fidelity full``, one objective and the
steady-state GA (``--paper SETTING=VALUE`` changes it).

For each dataset the features are computed once (feature cache); each seed draws its own
stratified held-out split (``--test-fraction``) of the same images. For each dataset x seed:

- the search, run through the library (``run_experiment``): its head at or below each density
  is the front member with the best score among those with at most that density (the score the
  library chose the front by: the final check's cross-validated accuracy, ties broken by its
  mean probability of the true class, or the other way round with ``--final-check cv-prob``,
  where it ran, else the fitness), retrained on all training images by the library and scored
  on the held-out images;
  for one objective, the evaluated mask of full fidelity with the highest fitness, retrained
  here with the run's trainer and seed;
- the paper's GA, the same way;
- every ranking of :mod:`evoprune.compare.rankings` that applies (``Ranker.methods``) at exactly
  each density, retrained the same way, with its fitness on the same fitness split.

Per dataset: one evaluation of the paper trainer (a density-0.5 mask on the fitness folds,
timed) and the rank agreement (Kendall's tau) of the shared score with full training on
``--kendall-masks`` masks of densities log-uniform from one unit to all of them (where the
problem has the shared fidelity).

A cell is one dataset x density. The strongest ranking of a cell is the one with the highest
mean held-out accuracy over the seeds, chosen after the fact; the cell is won when the search's
mean is higher. That choice sees the held-out images, so it favours the rankings (the largest of
several noisy means); beside it, reported without a target, the ranking chosen on the other seeds
(leave one seed out: ``mean_delta_vs_ranking_chosen_on_other_seeds_points``,
``cells_won_vs_ranking_chosen_on_other_seeds_fraction``, ``worst_cell_delta_vs_...``) and each
ranking alone (``vs_each_ranking``). Keys: ``cells_won_vs_best_ranking_fraction``,
``mean_delta_vs_best_ranking_points``, ``worst_cell_delta_points``,
``search_seconds_in_paper_evaluations`` (the search's seconds, shared heads and final check
included, over one paper evaluation, per dataset then averaged),
``shared_vs_full_kendall_tau``, ``selection_bias_points_search`` and
``selection_bias_points_paper_ga`` (the accuracy a picked head was chosen with, the final
check's cross-validated accuracy where it ran, else the fitness, minus its held-out accuracy,
in points; ``_shipped`` for the runs' shipped heads, ``_best_ranking`` for the
strongest ranking's heads, whose fitness is measured on the same fitness split), with per-cell
details, held-out sizes and sampling errors. The search's seconds are the run's ``search``
timing (shared heads included: they are trained inside it) plus its final check.

The JSON (benchmarks/search_vs_rankings.json; -quick.json with --quick) is written after every
part (dataset preparation, each search, GA and ranking set); a rerun with the same recipe skips
the parts that are there and adds missing datasets or seeds. A different recipe in the same file
is refused: give another --out.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from evoprune.compare import Ranker, check_densities, density_keep
from evoprune.data import stratified_split
from evoprune.errors import ConfigError, EvoPruneError
from evoprune.io import atomic_write_json
from evoprune.model import accuracy
from evoprune.plots import COLORS, legend_outside, pyplot, save_figure, styled
from evoprune.problem import HeadProblem, HeadTraining
from evoprune.runs import (
    BY_NAME,
    HISTORY_FILE,
    REFERENCE_HEAD_FILE,
    PreparedData,
    RunConfig,
    RunContext,
    add_run_options,
    config_from_args,
    hex_to_mask,
    load_head,
    prepare_data,
    run_experiment,
)
from evoprune.runs.front import check_ranking

log = logging.getLogger("benchmarks")
HERE = Path(__file__).resolve().parent
DATASETS = ("elpv", "digits", "mnist", "textures")
DENSITIES = (0.02, 0.05, 0.1, 0.2)
#: (key, comparison, target) of the issue; selection bias is compared between the two searches.
TARGETS = (
    ("cells_won_vs_best_ranking_fraction", ">=", 0.75),
    ("mean_delta_vs_best_ranking_points", ">=", 0.5),
    ("worst_cell_delta_points", ">=", -0.5),
    ("search_seconds_in_paper_evaluations", "<=", 1.0),
    ("shared_vs_full_kendall_tau", ">=", 0.6),
)
#: Timings of a run that are not its search: reporting, not choosing.
NOT_SEARCH = ("features", "final_training", "reference_training", "shared_heads")
#: The paper's GA: these settings, where this version has them, over the search's recipe.
PAPER_GA = {
    "init": "random",
    "variation": "paper",
    "fidelity": "full",
    "shared_evaluations": None,
    "final_check": "none",
    "objectives": "accuracy",
    "algorithm": "ssga",
}
#: The search's defaults here, where this version accepts them (else the run defaults).
SEARCH_DEFAULTS = {"objectives": "accuracy,size", "fidelity": "multi"}
QUICK = {"datasets": "digits", "seeds": 2, "evaluations": 16, "population": 8, "limit": 150}


# --- settings -------------------------------------------------------------------------------


def accepted(settings: dict[str, Any]) -> dict[str, Any]:
    """The ``settings`` this version of evoprune has and accepts, each checked on its own."""
    out = {}
    for name, value in settings.items():
        if name not in BY_NAME:
            continue
        try:
            RunConfig(**{name: value}).validate()
        except ConfigError:
            continue
        out[name] = value
    return out


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    b = p.add_argument_group("benchmark")
    b.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated --data names")
    b.add_argument("--densities", default=",".join(map(str, DENSITIES)))
    b.add_argument("--seeds", type=int, default=5, help="seeds first..first+N-1. Default: 5")
    b.add_argument("--first-seed", type=int, default=0)
    b.add_argument(
        "--paper",
        action="append",
        default=[],
        metavar="SETTING=VALUE",
        help="a setting of the paper's GA over the search's recipe (repeatable); defaults: "
        + ", ".join(f"{k}={v}" for k, v in PAPER_GA.items()),
    )
    b.add_argument(
        "--rankings",
        default=None,
        metavar="M1,M2",
        help="the rankings to run (default: every one that applies to the encoding)",
    )
    b.add_argument("--kendall-masks", type=int, default=200)
    b.add_argument(
        "--quick",
        action="store_true",
        help="digits (150 images), 2 seeds, 16 evaluations, population 8, 20 masks for tau",
    )
    b.add_argument("--out", default=None, help="Default: benchmarks/search_vs_rankings.json")
    b.add_argument("--runs-dir", default=None, help="keep the runs here. Default: temporary")
    b.add_argument("--cache-dir", default=None, help="feature cache. Default: the user's")
    b.add_argument(
        "--plot",
        default=None,
        metavar="PNG",
        help="draw the cells of the --out JSON as it stands into PNG and stop (runs nothing)",
    )
    add_run_options(p, exclude=("data", "seed"))
    p.set_defaults(**accepted(SEARCH_DEFAULTS))
    args = p.parse_args(argv)
    if args.quick:
        given = set(sys.argv[1:] if argv is None else argv)
        for name, value in QUICK.items():
            if f"--{name}" not in given:
                setattr(args, name, value)
        if "--kendall-masks" not in given:
            args.kendall_masks = 20
    return args


def recipes(args: argparse.Namespace) -> tuple[RunConfig, RunConfig]:
    """The search's and the paper GA's settings (data and seed set per part), validated."""
    search = config_from_args(args, data=DATASETS[0], seed=args.first_seed)
    paper = dict(accepted(PAPER_GA))
    for item in args.paper:
        name, sep, value = item.partition("=")
        if not sep or name.replace("-", "_") not in BY_NAME:
            raise ConfigError(f"--paper {item!r}: give SETTING=VALUE with a run setting name")
        paper[name.replace("-", "_")] = value
    try:
        typed = _typed(paper)
    except ValueError as exc:
        raise ConfigError(f"--paper: {exc}") from exc
    return search.validate(), dataclasses.replace(search, **typed).validate()


def _typed(values: dict[str, Any]) -> dict[str, Any]:
    """String values of --paper as their settings' types (validate() checks them)."""
    out = {}
    for name, value in values.items():
        t = BY_NAME[name].type
        if isinstance(value, str) and t in (int, float):
            value = t(value)
        elif isinstance(value, str) and t is bool:
            value = value.lower() in ("1", "true", "yes")
        out[name] = value
    return out


def recipe_doc(cfg: RunConfig) -> dict:
    doc = cfg.to_dict()
    for key in ("data", "seed"):
        doc.pop(key, None)
    return doc


# --- one dataset, one seed ------------------------------------------------------------------


def resplit(data: PreparedData, seed: int, test_fraction: float) -> PreparedData:
    """The same images and features with the seed's own stratified held-out split."""
    train, test = stratified_split(data.labels, test_fraction, seed, classes=data.classes)
    return dataclasses.replace(
        data,
        train_idx=train,
        test_idx=test,
        test_origin=f"stratified {test_fraction:.0%} held out (seed {seed})",
    )


def make_ranker(cfg: RunConfig, data: PreparedData, reference=None) -> Ranker:
    return Ranker(RunContext.of_data(cfg, data), reference)


def history_masks(folder: Path, n_genes: int) -> list[tuple[float, float, np.ndarray]]:
    """(active fraction, fitness, mask) of every evaluation in history.csv scored by full
    training (rows of another fidelity, where the history records one, are left out)."""
    import csv

    rows = []
    with (folder / HISTORY_FILE).open(newline="") as fh:
        for row in csv.DictReader(fh):
            if row.get("fidelity") not in (None, "", "full"):
                continue
            try:
                mask = hex_to_mask(row["mask"], n_genes)
                rows.append((float(row["active_fraction"]), float(row["fitness"]), mask))
            except (KeyError, ValueError):
                continue  # a row cut short by an interruption
    return rows


def picks(result: dict, folder: Path, ranker: Ranker, data: PreparedData, densities) -> dict:
    """Per density, the head a search offers at or below it: the highest fitness (then the
    fewest genes) among its front (multi-objective) or its full-fidelity evaluations."""
    out: dict[str, dict | None] = {}
    front = result.get("front")
    evaluated = None if front else history_masks(folder, ranker.encoding.n_genes)
    for key in densities:
        d = float(key)
        if front:
            ok = [m for m in front if m["active_fraction"] <= d + 1e-9]
            rank = _ranking(result.get("final_check"))
            best = max(ok, key=lambda m: (rank(m), -m["active_genes"]), default=None)
            out[key] = (
                None
                if best is None
                else {
                    "active_fraction": best["active_fraction"],
                    "fitness": best["fitness"],
                    "check_accuracy": best.get("check_accuracy"),
                    "score": _score(best),
                    "check_probability": best.get("check_probability"),
                    "test_accuracy": best["test_accuracy"],
                    "from": "front",
                }
            )
            continue
        ok2 = [r for r in evaluated or [] if r[0] <= d + 1e-9]
        if not ok2:
            out[key] = None
            continue
        frac, fit, mask = max(ok2, key=lambda r: (r[1], -r[0]))
        head = ranker.retrain(mask)
        out[key] = {
            "active_fraction": frac,
            "fitness": fit,
            "score": fit,
            "test_accuracy": accuracy(head, data.X_test, data.y_test),
            "from": "history",
        }
    return out


def _score(member: dict) -> float:
    """The accuracy a head was chosen with: the final check's cross-validated accuracy where it
    ran, else the fitness."""
    checked = member.get("check_accuracy")
    return float(member["fitness"] if checked is None else checked)


def _ranking(final_check: str | None):
    """What the library chose a front head by: where the final check ran, its
    ``runs.front.check_ranking`` of the head's cross-validated accuracy and mean probability
    of the true class; else the fitness."""

    def rank(member: dict) -> float:
        checked = member.get("check_accuracy")
        if checked is None or final_check is None:
            return float(member["fitness"])
        cv = np.array([float(checked)])
        prob = np.array([float(member.get("check_probability") or 0.0)])
        return float(check_ranking(final_check, cv, prob)[0])

    return rank


def search_seconds(timings: dict) -> float:
    """The search's seconds: the run's timings less features and the heads trained to report."""
    return float(sum(v for k, v in timings.items() if k not in NOT_SEARCH and v is not None))


def run_part(cfg: RunConfig, data: PreparedData, folder: Path, densities) -> tuple[dict, Ranker]:
    """One search through the library into ``folder`` (a fresh one: a resumed search would time
    only its remainder); its picks per density, and the ranker of its training data."""
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
    t0 = time.perf_counter()
    result = run_experiment(cfg, folder, progress=False, prepared=data, overwrite=True)
    wall = time.perf_counter() - t0
    reference = load_head(folder / REFERENCE_HEAD_FILE, n_inputs=data.X.shape[1])
    ranker = make_ranker(cfg, data, reference)
    part = {
        "search_seconds": search_seconds(result["timings"]),
        "wall_seconds": wall,
        "timings": result["timings"],
        "evaluations": result["evaluations"],
        "shipped": {
            k: result.get(k)
            for k in (
                "active_fraction",
                "active_genes",
                "fitness",
                "check_accuracy",
                "test_accuracy",
            )
        },
        "reference_test_accuracy": result["reference_test_accuracy"],
        "front_size": None if not result.get("front") else len(result["front"]),
        "picks": picks(result, folder, ranker, data, densities),
    }
    return part, ranker


def ranking_methods(ranker: Ranker, wanted: str | None) -> tuple[str, ...]:
    """The rankings to run: ``wanted`` (comma-separated) or every one that applies."""
    if not wanted:
        return ranker.methods
    names = tuple(m for m in wanted.split(",") if m)
    bad = [m for m in names if m not in ranker.methods]
    if bad or not names:
        raise ConfigError(
            f"--rankings {wanted}: {', '.join(bad) or 'none given'}; choose from "
            f"{', '.join(ranker.methods)} (those that apply to encoding {ranker.encoding.name})"
        )
    return names


def rankings_part(ranker: Ranker, data: PreparedData, densities, methods) -> dict:
    """Held-out accuracy and fitness of each ranking at exactly each density."""
    out: dict[str, dict] = {}
    for method in methods:
        out[method] = {}
        for d in densities:
            chrom, info = ranker.chromosome(method, density_keep(ranker.encoding, float(d)))
            head = ranker.retrain(chrom)
            out[method][d] = {
                "active_fraction": float(chrom.mean()),
                "fitness": ranker.problem.evaluate(chrom[None])[0].accuracy,
                "test_accuracy": accuracy(head, data.X_test, data.y_test),
                **({"chosen": info} if info else {}),
            }
    return out


# --- once per dataset -----------------------------------------------------------------------


def paper_evaluation(ranker: Ranker, seed: int) -> dict:
    """Seconds of one fitness evaluation with the paper's trainer: a density-0.5 mask trained
    and scored on the same fitness folds."""
    rng = np.random.default_rng([int(seed), 22])
    chrom = (rng.random(ranker.encoding.n_genes) < 0.5).astype(np.uint8)
    paper = HeadTraining.of("paper", ranker.seed)
    problem = HeadProblem(ranker.encoding, ranker.n_classes, ranker.problem.folds, paper)
    t0 = time.perf_counter()
    fitness = problem.evaluate(chrom[None])[0].accuracy
    return {"seconds": time.perf_counter() - t0, "fitness": fitness, "density": float(chrom.mean())}


def kendall(ranker: Ranker, n_masks: int, seed: int) -> dict:
    """Kendall's tau between the shared score and full training on ``n_masks`` masks of
    densities log-uniform from one unit to all of them (None without the shared fidelity)."""
    from scipy.stats import kendalltau

    problem = ranker.problem
    if not hasattr(problem, "evaluate_at") or "shared" not in getattr(problem, "fidelities", ()):
        return {"tau": None, "why": "this version has no shared fidelity"}
    n = ranker.encoding.n_genes
    rng = np.random.default_rng([int(seed), 23])
    masks = np.zeros((n_masks, n), dtype=np.uint8)
    for row, k in zip(masks, np.rint(np.exp(rng.uniform(0, np.log(n), n_masks))).astype(int)):
        row[rng.choice(n, size=int(min(max(k, 1), n)), replace=False)] = 1
    t0 = time.perf_counter()
    full = np.array([e.accuracy for e in problem.evaluate_at(masks, "full")])
    t_full = time.perf_counter() - t0
    t0 = time.perf_counter()
    shared = np.array([e.accuracy for e in problem.evaluate_at(masks, "shared")])
    t_shared = time.perf_counter() - t0
    tau = kendalltau(full, shared)
    return {
        "tau": float(tau.statistic) if np.isfinite(tau.statistic) else None,
        "p_value": float(tau.pvalue) if np.isfinite(tau.pvalue) else None,
        "n_masks": int(n_masks),
        "densities": [float(masks.mean(axis=1).min()), float(masks.mean(axis=1).max())],
        "full_seconds": t_full,
        "shared_seconds": t_shared,
    }


# --- the summary ------------------------------------------------------------------------------


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def _se(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None


def _acc(pick: dict | None) -> float | None:
    return None if pick is None else pick["test_accuracy"]


def _points(x: float | None) -> float | None:
    return None if x is None else 100.0 * x


def cell(parts: dict, seeds: list[str], d: str) -> dict:
    """One dataset x density: the search, the strongest ranking and the paper's GA."""
    runs = [parts["seeds"][s] for s in seeds]
    by_method = {
        m: [r["rankings"][m][d]["test_accuracy"] for r in runs] for m in runs[0]["rankings"]
    }
    means = {m: statistics.fmean(v) for m, v in by_method.items()}
    best = max(means, key=lambda m: means[m])
    search = [_acc(r["search"]["picks"][d]) for r in runs]
    paper = [_acc(r["paper_ga"]["picks"][d]) for r in runs]
    paired = [s - b for s, b in zip(search, by_method[best]) if s is not None]
    have = [b for s, b in zip(search, by_method[best]) if s is not None]
    n_test = [r["n_test"] for r in runs]
    p = means[best]
    search_mean = _mean(search)
    delta = None if not paired else 100.0 * (statistics.fmean(paired))
    other = other_seeds_choice(by_method)
    paired_other = [s - o for s, o in zip(search, other or []) if s is not None]
    return {
        "density": float(d),
        "search_mean": search_mean,
        "search_per_seed": search,
        "search_seeds_without_head": sum(s is None for s in search),
        "best_ranking": best,
        "best_ranking_mean": p,
        "best_ranking_mean_on_search_seeds": _mean(have),
        "best_ranking_per_seed": by_method[best],
        "ranking_means": means,
        "paper_ga_mean": _mean(paper),
        "paper_ga_per_seed": paper,
        "paper_ga_seeds_without_head": sum(v is None for v in paper),
        "delta_points": delta,
        "won": bool(delta is not None and delta > 0 and not any(s is None for s in search)),
        "ranking_chosen_on_other_seeds_per_seed": other,
        "delta_vs_ranking_chosen_on_other_seeds_points": _points(_mean(paired_other)),
        "delta_vs_each_ranking_points": {
            m: _points(_mean([s - a for s, a in zip(search, v) if s is not None]))
            for m, v in by_method.items()
        },
        "sampling_error_points": {
            "delta_paired_over_seeds": _points(_se(paired)),
            "search_mean_over_seeds": _points(_se(search)),
            "best_ranking_mean_over_seeds": _points(_se(by_method[best])),
            "one_accuracy_on_heldout": _points(math.sqrt(p * (1 - p) / statistics.fmean(n_test))),
        },
    }


def other_seeds_choice(by_method: dict[str, list[float]]) -> list[float] | None:
    """Per seed, the held-out accuracy of the ranking with the highest mean on the *other*
    seeds (leave one seed out): the strongest ranking as someone could choose it without
    seeing that seed's held-out images. None with fewer than two seeds."""
    n = len(next(iter(by_method.values())))
    if n < 2:
        return None
    out = []
    for i in range(n):
        others = {m: statistics.fmean(v[:i] + v[i + 1 :]) for m, v in by_method.items()}
        out.append(by_method[max(others, key=lambda m: others[m])][i])
    return out


def _tally(deltas) -> dict[str, float | None]:
    """Mean, fraction of cells won (delta > 0) and worst of the cells' deltas (points; cells
    without one left out)."""
    d = [v for v in deltas if v is not None]
    return {
        "mean_delta_points": _mean(d),
        "cells_won_fraction": sum(v > 0 for v in d) / len(d) if d else None,
        "worst_cell_delta_points": min(d, default=None),
    }


def _bias(runs: list[dict], key: str, densities: list[str]) -> float | None:
    """Mean (accuracy the head was chosen with - its held-out accuracy) over the picked heads:
    the final check's cross-validated accuracy where it ran (whichever score ranked them),
    else the fitness."""
    gaps = [
        _score(r[key]["picks"][d]) - r[key]["picks"][d]["test_accuracy"]
        for r in runs
        for d in densities
        if r[key]["picks"][d] is not None
    ]
    return _points(_mean(gaps))


def summarise(doc: dict, datasets: list[str], seeds: list[str], densities: list[str]) -> dict:
    """The keys over the datasets and seeds whose parts are all there."""
    cells, ratios, taus, runs_all, ranking_gaps = [], [], [], [], []
    per_dataset = {}
    for name in datasets:
        parts = doc["datasets"].get(name)
        if (
            not parts
            or "paper_evaluation" not in parts
            or not all(
                all(k in parts["seeds"].get(s, {}) for k in ("search", "paper_ga", "rankings"))
                for s in seeds
            )
        ):
            continue
        runs = [parts["seeds"][s] for s in seeds]
        runs_all.extend(runs)
        ds_cells = [{"dataset": name, **cell(parts, seeds, d)} for d in densities]
        cells.extend(ds_cells)
        secs = statistics.fmean(r["search"]["search_seconds"] for r in runs)
        ratio = secs / parts["paper_evaluation"]["seconds"]
        ratios.append(ratio)
        if parts.get("kendall", {}).get("tau") is not None:
            taus.append(parts["kendall"]["tau"])
        for c in ds_cells:
            for r in runs:
                rk = r["rankings"][c["best_ranking"]][str(c["density"])]
                ranking_gaps.append(rk["fitness"] - rk["test_accuracy"])
        per_dataset[name] = {
            "n_images": parts["n_images"],
            "n_classes": parts["n_classes"],
            "n_test": sorted({r["n_test"] for r in runs}),
            "n_train": sorted({r["n_train"] for r in runs}),
            "search_seconds_mean": secs,
            "paper_ga_seconds_mean": statistics.fmean(
                r["paper_ga"]["search_seconds"] for r in runs
            ),
            "paper_evaluation_seconds": parts["paper_evaluation"]["seconds"],
            "search_seconds_in_paper_evaluations": ratio,
            "kendall_tau": parts.get("kendall", {}).get("tau"),
            "cells_won": sum(c["won"] for c in ds_cells),
        }
    if not cells:
        return {}
    deltas = [c["delta_points"] for c in cells if c["delta_points"] is not None]
    keys: dict[str, Any] = {
        "cells_won_vs_best_ranking_fraction": sum(c["won"] for c in cells) / len(cells),
        "mean_delta_vs_best_ranking_points": _mean(deltas),
        "worst_cell_delta_points": min(deltas) if deltas else None,
        "search_seconds_in_paper_evaluations": _mean(ratios),
        "shared_vs_full_kendall_tau": _mean(taus),
        "selection_bias_points_search": _bias(runs_all, "search", densities),
        "selection_bias_points_paper_ga": _bias(runs_all, "paper_ga", densities),
        "selection_bias_points_best_ranking": _points(_mean(ranking_gaps)),
        "selection_bias_points_search_shipped": _points(
            _mean(
                _score(r["search"]["shipped"]) - r["search"]["shipped"]["test_accuracy"]
                for r in runs_all
            )
        ),
        "selection_bias_points_paper_ga_shipped": _points(
            _mean(
                _score(r["paper_ga"]["shipped"]) - r["paper_ga"]["shipped"]["test_accuracy"]
                for r in runs_all
            )
        ),
    }
    other = _tally(c["delta_vs_ranking_chosen_on_other_seeds_points"] for c in cells)
    keys["mean_delta_vs_ranking_chosen_on_other_seeds_points"] = other["mean_delta_points"]
    keys["cells_won_vs_ranking_chosen_on_other_seeds_fraction"] = other["cells_won_fraction"]
    keys["worst_cell_delta_vs_ranking_chosen_on_other_seeds_points"] = other[
        "worst_cell_delta_points"
    ]
    each = {
        m: _tally(c["delta_vs_each_ranking_points"].get(m) for c in cells)
        for m in cells[0]["delta_vs_each_ranking_points"]
    }
    keys["vs_each_ranking"] = {m: t for m, t in each.items() if t["mean_delta_points"] is not None}
    met = {}
    for key, op, target in TARGETS:
        v = keys[key]
        met[key] = None if v is None else (v >= target if op == ">=" else v <= target)
    a, b = keys["selection_bias_points_search"], keys["selection_bias_points_paper_ga"]
    met["selection_bias_points_search"] = None if a is None or b is None else a <= b
    keys["targets"] = {
        **{k: f"{op} {t}" for k, op, t in TARGETS},
        "selection_bias_points_search": "<= selection_bias_points_paper_ga",
    }
    keys["met"] = met
    keys["cells"] = cells
    keys["per_dataset"] = per_dataset
    keys["summarised"] = {"datasets": list(per_dataset), "seeds": [int(s) for s in seeds]}
    return keys


# --- driver -----------------------------------------------------------------------------------


class Store:
    """The JSON file: parts added one by one, written atomically after each."""

    def __init__(self, path: Path, recipe: dict) -> None:
        self.path = path
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            doc = {}
        if doc and doc.get("recipe") != recipe:
            raise ConfigError(
                f"{path} holds a benchmark of another recipe (settings differ: "
                f"{', '.join(_differing(doc.get('recipe') or {}, recipe))}); "
                "give another --out, or delete the file to start again"
            )
        self.doc = doc or {"complete": False, "recipe": recipe, "datasets": {}}

    def dataset(self, name: str) -> dict:
        return self.doc["datasets"].setdefault(name, {"seeds": {}})

    def save(self) -> None:
        atomic_write_json(self.path, self.doc)


def _differing(a: dict, b: dict) -> list[str]:
    keys = sorted(set(a) | set(b))
    return [k for k in keys if a.get(k) != b.get(k)] or ["?"]


def run_dataset(
    name: str, store: Store, args, search: RunConfig, paper: RunConfig, seeds, densities, root
) -> None:
    parts = store.dataset(name)
    seed0 = dataclasses.replace(search, data=name, seed=args.first_seed)
    log.info("%s: features (cached after the first run)", name)
    base = prepare_data(seed0, progress=False, cache_dir=args.cache_dir)
    if "n_images" not in parts:
        parts.update(
            n_images=len(base.labels),
            n_classes=base.n_classes,
            classes=base.classes,
            feature_seconds=base.feature_seconds,
            features_cached=base.features_cached,
        )
        store.save()
    for s in seeds:
        seed = int(s)
        run = parts["seeds"].setdefault(s, {})
        data = resplit(base, seed, search.test_fraction)
        run.update(n_train=len(data.train_idx), n_test=len(data.test_idx))
        ranker = None  # the search's: the rankings are trained as its heads are
        for key, cfg in (("search", search), ("paper_ga", paper)):
            if key in run:
                continue
            cfg = dataclasses.replace(cfg, data=name, seed=seed)
            log.info("%s seed %d: %s", name, seed, key)
            run[key], used = run_part(cfg, data, root / f"{name}_s{seed}_{key}", densities)
            ranker = used if key == "search" else ranker
            store.save()
        if "rankings" not in run:
            cfg = dataclasses.replace(search, data=name, seed=seed)
            ranker = ranker or make_ranker(cfg, data)
            methods = ranking_methods(ranker, args.rankings)
            log.info("%s seed %d: rankings %s", name, seed, ", ".join(methods))
            t0 = time.perf_counter()
            run["rankings"] = rankings_part(ranker, data, densities, methods)
            run["rankings_seconds"] = time.perf_counter() - t0
            store.save()
    if "paper_evaluation" not in parts or "kendall" not in parts:
        data = resplit(base, args.first_seed, search.test_fraction)
        ranker = make_ranker(dataclasses.replace(search, data=name, seed=args.first_seed), data)
        if "paper_evaluation" not in parts:
            log.info("%s: one evaluation of the paper trainer", name)
            parts["paper_evaluation"] = paper_evaluation(ranker, args.first_seed)
            store.save()
        if "kendall" not in parts:
            log.info("%s: shared vs full on %d masks", name, args.kendall_masks)
            parts["kendall"] = kendall(ranker, args.kendall_masks, args.first_seed)
            store.save()


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("evoprune").setLevel(logging.WARNING)
    try:
        search, paper = recipes(args)
        densities = [str(d) for d in check_densities(args.densities.split(","), "--densities")]
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    datasets = [d for d in args.datasets.split(",") if d]
    seeds = [str(s) for s in range(args.first_seed, args.first_seed + args.seeds)]
    out = Path(args.out or HERE / f"search_vs_rankings{'-quick' if args.quick else ''}.json")
    if args.plot:
        try:
            doc = json.loads(out.read_text(encoding="utf-8"))
        except FileNotFoundError:
            log.error("--plot: %s does not exist; run the benchmark first or give --out", out)
            return 2
        if not doc.get("cells"):
            log.error("--plot: %s has no finished cell yet", out)
            return 2
        sys.stdout.write(f"written: {plot_cells(doc, args.plot)}\n")
        return 0
    recipe = {
        "search": recipe_doc(search),
        "paper_ga": recipe_doc(paper),
        "densities": [float(d) for d in densities],
        "test_fraction": search.test_fraction,
        "limit": search.limit,
        "kendall_masks": args.kendall_masks,
        "rankings": args.rankings,
    }
    try:
        store = Store(out, recipe)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="evoprune-svr-") as tmp:
        root = Path(args.runs_dir or tmp)
        for name in datasets:
            try:
                run_dataset(name, store, args, search, paper, seeds, densities, root)
            except EvoPruneError as exc:
                log.error("%s: %s", name, exc)
                return 2
            store.doc.update(summarise(store.doc, datasets, seeds, densities))
            store.save()
    summary = summarise(store.doc, datasets, seeds, densities)
    store.doc.update(summary)
    store.doc["complete"] = summary.get("summarised", {}).get("datasets") == datasets
    store.doc["wall_seconds_last_invocation"] = time.perf_counter() - t0
    store.save()
    sys.stdout.write(format_table(store.doc) + f"\nwritten: {out}\n")
    return 0


#: The issue's mean target, drawn in the figure.
TARGET_POINTS = {k: t for k, _, t in TARGETS}["mean_delta_vs_best_ranking_points"]


@styled
def plot_cells(doc: dict, path: str | Path) -> Path:
    """One panel per dataset: held-out accuracy against the strongest ranking of each cell
    (points; 0 is that ranking) at each density, for the search (mean over the seeds, bars one
    paired standard error), the ranking chosen on the other seeds and each ranking alone, with
    the issue's mean target dotted."""
    plt = pyplot()
    names = list(dict.fromkeys(c["dataset"] for c in doc["cells"]))
    fig, axes = plt.subplots(1, len(names), figsize=(2.4 * len(names) + 2.4, 3.2), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, name in zip(axes, names):
        cells = [c for c in doc["cells"] if c["dataset"] == name]
        x = [100 * c["density"] for c in cells]
        for m in cells[0]["ranking_means"]:
            y = [100 * (c["ranking_means"][m] - c["best_ranking_mean"]) for c in cells]
            ax.plot(x, y, color=COLORS["evaluated"], lw=0.8, marker=".", ms=3, zorder=1)
        search = [np.nan if c["delta_points"] is None else c["delta_points"] for c in cells]
        other = [
            np.nan
            if c["ranking_chosen_on_other_seeds_per_seed"] is None
            else 100 * (_mean(c["ranking_chosen_on_other_seeds_per_seed"]) - c["best_ranking_mean"])
            for c in cells
        ]
        ax.plot(x, other, color=COLORS["fitness"], ls="--", marker="s", ms=3, zorder=2)
        se = [c["sampling_error_points"]["delta_paired_over_seeds"] or 0.0 for c in cells]
        ax.errorbar(
            x, search, yerr=se, color=COLORS["evolved"], marker="o", ms=4, capsize=2, zorder=3
        )
        ax.axhline(0.0, color=COLORS["reference"], lw=0.8)
        ax.axhline(TARGET_POINTS, color=COLORS["green"], lw=1.0, ls=":")
        ax.set_xscale("log")
        ax.set_xticks(x, [f"{v:g}" for v in x])
        ax.minorticks_off()
        n_test = sorted({r["n_test"] for r in doc["datasets"][name]["seeds"].values()})
        ax.set_title(f"{name}\n{'/'.join(map(str, n_test))} held-out images")
    axes[0].set_ylabel("held-out accuracy minus the\nstrongest ranking (points)")
    axes[0].set_ylim(-3.0, 2.0)
    line = plt.Line2D
    handles = [
        line([], [], color=COLORS["evolved"], marker="o", label="the search (± 1 SE, paired)"),
        line(
            [],
            [],
            color=COLORS["fitness"],
            ls="--",
            marker="s",
            label="ranking chosen on the other seeds",
        ),
        line([], [], color=COLORS["evaluated"], marker=".", label="each ranking alone"),
        line([], [], color=COLORS["reference"], lw=0.8, label="strongest ranking, after the fact"),
        line(
            [], [], color=COLORS["green"], ls=":", label=f"target (+{TARGET_POINTS:g} on average)"
        ),
    ]
    legend_outside(axes[-1], handles=handles)
    seeds = len(doc.get("summarised", {}).get("seeds", []))
    fig.supxlabel("head size (% of the features)", fontsize=9)
    fig.suptitle(f"The search against the strongest of the rankings, mean of {seeds} seeds")
    return save_figure(fig, axes[0], path)


def format_table(doc: dict) -> str:
    def f(v, fmt="{:.4f}"):
        return "—" if v is None else fmt.format(v)

    lines = ["dataset | density | search | best ranking | paper GA | delta (points) | won"]
    for c in doc.get("cells", []):
        lines.append(
            f"{c['dataset']} | {c['density']:g} | {f(c['search_mean'])} | "
            f"{c['best_ranking']} {f(c['best_ranking_mean'])} | {f(c['paper_ga_mean'])} | "
            f"{f(c['delta_points'], '{:+.2f}')} | {c['won']}"
        )
    met = doc.get("met", {})
    for key in (*(k for k, _, _ in TARGETS), "selection_bias_points_search"):
        lines.append(f"{key} = {f(doc.get(key), '{:.3f}')} (met: {met.get(key)})")
    bias = f(doc.get("selection_bias_points_paper_ga"), "{:.3f}")
    lines.append(f"selection_bias_points_paper_ga = {bias}")
    for key in (
        "mean_delta_vs_ranking_chosen_on_other_seeds_points",
        "cells_won_vs_ranking_chosen_on_other_seeds_fraction",
        "worst_cell_delta_vs_ranking_chosen_on_other_seeds_points",
    ):
        lines.append(f"{key} = {f(doc.get(key), '{:.3f}')}")
    for m, v in doc.get("vs_each_ranking", {}).items():
        lines.append(
            f"vs {m} alone: mean {f(v['mean_delta_points'], '{:+.2f}')} points, "
            f"cells won {f(v['cells_won_fraction'], '{:.3f}')}, "
            f"worst {f(v['worst_cell_delta_points'], '{:+.2f}')}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
