"""Speed benchmarks, measured side by side in one run on the same cached ELPV features.

    python benchmarks/run.py            # full: paper budget, several masks (about 20 min)
    python benchmarks/run.py --quick    # smaller budgets (a few minutes)

Prints a table and writes benchmarks/results.json (benchmarks/results-quick.json with --quick).
Ratios, not absolute seconds, are the figures to compare across machines.
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from evoprune.data import stratified_split
from evoprune.encodings import make_encoding
from evoprune.estimator import EvoPruneClassifier
from evoprune.io import atomic_write_json
from evoprune.model.head import accuracy, get_trainer, train_head
from evoprune.problem import make_folds
from evoprune.runs.experiment import RunConfig, prepare_data
from evoprune.search import init_population

log = logging.getLogger("benchmarks")
HERE = Path(__file__).resolve().parent


def training_flops(sizes: tuple[int, ...], n_samples: int, epochs: int) -> float:
    """Floating-point operations of ``epochs`` of training on ``n_samples``: forward 2, weight
    gradient 2 and (except the first layer) input gradient 2 per multiply-add."""
    per_sample = 0
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        per_sample += (4 if i == 0 else 6) * a * b
    return float(per_sample) * n_samples * epochs


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """The rate of a large float32 matrix product: the machine's practical peak."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def time_trainer(trainer: str, fold, X_test, y_test, masks, enc, n_classes) -> dict:
    """Seconds per evaluation (train on the fitness split's training part, score its validation
    part) and held-out test accuracy, averaged over ``masks``."""
    secs, val, test, epochs, flops = [], [], [], [], []
    for chrom in masks:
        m = enc.decode(chrom)
        t0 = time.perf_counter()
        trained = train_head(
            fold.X_fit, fold.y_fit, m, n_classes, trainer, seed=0, stats=fold.stats
        )
        val.append(accuracy(trained.head, fold.X_score, fold.y_score))
        secs.append(time.perf_counter() - t0)
        test.append(accuracy(trained.head, X_test, y_test))
        epochs.append(trained.epochs)
        flops.append(training_flops(trained.head.sizes, len(fold.y_fit), trained.epochs))
        log.info(
            "%s trainer, %d active genes: %.2f s, %d epochs, test %.4f",
            trainer,
            int(chrom.sum()),
            secs[-1],
            epochs[-1],
            test[-1],
        )
    return {
        "seconds_per_eval": float(np.mean(secs)),
        "test_accuracy": float(np.mean(test)),
        "val_accuracy": float(np.mean(val)),
        "epochs": float(np.mean(epochs)),
        "gflops": float(np.sum(flops) / np.sum(secs) / 1e9),
        "per_mask_test": test,
    }


class _Counting:
    """Counts fits of a scikit-learn estimator (sklearn-genetic-opt clones it per evaluation)."""

    calls = 0


