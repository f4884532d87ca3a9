"""Is a ranked start (and guided variation) worth it? The NSGA-II (accuracy, size) search with
the paper's start and operators, with ``--init ranked``, and with ranked + guided variation,
against the rankings themselves, at 5, 10 and 20 % of the features.

    python benchmarks/guided_start.py                      # ELPV fs, seed 0, 200 evaluations
    python benchmarks/guided_start.py --seeds 3 --runs-dir DIR   # reuse finished runs in DIR

For each variant and seed: the front's heads (each retrained on all training data and scored on
the held-out test set by the run) and, per density, the best front head at or below it by
held-out accuracy (the issue's measure, chosen after the fact) and the one the fitness picks
(the most accurate on the fitness split at or below it: what a user gets without the test set).
The rankings' heads at the same densities are trained and scored the same way. Writes
benchmarks/guided_start.json.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

from evoprune.compare.curves import curve_points
from evoprune.compare.layout import finished_context
from evoprune.compare.rankings import FOR_UNITS, Ranker
from evoprune.io import atomic_write_json
from evoprune.runs.config import RunConfig
from evoprune.runs.experiment import prepare_data, run_experiment
from evoprune.runs.store import open_run

log = logging.getLogger("benchmarks")
HERE = Path(__file__).resolve().parent
DENSITIES = (0.05, 0.1, 0.2)
VARIANTS = {  # name: (init, variation)
    "paper": ("random", "paper"),
    "ranked": ("ranked", "paper"),
    "ranked_guided": ("ranked", "guided"),
}
METHODS = FOR_UNITS["inputs"]


def at_or_below(front: list[dict], density: float) -> dict:
    """Held-out accuracy of the front head at or below ``density`` that is best on held-out
    images, and of the one that is best on the fitness split."""
    ok = [m for m in front if m["active_fraction"] <= density + 1e-9]
    if not ok:
        return {"best_heldout": None, "by_fitness": None}
    by_fit = max(ok, key=lambda m: (m["fitness"], -m["active_fraction"]))
    return {
        "best_heldout": max(m["test_accuracy"] for m in ok),
        "by_fitness": by_fit["test_accuracy"],
    }


def run_variant(base: RunConfig, variant: str, seed: int, root: Path, data) -> dict:
    init, variation = VARIANTS[variant]
    cfg = RunConfig(
        **{**base.to_dict(), "seed": seed, "init": init, "variation": variation}
    ).validate()
    path = root / f"{variant}_s{seed}"
    try:
        result = open_run(path).result.to_dict()
        log.info("%s seed %d: reusing %s", variant, seed, path)
    except Exception:  # not there or not finished: run it
        log.info("%s seed %d: running into %s", variant, seed, path)
        result = run_experiment(cfg, path, progress=False, prepared=data, overwrite=True)
    front = result["front"]
    return {
        "front": [
            {k: m[k] for k in ("active_fraction", "fitness", "test_accuracy")} for m in front
        ],
        "timings": result.get("timings"),
        "densities": {str(d): at_or_below(front, d) for d in DENSITIES},
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="elpv")
    p.add_argument("--evaluations", type=int, default=200)
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--runs-dir", default=None, metavar="DIR", help="keep and reuse runs here")
    p.add_argument("--out", default=str(HERE / "guided_start.json"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("evoprune").setLevel(logging.WARNING)
    base = RunConfig(
        data=args.data,
        encoding="fs",
        evaluations=args.evaluations,
        limit=args.limit,
        objectives=("accuracy", "size"),
    )
    t0 = time.perf_counter()
    seeds: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="evoprune-guided-") as tmp:
        root = Path(args.runs_dir or tmp)
        for seed in range(args.seeds):
            cfg = RunConfig(**{**base.to_dict(), "seed": seed}).validate()
            data = prepare_data(cfg, progress=False, cache_dir=args.cache_dir)
            runs = {v: run_variant(base, v, seed, root, data) for v in VARIANTS}
            path = root / f"paper_s{seed}"
            context = finished_context(cfg, data, path)  # the paper run's not-pruned head
            ranker = Ranker(context, context.reference)
            points = curve_points(ranker, data.X_test, data.y_test, DENSITIES, methods=METHODS)
            seeds[str(seed)] = {
                "heldout_images": int(len(data.y_test)),
                "training_images": int(len(data.y_train)),
                "runs": runs,
                "rankings": [
                    {k: pt[k] for k in ("method", "density", "test_accuracy")} for pt in points
                ],
            }
    table = []
    for d in DENSITIES:
        row: dict = {"density": d}
        for v in VARIANTS:
            for how in ("best_heldout", "by_fitness"):
                vals = [s["runs"][v]["densities"][str(d)][how] for s in seeds.values()]
                row[f"{v}_{how}"] = (
                    statistics.fmean(vals) if all(x is not None for x in vals) else None
                )
        for m in METHODS:
            row[m] = statistics.fmean(
                pt["test_accuracy"]
                for s in seeds.values()
                for pt in s["rankings"]
                if pt["method"] == m and abs(pt["density"] - d) < 1e-9
            )
        table.append(row)
    atomic_write_json(
        Path(args.out),
        {
            "table": table,
            "seeds": seeds,
            "settings": {**base.to_dict(), "seeds": args.seeds},
            "wall_seconds": time.perf_counter() - t0,
        },
    )
    cols = [k for k in table[0] if k != "density"]
    lines = ["density | " + " | ".join(cols)]
    for row in table:
        cells = ["—" if row[c] is None else f"{row[c]:.4f}" for c in cols]
        lines.append(f"{row['density']:g} | " + " | ".join(cells))
    sys.stdout.write("\n".join(lines) + f"\nwritten: {args.out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
