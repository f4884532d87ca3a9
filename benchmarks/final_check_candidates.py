"""How well does the final check choose, and how much does its score flatter what it chooses?
Every candidate's cross-validated score against its held-out accuracy, per asked size, for the
searches of ``benchmarks/search_vs_rankings.py``.

    python benchmarks/final_check_candidates.py          # the search benchmark's 20 runs
    python benchmarks/final_check_candidates.py --runs digits:1,elpv:4 --out /tmp/fcc.json

For each dataset:seed the search runs through the library (``evolve``) with the search
benchmark's recipe, images and held-out split, so the candidates are those of its searches
(``choices_as_the_search_benchmark`` checks it). Its final-check candidates (the best rows at
or below each asked size and every ranking's top-k there: ``runs.front.check_candidates``)
are scored by the final check's cross-validation (``runs.front.check_scores``)
and each is trained on all training images and scored on the held-out images. Options other
than those below are the search benchmark's (``--evaluations``, ``--limit``, ``--cache-dir``,
...).

Per run: the Spearman correlation of each check score (accuracy, mean probability of the true
class) with held-out accuracy. Per asked size k, over the candidates of at most k units: the
held-out accuracy of the candidate chosen by the probability (``cv_prob``, what the search
ships) and by accuracy (``cv``), of the best candidate after the fact (``oracle``), of the
probability's choice among the rankings' top-k masks alone (``rankings_only``); the choice's
cross-validated accuracy (``check``) and that of a second cross-validation on other folds of
the same images (``fresh_check``, split from the run's seed + 2); and the held-out accuracy of
the cell's strongest ranking on this seed (``best_ranking``: the ranking with the highest mean
over the seeds in ``--against``, the issue's comparator), where that file has the cell.

Summary keys, means over every run and size, in points: ``choice_points_below_oracle``,
``rankings_only_minus_choice_points``, ``cv_minus_cv_prob_points``;
``choice_minus_best_ranking_points`` and ``oracle_minus_best_ranking_points`` (how far the
check's choice, and a choice that knew the held-out accuracies, are above the strongest
ranking); ``check_bias_points_candidates`` (cross-validated minus held-out accuracy over every
candidate: what the check's score flatters a head it did not choose), ``check_bias_points_choice``
(the same for the choices) and ``fresh_check_bias_points_choice`` (the choices on fresh folds);
``choices_as_the_search_benchmark``, how many choices score held out what the search
benchmark's pick on that seed and size scored (all of them: these are its searches).
Writes the JSON after each run; a rerun skips the runs already there and refuses a file of
another recipe.
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
from evoprune.runs import RunConfig, RunContext, front, prepare_data  # noqa: E402
from evoprune.runs.evolve import evolve  # noqa: E402
from evoprune.search.guided import exact_sizes  # noqa: E402

log = logging.getLogger("benchmarks")
HERE = Path(__file__).resolve().parent
#: The search of benchmarks/search_vs_rankings.json (options given after these override them).
SEARCH = ["--evaluations", "60", "--shared-evaluations", "3000", "--sizes", "0.02,0.05,0.1,0.2"]
RUNS = ",".join(f"{name}:{seed}" for name in svr.DATASETS for seed in range(5))


def candidates(search: RunConfig, name: str, seed: int, cache_dir: str | None) -> dict:
    """One search's final-check candidates (units, ranked or evolved, scores, held-out
    accuracy) and its choices per asked size."""
    base = prepare_data(
        dataclasses.replace(search, data=name, seed=0), progress=False, cache_dir=cache_dir
    )
    cfg = dataclasses.replace(search, data=name, seed=seed)
    ctx = RunContext.of_data(cfg, svr.resplit(base, seed, cfg.test_fraction))
    evolved = evolve(ctx)
    result, n = evolved.result, evolved.problem.n_genes
    ranked = set(front.ranked_rows(result, ctx.unit_rankings, cfg.sizes, n))
    rows = front.check_candidates(ctx, evolved)  # what the search's final check re-scores
    check = front.check_scores(
        cfg, evolved, ctx.X_train, ctx.y_train, rows, rankings=ctx.guiding_rankings
    )
    cv, prob = check.accuracy, check.probability
    X_test, y_test = ctx.held_out
    cands = [
        {
            "row": i,
            "units": int(result.history[i].active_genes),
            "ranked": i in ranked,
            "cv": float(c),
            "prob": float(p),
            "test": accuracy(ctx.train(result.history[i].mask()), X_test, y_test),
        }
        for i, c, p in zip(rows, cv, prob)
    ]
    out = choices(cands, cfg.sizes, n)
    # the choices on other folds of the same images: the run's seed + 1 splits from seed + 2
    chosen = sorted({c["row"] for c in out.values()})  # one head can be chosen at several sizes
    masks = np.stack([result.history[i].mask() for i in chosen])
    fresh_cfg = dataclasses.replace(cfg, seed=seed + 1)
    fresh = front.mask_check_scores(
        fresh_cfg, evolved.problem, ctx.X_train, ctx.y_train, masks, rankings=ctx.guiding_rankings
    ).accuracy
    by_row = dict(zip(chosen, fresh))
    for c in out.values():
        c["fresh_check"] = float(by_row[c["row"]])
    return {"n_genes": n, "n_test": int(len(y_test)), "candidates": cands, "choices": out}


def _chosen(cands: list[dict], final_check: str) -> dict | None:
    """The candidate the library's final check ``final_check`` ranks first
    (``runs.front.check_ranking``; ties to the first, as ``choose`` takes them)."""
    if not cands:
        return None
    cv = np.array([c["cv"] for c in cands])
    prob = np.array([c["prob"] for c in cands])
    return cands[int(np.argmax(front.check_ranking(final_check, cv, prob)))]


def choices(cands: list[dict], sizes, n_genes: int) -> dict:
    """Per asked size (keyed by its fraction): the held-out accuracy of each way of choosing,
    and the shipped choice's row and cross-validated accuracy."""
    out = {}
    for size, k in zip(sizes, exact_sizes(sizes, n_genes)):
        ok = [c for c in cands if c["units"] <= k]
        if not ok:
            continue
        pick = _chosen(ok, "cv-prob")
        by_acc = _chosen(ok, "cv")
        ranked = _chosen([c for c in ok if c["ranked"]], "cv-prob")
        out[str(size)] = {
            "units": k,
            "row": pick["row"],
            "check": pick["cv"],
            "cv_prob": pick["test"],
            "cv": by_acc["test"],
            "oracle": max(c["test"] for c in ok),
            "rankings_only": None if ranked is None else ranked["test"],
        }
    return out