def sklearn_genetic(
    X_train, y_train, fold_pairs, X_test, y_test, evaluations: int, population: int, seed: int
) -> dict | None:
    """sklearn-genetic-opt's GAFeatureSelectionCV with a one-hidden-layer (512) MLPClassifier
    (scikit-learn's defaults otherwise) on the same features and validation split, about
    ``evaluations`` evaluations; then evoprune's FS search with the same population and exactly
    as many evaluations as it made, for accuracy at equal budget."""
    try:
        from sklearn_genetic import GAFeatureSelectionCV
    except ImportError:
        log.warning(
            "sklearn-genetic-opt is not installed (pip install 'evoprune[bench]'); "
            "skipping that comparison"
        )
        return None
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    class CountingMLP(MLPClassifier):
        def fit(self, X, y):
            _Counting.calls += 1
            return super().fit(X, y)

    est = Pipeline(
        [
            ("scale", StandardScaler()),
            ("mlp", CountingMLP(hidden_layer_sizes=(512,), random_state=seed)),
        ]
    )
    # eaMuPlusLambda evaluates the initial population, then 2 x population children per
    # generation (fewer when children repeat and hit its cache)
    generations = max(1, round((evaluations - population) / (2 * population)))
    search = GAFeatureSelectionCV(
        est,
        cv=fold_pairs,
        scoring="accuracy",
        population_size=population,
        generations=generations,
        n_jobs=1,
        verbose=False,
        refit=False,
    )
    _Counting.calls = 0
    np.random.seed(seed)
    import random

    random.seed(seed)
    t0 = time.perf_counter()
    search.fit(X_train, y_train)
    seconds = time.perf_counter() - t0
    evals = _Counting.calls
    support = np.asarray(search.support_, dtype=bool)
    final = Pipeline(
        [
            ("scale", StandardScaler()),
            ("mlp", MLPClassifier(hidden_layer_sizes=(512,), random_state=seed)),
        ]
    )
    final.fit(X_train[:, support], y_train)
    ours = EvoPruneClassifier(
        encoding="fs", population=population, evaluations=evals, random_state=seed
    ).fit(X_train, y_train)
    return {
        "seconds": seconds,
        "evaluations": evals,
        "seconds_per_eval": seconds / max(evals, 1),
        "population": population,
        "generations": generations,
        "active_fraction": float(support.mean()),
        "test_accuracy": float(final.score(X_test[:, support], y_test)),
        "evoprune_seconds_per_eval": ours.search_seconds_ / ours.search_.evaluations,
        "evoprune_test_accuracy": float(ours.score(X_test, y_test)),
        "evoprune_active_fraction": ours.active_fraction_,
    }


def scaling(data, n_classes: int, sizes: list[int], dims: list[int], repeats: int) -> list[dict]:
    """Seconds per fast-trainer evaluation (FS, half the genes on) against the number of images
    and the feature size (zero-padding 1280 features up to 2048)."""
    rows = []
    g = np.random.default_rng(0)
    X, y = data.X_train, data.y_train
    for d in dims:
        Xd = (
            X if d == X.shape[1] else np.hstack([X, np.zeros((len(X), d - X.shape[1]), np.float32)])
        )
        enc = make_encoding("fs", d)
        for n in sizes:
            idx = g.choice(len(Xd), size=n, replace=n > len(Xd))
            fold = make_folds(Xd[idx], y[idx], "validation", seed=0)[0]
            chrom = init_population(g, 1, d, (0.5, 0.5))[0]
            t = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                trained = train_head(
                    fold.X_fit,
                    fold.y_fit,
                    enc.decode(chrom),
                    n_classes,
                    "fast",
                    seed=0,
                    stats=fold.stats,
                )
                accuracy(trained.head, fold.X_score, fold.y_score)
                t.append(time.perf_counter() - t0)
            rows.append({"images": n, "feature_dim": d, "seconds_per_eval": float(np.median(t))})
            log.info(
                "scaling: %d images, %d features: %.3f s/eval", n, d, rows[-1]["seconds_per_eval"]
            )
    return rows


def compare_trainers(res: dict, fold, X_test, y_test, masks, enc, n_classes) -> dict:
    """The fast and the paper's trainer on the same masks, into ``res``; returns the fast
    trainer's timings."""
    # warm-up: the first training in a process pays one-off costs (allocator, kernels)
    train_head(fold.X_fit[:64], fold.y_fit[:64], enc.decode(masks[0]), n_classes, "fast")
    fast = time_trainer("fast", fold, X_test, y_test, masks, enc, n_classes)
    paper = time_trainer("paper", fold, X_test, y_test, masks, enc, n_classes)
    res["trainers"] = {
        "fast": fast,
        "paper": paper,
        "masks_active": [int(m.sum()) for m in masks],
        "fast_settings": get_trainer("fast").describe(),
    }
    res["paper_trainer_seconds_per_eval"] = paper["seconds_per_eval"]
    res["fast_trainer_seconds_per_eval"] = fast["seconds_per_eval"]
    res["fast_vs_paper_speedup"] = paper["seconds_per_eval"] / fast["seconds_per_eval"]
    res["fast_vs_paper_accuracy_delta"] = 100 * (fast["test_accuracy"] - paper["test_accuracy"])
    return fast


