"""Do the search's rankings gain from seeing all the training images?

    python benchmarks/ranking_data_share.py              # elpv, digits, mnist, textures; 5 seeds
    python benchmarks/ranking_data_share.py --datasets digits --seeds 2

The search scores units on the first fitness fold's fitting part only (``RunContext.unit_rankings``:
80 % of the training images with the default validation split), where the rankings it is
compared with (``benchmarks/search_vs_rankings.py``) see all of them. For each dataset x seed
(the same held-out splits and recipe as ``search_vs_rankings.py``), each of the search's
rankings (``evoprune.unitscores.search_rankings``) is computed both ways, and its top-k at each
density is trained on all training images (the run's trainer and seed) and scored on the
held-out images.

Keys: ``mean_gain_points`` (all training images minus the fitting part, over every ranking x
density x seed x dataset), per dataset x density ``gain_points`` and the best ranking's mean
each way (``best_fit_part``, ``best_all``). Writes benchmarks/ranking_data_share.json after
each dataset x seed; a rerun skips the parts already there.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import search_vs_rankings as svr  # noqa: E402  (the same recipe and held-out splits)

from evoprune.io import atomic_write_json  # noqa: E402
from evoprune.model import accuracy  # noqa: E402
from evoprune.runs import RunContext, prepare_data  # noqa: E402
from evoprune.search.guided import exact_sizes, top_k  # noqa: E402
from evoprune.unitscores import search_rankings  # noqa: E402

log = logging.getLogger("benchmarks")
HERE = Path(__file__).resolve().parent


def seed_part(cfg, data, densities) -> dict:
    """Held-out accuracy of each search ranking's top-k, ranked on the fitting part or on all."""
    ctx = RunContext.of_data(cfg, data)
    fold = ctx.folds[0]
    kw = dict(trainer=ctx.trainer, seed=int(cfg.seed), device="cpu")
    ranked = {
        "fit_part": search_rankings(ctx.encoding, fold.X_fit, fold.y_fit, ctx.n_classes, **kw),
        "all": search_rankings(ctx.encoding, ctx.X_train, ctx.y_train, ctx.n_classes, **kw),
    }
    X_test, y_test = ctx.held_out
    out: dict = {"n_fit_part": int(len(fold.y_fit)), "n_train": int(len(ctx.y_train))}
    for share, rankings in ranked.items():
        out[share] = {}
        for name, scores in rankings.items():
            out[share][name] = {}
            for d in densities:
                (k,) = exact_sizes([d], ctx.encoding.n_genes)
                head = ctx.train(top_k(scores, k).astype(np.uint8))
                out[share][name][str(d)] = accuracy(head, X_test, y_test)
    return out


def summarise(doc: dict, densities) -> None:
    gains, cells = [], {}
    for name, seeds in doc["datasets"].items():
        for d in map(str, densities):
            g = [p["all"][m][d] - p["fit_part"][m][d] for p in seeds.values() for m in p["all"]]
            best = {
                share: max(
                    statistics.mean(p[share][m][d] for p in seeds.values())
                    for m in next(iter(seeds.values()))[share]
                )
                for share in ("fit_part", "all")
            }
            gains += g
            cells[f"{name} {d}"] = {
                "seeds": len(seeds),
                "gain_points": 100 * statistics.mean(g),
                "best_fit_part": best["fit_part"],
                "best_all": best["all"],
            }
    doc["cells"] = cells
    doc["mean_gain_points"] = 100 * statistics.mean(gains) if gains else None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default=",".join(svr.DATASETS))
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--out", default=str(HERE / "ranking_data_share.json"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    search, _ = svr.recipes(svr.parse_args(["--sizes", ",".join(map(str, svr.DENSITIES))]))
    densities = list(svr.DENSITIES)
    out = Path(args.out)
    doc = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {}
    doc.setdefault("recipe", svr.recipe_doc(search))
    doc.setdefault("densities", densities)
    doc.setdefault("datasets", {})
    for name in args.datasets.split(","):
        base = prepare_data(dataclasses.replace(search, data=name, seed=0), progress=False)
        seeds = doc["datasets"].setdefault(name, {})
        for seed in range(args.seeds):
            if str(seed) in seeds:
                continue
            data = svr.resplit(base, seed, search.test_fraction)
            cfg = dataclasses.replace(search, data=name, seed=seed)
            seeds[str(seed)] = seed_part(cfg, data, densities)
            summarise(doc, densities)
            atomic_write_json(out, doc)
            log.info(
                "%s seed %d: mean gain so far %+.2f points", name, seed, doc["mean_gain_points"]
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
