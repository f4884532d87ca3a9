"""Does the multi-objective front beat a one-shot ranking? The best front head at or below each
density against the rankings (mutual information first) at that density, 5 seeds.

    python benchmarks/rankings.py --runs-dir DIR     # reuse multiobjective.py --keep DIR runs
    python benchmarks/rankings.py --quick            # 2 seeds, 30 evaluations, 400 images

For each seed: the NSGA-II (accuracy, size) run of benchmarks/multiobjective.py (reused from
DIR/nsga2_s<seed> when finished there, else run), then every fs ranking and random masks at the
densities, retrained with the run's trainer and seed and scored on that run's held-out test set.
Writes the key ``front_vs_mutual_info_wins`` (densities out of 0.02, 0.05, 0.1, 0.2 at which
the mean over seeds of the best front head at or below the density beats the mean
mutual-information head) and its table ``front_vs_rankings`` into benchmarks/multiobjective.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

from evoprune.compare import Ranker, curve_points, feature_rankings, finished_result
from evoprune.compare.layout import finished_context
from evoprune.io import atomic_write_json
from evoprune.model import TrainerConfig
from evoprune.runs import RunConfig, prepare_data, run_experiment

log = logging.getLogger("benchmarks")
HERE = Path(__file__).resolve().parent
DENSITIES = (0.02, 0.05, 0.1, 0.2)
METHODS = feature_rankings() + ("random",)


def one_seed(base: RunConfig, seed: int, root: Path, cache_dir) -> dict:
    """The seed's front (active fraction, held-out accuracy) and its curve points."""
    cfg = RunConfig(
        **{
            **base.to_dict(),
            "seed": seed,
            "algorithm": "nsga2",
            "objectives": ("accuracy", "size"),
        }
    ).validate()
    path = root / f"nsga2_s{seed}"
    data = prepare_data(cfg, progress=False, cache_dir=cache_dir)
    result = finished_run(path, cfg)
    if result is None:
        log.info("seed %d: running the NSGA-II search into %s", seed, path)
        result = run_experiment(cfg, path, progress=False, prepared=data)
    t0 = time.perf_counter()
    # the trainer as the run trained its heads, whatever "fast" is today
    context = finished_context(cfg, data, path, trainer=saved_trainer(path))
    ranker = Ranker(context, context.reference)
    points = curve_points(ranker, data.X_test, data.y_test, DENSITIES, methods=METHODS)
    front = [(m["active_fraction"], m["test_accuracy"]) for m in result["front"]]
    log.info(
        "seed %d: %d front heads, rankings in %.0f s", seed, len(front), time.perf_counter() - t0
    )
    return {"seed": seed, "front": front, "points": points}


def saved_trainer(path: Path) -> TrainerConfig:
    """The trainer settings a run saved in its config.json."""
    doc = json.loads((path / "config.json").read_text(encoding="utf-8"))
    return TrainerConfig(**doc["trainer_settings"])


def finished_run(path: Path, cfg: RunConfig) -> dict | None:
    """result.json of a finished run of ``cfg`` in ``path``; a run saved before a setting was
    added counts when the missing setting's default is what ``cfg`` asks for."""
    from evoprune.errors import EvoPruneError
    from evoprune.runs import open_run, saved_settings

    try:
        run = open_run(path)
    except EvoPruneError:
        return None
    want, defaults = saved_settings(cfg, path), RunConfig().to_dict()
    saved = {k: run.run_config.get(k, defaults.get(k)) for k in want}
    return run.result.to_dict() if saved == want else finished_result(path, cfg)


def best_at_or_below(front: list[tuple[float, float]], density: float) -> float | None:
    """Held-out accuracy of the best front head with at most ``density`` active genes."""
    ok = [acc for frac, acc in front if frac <= density + 1e-9]
    return max(ok) if ok else None


def summarise(seeds: list[dict]) -> list[dict]:
    """Per density: mean over seeds of the best front head (None when a seed has none there)
    and of each method."""
    rows = []
    for d in DENSITIES:
        best = [best_at_or_below(s["front"], d) for s in seeds]
        row: dict = {"density": d, "front_best": None, "front_heads_per_seed": best}
        if all(b is not None for b in best):
            row["front_best"] = statistics.fmean(b for b in best if b is not None)
        for m in METHODS:
            row[m] = statistics.fmean(
                p["test_accuracy"]
                for s in seeds
                for p in s["points"]
                if p["method"] == m and p["density"] == d
            )
        row["front_beats_mutual_info"] = (
            row["front_best"] is not None and row["front_best"] > row["mutual_info"]
        )
        rows.append(row)
    return rows


def update(path: Path, key_values: dict) -> None:
    """Set ``key_values`` in the JSON file at ``path`` (created if missing), atomically."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        doc = {}
    atomic_write_json(path, {**doc, **key_values})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="elpv")
    p.add_argument("--evaluations", type=int, default=200)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--quick", action="store_true", help="2 seeds, 30 evaluations, 400 images")
    p.add_argument("--out", default=None, help="Default: benchmarks/multiobjective.json")
    p.add_argument(
        "--runs-dir",
        default=None,
        metavar="DIR",
        help="folder of multiobjective.py --keep DIR (nsga2_s<seed> reused when finished; "
        "missing ones are run there). Default: a temporary folder",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.evaluations, args.limit = 2, 30, args.limit or 400
    out = Path(args.out or HERE / ("rankings-quick.json" if args.quick else "multiobjective.json"))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("evoprune").setLevel(logging.WARNING)
    base = RunConfig(data=args.data, encoding="fs", evaluations=args.evaluations, limit=args.limit)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="evoprune-rankings-") as tmp:
        root = Path(args.runs_dir or tmp)
        seeds = [one_seed(base, s, root, args.cache_dir) for s in range(args.seeds)]
    rows = summarise(seeds)
    wins = sum(r["front_beats_mutual_info"] for r in rows)
    update(
        out,
        {
            "front_vs_mutual_info_wins": wins,
            "front_vs_rankings": {
                "densities": rows,
                "settings": {**base.to_dict(), "seeds": args.seeds},
                "wall_seconds": time.perf_counter() - t0,
            },
        },
    )
    head = ["density", "front best <= d", *METHODS, "front wins"]
    lines = [" | ".join(head)]
    for r in rows:
        front = "—" if r["front_best"] is None else f"{r['front_best']:.4f}"
        cells = [f"{r['density']:g}", front, *(f"{r[m]:.4f}" for m in METHODS)]
        lines.append(" | ".join(cells + [str(r["front_beats_mutual_info"])]))
    lines.append(f"front_vs_mutual_info_wins = {wins} of {len(DENSITIES)}")
    sys.stdout.write("\n".join(lines) + f"\nwritten: {out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