def full_run(X_train, y_train, X_test, y_test, evaluations: int) -> dict:
    """One whole search (population 30) with the estimator: its time and held-out result."""
    clf = EvoPruneClassifier(encoding="fs", population=30, evaluations=evaluations, random_state=0)
    t0 = time.perf_counter()
    clf.fit(X_train, y_train)
    return {
        "full_run_seconds": time.perf_counter() - t0,
        "full_run": {
            "evaluations": clf.search_.evaluations,
            "population": 30,
            "search_seconds": clf.search_seconds_,
            "seconds_per_eval": clf.search_seconds_ / clf.search_.evaluations,
            "test_accuracy": float(clf.score(X_test, y_test)),
            "active_fraction": clf.active_fraction_,
            "fitness": clf.best_fitness_,
        },
    }


def compare_sklearn_genetic(
    X_train, y_train, X_test, y_test, evaluations: int, population: int
) -> dict:
    """sklearn-genetic-opt's feature selection against evoprune on the same fitness split;
    empty when it is not installed."""
    # the same split the search's fitness uses (make_folds draws it the same way)
    fit_idx, val_idx = stratified_split(y_train, 0.2, 0)
    sk = sklearn_genetic(
        X_train, y_train, [(fit_idx, val_idx)], X_test, y_test, evaluations, population, seed=0
    )
    if sk is None:
        return {}
    return {
        "sklearn_genetic": sk,
        "sklearn_genetic_seconds_per_eval": sk["seconds_per_eval"],
        "vs_sklearn_genetic_speedup": sk["seconds_per_eval"] / sk["evoprune_seconds_per_eval"],
        "vs_sklearn_genetic_accuracy_delta": 100
        * (sk["evoprune_test_accuracy"] - sk["test_accuracy"]),
    }


def targets(res: dict, evaluations: int) -> dict:
    """Which of the project's speed and accuracy targets ``res`` meets."""
    met = {
        "full_run_seconds<=180": res["full_run_seconds"] * (200 / evaluations) <= 180,
        "fast_vs_paper_speedup>=10": res["fast_vs_paper_speedup"] >= 10,
        "fast_vs_paper_accuracy_within_1pt": abs(res["fast_vs_paper_accuracy_delta"]) <= 1,
        "train_fraction_of_matmul_peak>=0.3": res["train_fraction_of_matmul_peak"] >= 0.3,
    }
    if "vs_sklearn_genetic_speedup" in res:
        met["vs_sklearn_genetic_speedup>=5_at_equal_or_better_accuracy"] = (
            res["vs_sklearn_genetic_speedup"] >= 5 and res["vs_sklearn_genetic_accuracy_delta"] >= 0
        )
    return met


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller budgets (a few minutes)")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results.json)")
    p.add_argument("--cache-dir", default=None, help="feature cache folder")
    p.add_argument("--no-sklearn-genetic", action="store_true", help="skip that comparison")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    quick = args.quick
    out = Path(args.out) if args.out else HERE / ("results-quick.json" if quick else "results.json")
    evaluations = 60 if quick else 200
    n_masks = 1 if quick else 3

    t_start = time.perf_counter()
    data = prepare_data(RunConfig(data="elpv"), cache_dir=args.cache_dir, progress=True)
    n_classes = data.n_classes
    X_train, y_train, X_test, y_test = data.X_train, data.y_train, data.X_test, data.y_test
    fold = make_folds(X_train, y_train, "validation", seed=0)[0]
    enc = make_encoding("fs", X_train.shape[1])
    masks = [enc.full()]
    if n_masks > 1:
        masks += list(init_population(np.random.default_rng(1), n_masks - 1, enc.n_genes))

    res: dict = {
        "quick": quick,
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "processor": (platform.processor() or platform.machine()),
        },
        "dataset": {
            "name": data.name,
            "n_train": len(y_train),
            "n_test": len(y_test),
            "feature_dim": int(X_train.shape[1]),
            "n_fit": len(fold.y_fit),
        },
    }
    fast = compare_trainers(res, fold, X_test, y_test, masks, enc, n_classes)
    res.update(full_run(X_train, y_train, X_test, y_test, evaluations))
    if not args.no_sklearn_genetic:
        res.update(
            compare_sklearn_genetic(
                X_train, y_train, X_test, y_test, 50 if quick else evaluations, 10 if quick else 30
            )
        )
    res["matmul_gflops"] = matmul_gflops()
    res["train_gflops"] = fast["gflops"]
    res["train_fraction_of_matmul_peak"] = res["train_gflops"] / res["matmul_gflops"]
    res["scaling"] = scaling(
        data, n_classes, [500, 1000, 2600], [1280, 2048], repeats=1 if quick else 3
    )
    res["targets"] = targets(res, evaluations)
    res["benchmark_seconds"] = time.perf_counter() - t_start
    atomic_write_json(out, res)
    sys.stdout.write(format_table(res) + f"\nwritten: {out}\n")
    return 0


