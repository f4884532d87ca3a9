"""Multi-objective EvoPruneDeepTL against the paper's single-objective GA, side by side.

    python benchmarks/multiobjective.py                 # ELPV, fs, fast trainer, 200 evals, 5 seeds
    python benchmarks/multiobjective.py --seeds 2 --evaluations 60 --limit 600   # a quick look

For every seed: an ssga run (accuracy only) and an nsga2 run (accuracy, size) with the same
budget, then an ensemble of front heads; once, a three-objective run (accuracy, size, ood) with
a built-in OOD set. Every figure is on the held-out test set that no search sees, except the
hypervolume, which is over every head each search evaluated (fitness-split accuracy x active
fraction, reference point (1, 1)). Prints a table and writes benchmarks/multiobjective.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from evoprune.io import atomic_write_json
from evoprune.pareto import hypervolume
from evoprune.runs import RunConfig, build_ensemble, prepare_data, read_history, run_experiment

log = logging.getLogger("benchmarks")
HERE = Path(__file__).resolve().parent

TARGETS = {
    "smallest_within_1pt_active_fraction": ("<=", 0.05),
    "selected_active_fraction": ("<=", 0.15),
    "selected_vs_not_pruned_accuracy_delta": (">=", -0.5),
    "ensemble_vs_best_single_wins": (">=", 4),
    "ensemble_vs_not_pruned_accuracy_delta": (">=", 1.0),
    "nsga2_vs_ssga_hypervolume_ratio": (">=", 1.2),
    "mo_vs_so_seconds_ratio": ("<=", 1.5),
}


def search_hypervolume(run_dir: Path) -> float:
    """Hypervolume of every head a search evaluated, in (error, active fraction)."""
    rows = read_history(run_dir / "history.csv")
    F = np.array([[1.0 - r.fitness, r.active_fraction] for r in rows])
    return hypervolume(F, np.ones(2))


def smallest_within(result: dict, points: float = 1.0) -> float:
    """Active fraction of the smallest front head whose held-out accuracy is within ``points``
    of the not-pruned head's (1.0 when none is)."""
    ok = [
        m["active_fraction"]
        for m in result["front"]
        if m["test_accuracy"] >= result["reference_test_accuracy"] - points / 100 - 1e-9
    ]
    return min(ok, default=1.0)


def one_seed(base: RunConfig, seed: int, root: Path, members: int, cache_dir) -> dict:
    out = {}
    for algorithm, objectives in (("ssga", ("accuracy",)), ("nsga2", ("accuracy", "size"))):
        cfg = RunConfig(
            **{**base.to_dict(), "seed": seed, "algorithm": algorithm, "objectives": objectives}
        )
        run_dir = root / f"{algorithm}_s{seed}"
        t0 = time.perf_counter()
        result = run_experiment(cfg, run_dir, progress=False, cache_dir=cache_dir)
        out[algorithm] = {
            "seconds": time.perf_counter() - t0,
            "result": result,
            "hypervolume": search_hypervolume(run_dir),
            "dir": run_dir,
        }
    mo = out["nsga2"]["result"]
    k = min(members, len(mo["front"]))
    ens = build_ensemble(out["nsga2"]["dir"], k, "soft", cache_dir=cache_dir, progress=False)
    so = out["ssga"]["result"]
    row = {
        "seed": seed,
        "ssga_test_accuracy": so["test_accuracy"],
        "ssga_active_fraction": so["active_fraction"],
        "not_pruned_test_accuracy": mo["reference_test_accuracy"],
        "front_size": len(mo["front"]),
        "smallest_within_1pt_active_fraction": smallest_within(mo),
        "selected_active_fraction": mo["active_fraction"],
        "selected_test_accuracy": mo["test_accuracy"],
        "ensemble_members": ens["members"],
        "ensemble_test_accuracy": ens["test_accuracy"],
        "best_single_front_test_accuracy": ens["best_single_test_accuracy"],
        "nsga2_hypervolume": out["nsga2"]["hypervolume"],
        "ssga_hypervolume": out["ssga"]["hypervolume"],
        "nsga2_seconds": out["nsga2"]["seconds"],
        "ssga_seconds": out["ssga"]["seconds"],
    }
    log.info(
        "seed %d: %s", seed, json.dumps({k: v for k, v in row.items() if not isinstance(v, list)})
    )
    return row


