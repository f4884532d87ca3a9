"""Rank agreement between the shared head's score of a mask and full training (issue 22).

    python benchmarks/fidelity.py                  # ELPV fs and fc1, 200 masks each (~15 min)
    python benchmarks/fidelity.py --encodings fs   # fs only
    python benchmarks/fidelity.py --quick          # fs, 40 masks, 2 recipes

On the run's fitness split of ELPV (the validation part of the training images, seed 0), masks
with densities log-uniform from 1 % to 100 % (exactly round(d L) units on, at random) are scored
by full training with the fast trainer (what ``--fidelity full`` does) and by one shared head per
recipe (:class:`evoprune.model.shared.SharedRecipe`, what ``--fidelity shared`` does; each
recipe changes one thing of the default). Kendall's tau (scipy.stats.kendalltau) between the
two, over all masks and within density bands, is the figure (``shared_vs_full_kendall_tau``:
the default recipe on fs); the noise floor is the tau between full trainings of the same masks
from two seeds (how well full training agrees with itself). Also the paper trainer's seconds
for one evaluation of the not-pruned head, and ``--fidelity multi`` searches' seconds against
it, in the same run.

Writes benchmarks/fidelity.json (fidelity-quick.json with --quick) after every part; a rerun
does only the parts not yet written.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from evoprune.encodings import make_encoding
from evoprune.io import atomic_write_json
from evoprune.model.shared import DEFAULT_RECIPE, SharedRecipe, shared_scores, train_shared_head
from evoprune.problem import HeadProblem, HeadTraining
from evoprune.runs.context import RunContext
from evoprune.runs.experiment import RunConfig, prepare_data

log = logging.getLogger("benchmarks.fidelity")
HERE = Path(__file__).resolve().parent

#: Recipes tried (changes to the default recipe); the default's tau is the reported key.
RECIPES: dict[str, SharedRecipe] = {
    "default": DEFAULT_RECIPE,
    "accuracy score": dataclasses.replace(DEFAULT_RECIPE, score="accuracy"),
    "rescale": dataclasses.replace(DEFAULT_RECIPE, rescale=True),
    "rescale + accuracy score": dataclasses.replace(DEFAULT_RECIPE, rescale=True, score="accuracy"),
    "no full masks": dataclasses.replace(DEFAULT_RECIPE, full_fraction=0.0),
    "no full masks + accuracy score": dataclasses.replace(
        DEFAULT_RECIPE, full_fraction=0.0, score="accuracy"
    ),
    "quarter full masks": dataclasses.replace(DEFAULT_RECIPE, full_fraction=0.25),
    "mask per batch": dataclasses.replace(DEFAULT_RECIPE, per_sample=False),
    "uniform densities": dataclasses.replace(DEFAULT_RECIPE, density="uniform"),
    "80 epochs": dataclasses.replace(DEFAULT_RECIPE, epochs=80, average_from=60),
    "20 epochs": dataclasses.replace(DEFAULT_RECIPE, epochs=20, average_from=15),
}
BANDS = ((0.01, 0.05), (0.05, 0.2), (0.2, 1.0001))


def bench_masks(n: int, n_genes: int, seed: int) -> np.ndarray:
    """``n`` masks, densities log-uniform in [0.01, 1], exactly round(d L) >= 1 genes on."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, n_genes), dtype=np.uint8)
    for row, d in zip(out, np.exp(rng.uniform(np.log(0.01), 0.0, n))):
        row[rng.choice(n_genes, max(1, int(round(d * n_genes))), replace=False)] = 1
    return out