def format_table(res: dict) -> str:
    f, pp = res["trainers"]["fast"], res["trainers"]["paper"]
    lines = [f"{'measure':44s} {'value':>12s}", "-" * 57]

    def row(name, value, fmt="{:.3f}"):
        lines.append(f"{name:44s} {fmt.format(value):>12s}")

    row("paper trainer s/eval", res["paper_trainer_seconds_per_eval"])
    row("fast trainer s/eval", res["fast_trainer_seconds_per_eval"])
    row("fast vs paper speed-up (x)", res["fast_vs_paper_speedup"], "{:.1f}")
    row("paper trainer test accuracy", pp["test_accuracy"], "{:.4f}")
    row("fast trainer test accuracy", f["test_accuracy"], "{:.4f}")
    row("fast - paper accuracy (points)", res["fast_vs_paper_accuracy_delta"], "{:+.2f}")
    fr = res["full_run"]
    row(f"full FS run, pop 30, {fr['evaluations']} evals (s)", res["full_run_seconds"], "{:.1f}")
    row("  its test accuracy", fr["test_accuracy"], "{:.4f}")
    row("  its % active", 100 * fr["active_fraction"], "{:.1f}")
    if "sklearn_genetic" in res:
        sk = res["sklearn_genetic"]
        row(f"sklearn-genetic-opt s/eval ({sk['evaluations']} evals)", sk["seconds_per_eval"])
        row("  its test accuracy", sk["test_accuracy"], "{:.4f}")
        row("evoprune s/eval, same population and evals", sk["evoprune_seconds_per_eval"])
        row("  its test accuracy", sk["evoprune_test_accuracy"], "{:.4f}")
        row("evoprune vs sklearn-genetic speed-up (x)", res["vs_sklearn_genetic_speedup"], "{:.1f}")
        row(
            "evoprune - sklearn-genetic accuracy (pts)",
            res["vs_sklearn_genetic_accuracy_delta"],
            "{:+.2f}",
        )
    row("large matmul GFLOP/s", res["matmul_gflops"], "{:.1f}")
    row("head training GFLOP/s", res["train_gflops"], "{:.1f}")
    row("training / matmul peak", res["train_fraction_of_matmul_peak"], "{:.2f}")
    lines.append("")
    lines.append("scaling (fast trainer, FS, half the genes on):")
    lines.append(f"  {'images':>7s} {'features':>9s} {'s/eval':>8s}")
    for r in res["scaling"]:
        lines.append(f"  {r['images']:7d} {r['feature_dim']:9d} {r['seconds_per_eval']:8.3f}")
    lines.append("")
    lines.append(
        "targets: "
        + ", ".join(f"{k}: {'met' if v else 'MISSED'}" for k, v in res["targets"].items())
    )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