def against_cells(
    against: Path, recipe: dict
) -> dict[tuple[str, str, str], tuple[float, float | None]]:
    """(dataset, density, seed) -> the held-out accuracy of that cell's strongest ranking (the
    highest mean over the seeds) and of the search's pick on that seed, from a
    search_vs_rankings JSON of the search ``recipe`` (empty if there is none)."""
    try:
        doc = json.loads(against.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    if doc.get("recipe", {}).get("search") != recipe:
        log.warning("%s: another search recipe, so no ranking to hold the choices against", against)
        return {}
    seeds = [str(s) for s in doc.get("summarised", {}).get("seeds", [])]
    return {
        (c["dataset"], str(c["density"]), s): (rank, search)
        for c in doc.get("cells", [])
        for s, rank, search in zip(seeds, c["best_ranking_per_seed"], c["search_per_seed"])
        if rank is not None
    }


def summarise(doc: dict, cells: dict[tuple[str, str, str], tuple[float, float | None]]) -> None:
    def points(values) -> float | None:
        values = list(values)
        return 100 * statistics.mean(values) if values else None

    per, cands = [], []
    for key, run in doc["runs"].items():
        name, seed = key.split(":")
        cands += run["candidates"]
        for size, c in run["choices"].items():
            c["best_ranking"], c["search_benchmark"] = cells.get((name, size, seed), (None, None))
            per.append(c)
    paired = [c for c in per if c["rankings_only"] is not None]
    against = [c for c in per if c["best_ranking"] is not None]
    doc["choice_points_below_oracle"] = points(c["oracle"] - c["cv_prob"] for c in per)
    doc["rankings_only_minus_choice_points"] = points(
        c["rankings_only"] - c["cv_prob"] for c in paired
    )
    doc["cv_minus_cv_prob_points"] = points(c["cv"] - c["cv_prob"] for c in per)
    doc["choice_minus_best_ranking_points"] = points(
        c["cv_prob"] - c["best_ranking"] for c in against
    )
    doc["oracle_minus_best_ranking_points"] = points(
        c["oracle"] - c["best_ranking"] for c in against
    )
    doc["check_bias_points_candidates"] = points(c["cv"] - c["test"] for c in cands)
    doc["check_bias_points_choice"] = points(c["check"] - c["cv_prob"] for c in per)
    doc["fresh_check_bias_points_choice"] = points(c["fresh_check"] - c["cv_prob"] for c in per)
    doc["choices"] = len(per)
    doc["choices_against_best_ranking"] = len(against)
    # the same searches: the choice here scores what the search benchmark's pick scored
    doc["choices_as_the_search_benchmark"] = sum(
        c["search_benchmark"] is not None and abs(c["cv_prob"] - c["search_benchmark"]) < 1e-9
        for c in against
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", default=RUNS, help="dataset:seed, comma-separated")
    p.add_argument("--out", default=str(HERE / "final_check_candidates.json"))
    p.add_argument(
        "--against",
        default=str(HERE / "search_vs_rankings.json"),
        help="the search benchmark's JSON whose strongest rankings the choices are held against",
    )
    args, rest = p.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    bench = svr.parse_args([*SEARCH, *rest])
    search, _ = svr.recipes(bench)
    out = Path(args.out)
    doc = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {}
    recipe = svr.recipe_doc(search)
    if doc.setdefault("recipe", recipe) != recipe:
        log.error("%s holds another recipe: give another --out", out)
        return 2
    doc.setdefault("runs", {})
    cells = against_cells(Path(args.against), recipe)
    for item in args.runs.split(","):
        if item in doc["runs"]:
            continue
        name, seed = item.split(":")
        run = candidates(search, name, int(seed), bench.cache_dir)
        test = [c["test"] for c in run["candidates"]]
        doc["runs"][item] = {
            "spearman_cv": float(spearmanr([c["cv"] for c in run["candidates"]], test)[0]),
            "spearman_prob": float(spearmanr([c["prob"] for c in run["candidates"]], test)[0]),
            **run,
        }
        summarise(doc, cells)
        atomic_write_json(out, doc)
        log.info("%s: %d candidates; %s", item, len(test), doc["runs"][item]["choices"])
    summarise(doc, cells)
    atomic_write_json(out, doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
