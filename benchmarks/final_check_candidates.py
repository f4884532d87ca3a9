"""How well does the final check choose? Every candidate's cross-validated score against its
held-out accuracy, per asked size, for the search of ``benchmarks/search_vs_rankings.py``.

    python benchmarks/final_check_candidates.py          # the 10 runs of docs/results.md
    python benchmarks/final_check_candidates.py --runs digits:1,elpv:4

For each dataset:seed (the search benchmark's recipe and held-out split): the search runs
through the library (``evolve``); its final-check candidates (the best rows at or below each of
``--sizes`` and every ranking's top-k there: ``runs.front.sized_rows`` and ``ranked_rows``) are
scored by the final check's cross-validation (``runs.front.check_scores``) and each is trained
on all training images and scored on the held-out images.

Per run: the Spearman correlation of each check score (accuracy, mean probability of the true
class) with held-out accuracy. Per asked size k, over the candidates of at most k units: the
held-out accuracy of the candidate chosen by the probability (``cv-prob``) and by accuracy
(``cv``), of the best candidate after the fact (``oracle``), and of the probability's choice
among the rankings' top-k masks alone (``rankings_only``). Summary keys, means over every run
and size: ``choice_points_below_oracle``, ``rankings_only_minus_choice_points``,
``cv_minus_cv_prob_points``. Writes benchmarks/final_check_candidates.json after each run; a
rerun skips the runs already there.
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
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))
import search_vs_rankings as svr  # noqa: E402  (the same recipe and held-out splits)

from evoprune.io import atomic_write_json  # noqa: E402
from evoprune.model import accuracy  # noqa: E402
from evoprune.runs import RunContext, front, prepare_data  # noqa: E402
from evoprune.runs.evolve import evolve  # noqa: E402
from evoprune.search.guided import exact_sizes  # noqa: E402

log = logging.getLogger("benchmarks")
HERE = Path(__file__).resolve().parent
RUNS = "digits:1,digits:2,digits:4,elpv:1,elpv:2,elpv:4,mnist:1,mnist:2,mnist:4,textures:1"
RECIPE = ["--evaluations", "60", "--shared-evaluations", "3000", "--sizes", "0.02,0.05,0.1,0.2"]


def candidates(name: str, seed: int) -> tuple[list[dict], int]:
    """Every final-check candidate of one search (units, ranked or evolved, scores, held-out
    accuracy) and the number of genes."""
    search, _ = svr.recipes(svr.parse_args(RECIPE))
    cfg = dataclasses.replace(search, data=name, seed=seed)
    data = svr.resplit(prepare_data(cfg, progress=False), seed, cfg.test_fraction)
    ctx = RunContext.of_data(cfg, data)
    evolved = evolve(ctx)
    result, n = evolved.result, evolved.problem.n_genes
    ranked = set(front.ranked_rows(result, ctx.unit_rankings, cfg.sizes, n))
    rows = sorted(set(front.sized_rows(result, cfg.sizes, n, cfg.final_check_top)) | ranked)
    cv, prob = front.check_scores(cfg, evolved, ctx.X_train, ctx.y_train, rows)
    X_test, y_test = ctx.held_out
    return [
        {
            "row": i,
            "units": int(result.history[i].active_genes),
            "ranked": i in ranked,
            "cv": float(c),
            "prob": float(p),
            "test": accuracy(ctx.train(result.history[i].mask()), X_test, y_test),
        }
        for i, c, p in zip(rows, cv, prob)
    ], n


def _chosen(cands: list[dict], final_check: str) -> float | None:
    """The held-out accuracy of the candidate the library's final check ``final_check`` ranks
    first (``runs.front.check_ranking``; ties to the first, as ``choose`` takes them)."""
    if not cands:
        return None
    cv = np.array([c["cv"] for c in cands])
    prob = np.array([c["prob"] for c in cands])
    return cands[int(np.argmax(front.check_ranking(final_check, cv, prob)))]["test"]


def choices(cands: list[dict], sizes, n_genes: int) -> dict:
    """Per asked size: the held-out accuracy of each way of choosing."""
    out = {}
    for k in exact_sizes(sizes, n_genes):
        ok = [c for c in cands if c["units"] <= k]
        if not ok:
            continue
        out[str(k)] = {
            "cv_prob": _chosen(ok, "cv-prob"),
            "cv": _chosen(ok, "cv"),
            "oracle": max(c["test"] for c in ok),
            "rankings_only": _chosen([c for c in ok if c["ranked"]], "cv-prob"),
        }
    return out


def summarise(doc: dict) -> None:
    per = [c for run in doc["runs"].values() for c in run["choices"].values()]
    paired = [c for c in per if c["rankings_only"] is not None]

    def points(values) -> float | None:
        return 100 * statistics.mean(values) if values else None

    doc["choice_points_below_oracle"] = points([c["oracle"] - c["cv_prob"] for c in per])
    doc["rankings_only_minus_choice_points"] = points(
        [c["rankings_only"] - c["cv_prob"] for c in paired]
    )
    doc["cv_minus_cv_prob_points"] = points([c["cv"] - c["cv_prob"] for c in per])
    doc["choices"] = len(per)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", default=RUNS, help="dataset:seed, comma-separated")
    p.add_argument("--out", default=str(HERE / "final_check_candidates.json"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = Path(args.out)
    doc = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {}
    doc.setdefault("recipe", RECIPE)
    doc.setdefault("runs", {})
    for item in args.runs.split(","):
        if item in doc["runs"]:
            continue
        name, seed = item.split(":")
        cands, n_genes = candidates(name, int(seed))
        sizes = [float(s) for s in RECIPE[-1].split(",")]
        test = [c["test"] for c in cands]
        doc["runs"][item] = {
            "spearman_cv": float(spearmanr([c["cv"] for c in cands], test)[0]),
            "spearman_prob": float(spearmanr([c["prob"] for c in cands], test)[0]),
            "choices": choices(cands, sizes, n_genes),
            "candidates": cands,
        }
        summarise(doc)
        atomic_write_json(out, doc)
        log.info("%s: %d candidates; %s", item, len(cands), doc["runs"][item]["choices"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