def taus(shared: np.ndarray, full: np.ndarray, density: np.ndarray) -> dict:
    """Kendall's tau over all masks and within each density band."""
    from scipy.stats import kendalltau, spearmanr

    out = {
        "kendall_tau": float(kendalltau(shared, full).statistic),
        "spearman": float(spearmanr(shared, full).statistic),
    }
    for lo, hi in BANDS:
        sel = (density >= lo) & (density < hi)
        key = f"kendall_tau_density_{lo:g}_{min(hi, 1):g}"
        out[key] = float(kendalltau(shared[sel], full[sel]).statistic) if sel.sum() > 2 else None
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--encodings", default="fs,fc1")
    p.add_argument("--masks", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--recipes", default=",".join(RECIPES))
    p.add_argument("--quick", action="store_true")
    p.add_argument("--no-timing", action="store_true", help="skip the multi search vs paper")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.quick:
        args.encodings, args.masks, args.recipes = "fs", 40, "default,rescale"
    out = args.out or HERE / ("fidelity-quick.json" if args.quick else "fidelity.json")
    doc = json.loads(out.read_text()) if out.is_file() else {}
    doc.update({"dataset": "elpv", "masks": args.masks, "seed": args.seed, "trainer": "fast"})
    doc.setdefault("parts", {})
    doc["complete"] = False

    def save() -> None:
        atomic_write_json(out, doc)

    for name in args.encodings.split(","):
        cfg = RunConfig(data="elpv", encoding=name, seed=args.seed).validate()
        data = prepare_data(cfg, progress=False)
        context = RunContext.of_data(cfg, data)
        (fold,), enc = context.folds, context.encoding
        masks = bench_masks(args.masks, enc.n_genes, args.seed)
        density = masks.mean(axis=1)
        part = doc["parts"].setdefault(f"elpv-{name}", {"genes": enc.n_genes})
        for seed_key, seed in (("full", args.seed), ("full_other_seed", args.seed + 1)):
            if seed_key not in part:
                problem = HeadProblem(enc, data.n_classes, [fold], HeadTraining.of("fast", seed))
                t0 = time.perf_counter()
                scores = problem.accuracy(masks)
                part[seed_key] = {
                    "accuracy": scores.round(6).tolist(),
                    "seconds_per_mask": (time.perf_counter() - t0) / len(masks),
                }
                log.info("%s %s: %.2f s a mask", name, seed_key, part[seed_key]["seconds_per_mask"])
                save()
        full = np.asarray(part["full"]["accuracy"])
        other = np.asarray(part["full_other_seed"]["accuracy"])
        part["full_vs_full_other_seed"] = taus(other, full, density)
        recipes = part.setdefault("recipes", {})
        for rname in args.recipes.split(","):
            if rname in recipes:
                continue
            recipe = RECIPES[rname]
            t0 = time.perf_counter()
            head = train_shared_head(
                fold.X_fit,
                fold.y_fit,
                enc,
                data.n_classes,
                seed=args.seed,
                stats=fold.stats,
                recipe=recipe,
            )
            t1 = time.perf_counter()
            shared = shared_scores(head, enc, masks, fold.X_score, fold.y_score, recipe)
            t2 = time.perf_counter()
            recipes[rname] = {
                "recipe": recipe.describe(),
                "train_seconds": t1 - t0,
                "ms_per_mask": 1000 * (t2 - t1) / len(masks),
                "shared_minus_full_points": float(100 * (shared - full).mean()),
                **taus(shared, full, density),
            }
            log.info("%s %s: tau %.3f", name, rname, recipes[rname]["kendall_tau"])
            save()
    fs = doc["parts"].get("elpv-fs", {}).get("recipes", {})
    if "default" in fs:
        doc["shared_vs_full_kendall_tau"] = fs["default"]["kendall_tau"]
        doc["shared_vs_full_kendall_tau_target"] = 0.6
        doc["full_vs_full_other_seed_kendall_tau"] = doc["parts"]["elpv-fs"][
            "full_vs_full_other_seed"
        ]["kendall_tau"]
    if not args.no_timing:
        timing = doc.setdefault("multi_search", {})
        if "paper_evaluation_seconds" not in timing:
            timing["paper_evaluation_seconds"] = time_paper_evaluation(args.seed)
            save()
        for label, (full, shared) in SEARCHES.items():
            if label not in timing:
                timing[label] = time_multi_search(args.seed, full, shared, args.quick)
                timing[label]["ratio"] = (
                    timing[label]["search_seconds"] / timing["paper_evaluation_seconds"]
                )
                save()
    if "default" in doc.get("multi_search", {}):
        doc["search_seconds_in_paper_evaluations"] = doc["multi_search"]["default"]["ratio"]
        doc["search_seconds_in_paper_evaluations_lean"] = doc["multi_search"]["lean"]["ratio"]
    doc["complete"] = "multi_search" in doc and all(
        set(RECIPES) <= set(doc["parts"].get(f"elpv-{name}", {}).get("recipes", {}))
        for name in ("fs", "fc1")
    )
    save()
    print(json.dumps({k: v for k, v in doc.items() if k != "parts"}, indent=2))
    return 0


#: The --fidelity multi searches timed: (full evaluations, shared evaluations). default: the
#: run's defaults (200, 20 x 200); lean: a fifth of the full trainings.
SEARCHES = {"default": (200, 4000), "lean": (40, 2000)}


def _fold(seed: int):
    cfg = RunConfig(data="elpv", encoding="fs", seed=seed).validate()
    data = prepare_data(cfg, progress=False)
    (fold,) = RunContext.of_data(cfg, data).folds
    return data, fold


def time_paper_evaluation(seed: int) -> float:
    """Seconds of one evaluation with the paper trainer: the not-pruned fs head trained on
    ELPV's fitness fold."""
    from evoprune.model.head import train_head

    data, fold = _fold(seed)
    enc = make_encoding("fs", data.X.shape[1], 512, data.n_classes)
    t0 = time.perf_counter()
    train_head(fold.X_fit, fold.y_fit, enc.decode(enc.full()), data.n_classes, "paper", seed)
    return time.perf_counter() - t0


def time_multi_search(seed: int, full: int, shared: int, quick: bool = False) -> dict:
    """Seconds of a ``--fidelity multi`` search on ELPV fs with ``full`` full trainings and
    ``shared`` shared evaluations, the shared heads' training included."""
    from evoprune.runs.context import RunContext
    from evoprune.runs.evolve import evolve

    if quick:
        full, shared = max(30, full // 10), max(300, shared // 10)
    cfg = RunConfig(
        data="elpv",
        encoding="fs",
        seed=seed,
        fidelity="multi",
        evaluations=full,
        shared_evaluations=shared,
    ).validate()
    data = prepare_data(cfg, progress=False)
    evolved = evolve(RunContext.of_data(cfg, data))
    r = evolved.result
    return {
        "evaluations": r.evaluations,
        "shared_evaluations": r.shared_evaluations,
        "search_seconds": evolved.seconds,
        "shared_heads_seconds": evolved.problem.shared_seconds,
        "best_fitness": r.best_fitness,
        "best_active_fraction": float(r.best.mean()),
    }


if __name__ == "__main__":
    sys.exit(main())
