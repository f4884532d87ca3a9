"""Can constant-size swaps find masks better than the rankings'? A hill climb from the final
check's choice among the rankings' top-k, scored by the final check itself.

    python benchmarks/swap_refinement.py                         # digits, elpv; 10 and 20 %
    python benchmarks/swap_refinement.py --datasets mnist --densities 0.05

The search's final check nearly always ships a ranking's top-k mask
(``benchmarks/final_check_candidates.json``), and doubling its evaluations changes 1 of its 80
picks (``benchmarks/search_vs_rankings-evals120.json``). This measures the lever named next:
spend trainings at the asked size itself. For each dataset x seed (the held-out splits and
recipe of ``benchmarks/search_vs_rankings.py``) and density, the search's rankings' top-k masks
(``RunContext.unit_rankings``) are scored by the final check (``runs.front.mask_check_scores``:
5-fold cross-validated mean probability of the true class on the training images) and the best
is the start. Each of ``--steps`` rounds draws ``--neighbours`` masks of the same size, each
swapping a tenth of the kept units (dropped with probability growing as their mean ranking score
falls, added among the dropped ones with probability growing as the fourth power of it), scores
them the same way and moves to the best if it beats the current mask. (The library's
``search.guided.guided_swap`` moves one unit at a time, too small a step for 6 x 24 masks; here
a tenth of the units move at once, drawn without replacement.) The start and the end are trained
on all training images (the run's trainer and seed) and scored on the held-out images.

Keys: ``mean_gain_points`` (end minus start, over every dataset x seed x density), per
dataset x density ``gain_points`` with its standard error over seeds, and ``seconds_per_climb``.
Writes benchmarks/swap_refinement.json after each climb; a rerun skips the climbs already there.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import search_vs_rankings as svr  # noqa: E402  (the same recipe and held-out splits)

from evoprune.io import atomic_write_json  # noqa: E402
from evoprune.model import accuracy  # noqa: E402
from evoprune.runs import RunContext, prepare_data  # noqa: E402
from evoprune.runs.front import mask_check_scores  # noqa: E402
from evoprune.search.guided import exact_sizes, prior_scores, top_k  # noqa: E402

log = logging.getLogger("benchmarks")
HERE = Path(__file__).resolve().parent


def climb(ctx: RunContext, k: int, steps: int, neighbours: int, rng) -> dict:
    """One hill climb at ``k`` units: the start, the end and the check score at each step."""
    cfg, problem = ctx.cfg, ctx.problem
    rankings = ctx.unit_rankings
    score_of = prior_scores(rankings)  # what guided variation draws by

    def check(chroms: np.ndarray) -> np.ndarray:
        prob = mask_check_scores(cfg, problem, ctx.X_train, ctx.y_train, chroms).probability
        return prob

    starts = np.stack([top_k(s, k).astype(np.uint8) for s in rankings.values()])
    prob = check(starts)
    first = int(np.argmax(prob))
    current, best = starts[first], float(prob[first])
    path = [best]
    swap = max(1, k // 10)
    for _ in range(steps):
        on, off = np.flatnonzero(current), np.flatnonzero(current == 0)
        w_out = 1.0 - score_of[on] + 1e-3
        w_in = score_of[off] ** 4 + 1e-6
        masks = []
        for _ in range(neighbours):
            m = current.copy()
            m[rng.choice(on, swap, replace=False, p=w_out / w_out.sum())] = 0
            m[rng.choice(off, swap, replace=False, p=w_in / w_in.sum())] = 1
            masks.append(m)
        prob = check(np.stack(masks))
        j = int(np.argmax(prob))
        if prob[j] > best:
            current, best = masks[j], float(prob[j])
        path.append(best)
    X_test, y_test = ctx.held_out
    return {
        "units": int(k),
        "start_ranking": list(rankings)[first],
        "start_test": accuracy(ctx.train(starts[first]), X_test, y_test),
        "end_test": accuracy(ctx.train(current), X_test, y_test),
        "check_path": path,
        "genes_changed": int((current != starts[first]).sum()),
        "end_units": int(current.sum()),
    }


def summarise(doc: dict) -> None:
    gains, cells, seconds = [], {}, []
    for name, seeds in doc["datasets"].items():
        by_density: dict[str, list[float]] = {}
        for part in seeds.values():
            for d, c in part["climbs"].items():
                by_density.setdefault(d, []).append(100 * (c["end_test"] - c["start_test"]))
                seconds.append(c["seconds"])
        for d, g in sorted(by_density.items(), key=lambda kv: float(kv[0])):
            gains += g
            cells[f"{name} {d}"] = {
                "seeds": len(g),
                "gain_points": statistics.mean(g),
                "gain_se_points": statistics.stdev(g) / math.sqrt(len(g)) if len(g) > 1 else None,
                "improved": sum(x > 0 for x in g),
                "worse": sum(x < 0 for x in g),
            }
    doc["cells"] = cells
    doc["mean_gain_points"] = statistics.mean(gains) if gains else None
    doc["climbs"] = len(gains)
    doc["seconds_per_climb"] = statistics.mean(seconds) if seconds else None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default="digits,elpv")
    p.add_argument("--densities", default="0.1,0.2")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--neighbours", type=int, default=24)
    p.add_argument("--limit", type=int, default=None, help="images per dataset (tests)")
    p.add_argument("--cache-dir", default=None, help="feature cache. Default: the user's")
    p.add_argument("--out", default=str(HERE / "swap_refinement.json"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    search, _ = svr.recipes(svr.parse_args(["--sizes", ",".join(map(str, svr.DENSITIES))]))
    search = dataclasses.replace(search, limit=args.limit)
    out = Path(args.out)
    doc = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {}
    recipe = {**svr.recipe_doc(search), "steps": args.steps, "neighbours": args.neighbours}
    if doc.setdefault("recipe", recipe) != recipe:
        log.error("%s holds another recipe: give another --out", out)
        return 2
    doc.setdefault("datasets", {})
    for name in args.datasets.split(","):
        base = prepare_data(
            dataclasses.replace(search, data=name, seed=0), progress=False, cache_dir=args.cache_dir
        )
        seeds = doc["datasets"].setdefault(name, {})
        for seed in range(args.seeds):
            part = seeds.setdefault(str(seed), {"climbs": {}})
            todo = [d for d in args.densities.split(",") if d not in part["climbs"]]
            if not todo:
                continue
            data = svr.resplit(base, seed, search.test_fraction)
            ctx = RunContext.of_data(dataclasses.replace(search, data=name, seed=seed), data)
            part["n_test"] = int(len(data.test_idx))
            for d in todo:
                (k,) = exact_sizes([float(d)], ctx.encoding.n_genes)
                rng = np.random.default_rng([seed, int(round(float(d) * 1000)), 7])
                t0 = time.perf_counter()
                c = climb(ctx, k, args.steps, args.neighbours, rng)
                part["climbs"][d] = {**c, "seconds": time.perf_counter() - t0}
                summarise(doc)
                atomic_write_json(out, doc)
                log.info(
                    "%s seed %d at %s: %.4f -> %.4f (%d genes changed)",
                    name,
                    seed,
                    d,
                    c["start_test"],
                    c["end_test"],
                    c["genes_changed"],
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