def summarise(rows: list[dict]) -> dict:
    mean = statistics.fmean
    return {
        "smallest_within_1pt_active_fraction": statistics.median(
            r["smallest_within_1pt_active_fraction"] for r in rows
        ),
        "selected_active_fraction": mean(r["selected_active_fraction"] for r in rows),
        "selected_vs_not_pruned_accuracy_delta": 100
        * mean(r["selected_test_accuracy"] - r["not_pruned_test_accuracy"] for r in rows),
        "ensemble_vs_best_single_wins": sum(
            r["ensemble_test_accuracy"] > r["best_single_front_test_accuracy"] for r in rows
        ),
        "ensemble_vs_not_pruned_accuracy_delta": 100
        * mean(r["ensemble_test_accuracy"] - r["not_pruned_test_accuracy"] for r in rows),
        "nsga2_vs_ssga_hypervolume_ratio": mean(r["nsga2_hypervolume"] for r in rows)
        / mean(r["ssga_hypervolume"] for r in rows),
        "mo_vs_so_seconds_ratio": sum(r["nsga2_seconds"] for r in rows)
        / sum(r["ssga_seconds"] for r in rows),
    }


def ood_run(base: RunConfig, seed: int, root: Path, ood: str, cache_dir) -> dict:
    cfg = RunConfig(
        **{**base.to_dict(), "seed": seed, "objectives": ("accuracy", "size", "ood"), "ood": ood}
    )
    t0 = time.perf_counter()
    r = run_experiment(cfg, root / f"ood_{ood}_s{seed}", progress=False, cache_dir=cache_dir)
    return {
        "ood_set": ood,
        "seed": seed,
        "seconds": time.perf_counter() - t0,
        "ood_auroc_selected": r["test_auroc"],
        "ood_auroc_not_pruned": r["reference_test_auroc"],
        "ood_fpr95_selected": r["test_fpr95"],
        "ood_fpr95_not_pruned": r["reference_test_fpr95"],
        "selected_active_fraction": r["active_fraction"],
        "selected_test_accuracy": r["test_accuracy"],
        "not_pruned_test_accuracy": r["reference_test_accuracy"],
        "front_size": len(r["front"]),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="elpv")
    p.add_argument("--encoding", default="fs")
    p.add_argument("--evaluations", type=int, default=200)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--members", type=int, default=5, help="ensemble size. Default: 5")
    p.add_argument("--ood", default="faces", help="built-in OOD set of the 3-objective run")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--out", default=str(HERE / "multiobjective.json"))
    p.add_argument(
        "--keep",
        default=None,
        metavar="DIR",
        help="keep the run folders in DIR (default: a temporary folder)",
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("evoprune").setLevel(logging.WARNING)
    base = RunConfig(
        data=args.data, encoding=args.encoding, evaluations=args.evaluations, limit=args.limit
    )
    t0 = time.perf_counter()
    prepare_data(base.validate(), progress=False, cache_dir=args.cache_dir)  # features cached
    with tempfile.TemporaryDirectory(prefix="evoprune-mo-bench-") as tmp:
        root = Path(args.keep or tmp)
        rows = [one_seed(base, s, root, args.members, args.cache_dir) for s in range(args.seeds)]
        ood = ood_run(base, 0, root, args.ood, args.cache_dir)
    summary = summarise(rows)
    summary["ood_auroc_selected"] = ood["ood_auroc_selected"]
    summary["ood_auroc_not_pruned"] = ood["ood_auroc_not_pruned"]
    met = {
        k: (summary[k] <= t if op == "<=" else summary[k] >= t) for k, (op, t) in TARGETS.items()
    }
    met["ood_auroc_selected_vs_not_pruned"] = (
        summary["ood_auroc_selected"] >= summary["ood_auroc_not_pruned"]
    )
    doc = {
        **summary,
        "targets": {k: f"{op} {t}" for k, (op, t) in TARGETS.items()},
        "met": met,
        "per_seed": rows,
        "ood_run": ood,
        "settings": {**base.to_dict(), "seeds": args.seeds, "members": args.members},
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0]},
        "wall_seconds": time.perf_counter() - t0,
    }
    atomic_write_json(args.out, doc)
    width = max(map(len, summary))
    lines = [f"{'metric'.ljust(width)}  {'value':>9}  target   met"]
    for k, v in summary.items():
        op, t = TARGETS.get(k, ("", ""))
        ok = met.get(k, met["ood_auroc_selected_vs_not_pruned"] if "ood" in k else "")
        lines.append(f"{k.ljust(width)}  {v:9.4f}  {op} {t!s:5} {ok}")
    sys.stdout.write("\n".join(lines) + f"\nwritten: {args.out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
