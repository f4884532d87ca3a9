"""Speed benchmarks, measured side by side in one run on the same cached ELPV features.

    python benchmarks/run.py            # full: paper budget, 8 masks, contention (about 25 min)
    python benchmarks/run.py --quick    # smaller budgets (a few minutes)

Prints a table and writes benchmarks/results.json (benchmarks/results-quick.json with --quick),
after each part too (with "complete": false until the end).
Ratios within one run, not absolute seconds, are the figures to compare across machines:
``full_run_in_paper_evaluations`` (a whole FS search over one evaluation of the paper trainer),
``train_fraction_of_matmul_peak`` (batched head training over a large matmul's rate),
``fast_vs_paper_accuracy_delta`` / ``fast_vs_paper_speedup`` (benchmarks/trainer.py),
``features_fraction_of_cnn_rate`` / ``cnn_speedup_vs_eager`` (benchmarks/features.py),
``batch_independent_fitness`` and ``contention_slowdown`` (a search beside an identical one over
the same search alone). Where torch sees a GPU: ``gpu_name``, ``gpu_full_run_seconds`` and
``gpu_features_images_per_second`` (absolute figures).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
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
from evoprune.model import accuracy, get_trainer, train_head
from evoprune.problem import make_folds
from evoprune.runs import RunConfig, prepare_data
from evoprune.search import init_population
from evoprune.settings import FitnessSettings

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
            fold = make_folds(Xd[idx], y[idx], FitnessSettings(fitness_split="validation", seed=0))[
                0
            ]
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


def full_run(X_train, y_train, X_test, y_test, evaluations: int, device: str = "cpu") -> dict:
    """One whole search (population 30) with the estimator: its time and held-out result."""
    clf = EvoPruneClassifier(
        encoding="fs", population=30, evaluations=evaluations, random_state=0, device=device
    )
    t0 = time.perf_counter()
    clf.fit(X_train, y_train)
    return {
        "full_run_seconds": time.perf_counter() - t0,
        "full_run": {
            "device": device,
            "evaluations": clf.search_.evaluations,
            "population": 30,
            "search_seconds": clf.search_seconds_,
            "seconds_per_eval": clf.search_seconds_ / clf.search_.evaluations,
            "test_accuracy": float(clf.score(X_test, y_test)),
            "active_fraction": clf.active_fraction_,
            "fitness": clf.best_fitness_,
        },
    }


def batched_training(fold, enc, masks, n_classes: int) -> dict:
    """The same masks trained head by head and as one batched computation (as the search's
    initial population is): seconds, training rate, and how far their accuracies differ."""
    from evoprune.model import train_heads

    decoded = [enc.decode(c) for c in masks]
    args = (fold.X_fit, fold.y_fit)
    t0 = time.perf_counter()
    alone = [train_head(*args, m, n_classes, "fast", seed=0, stats=fold.stats) for m in decoded]
    t1 = time.perf_counter()
    together = train_heads(*args, decoded, n_classes, "fast", seed=0, stats=fold.stats)
    t2 = time.perf_counter()
    flops = sum(training_flops(t.head.sizes, len(fold.y_fit), t.epochs) for t in together)
    acc = [
        (accuracy(a.head, fold.X_score, fold.y_score), accuracy(b.head, fold.X_score, fold.y_score))
        for a, b in zip(alone, together)
    ]
    return {
        "heads": len(masks),
        "head_by_head_seconds": t1 - t0,
        "batched_seconds": t2 - t1,
        "batched_speedup": (t1 - t0) / (t2 - t1),
        "batched_gflops": flops / (t2 - t1) / 1e9,
        "head_by_head_gflops": flops / (t1 - t0) / 1e9,
        "accuracy_max_abs_diff": max(abs(a - b) for a, b in acc),
        "accuracy_mean_diff": float(np.mean([b - a for a, b in acc])),
        "same_epochs": sum(a.epochs == b.epochs for a, b in zip(alone, together)),
    }


def batch_independence(fold, enc, masks, n_classes: int) -> bool:
    """Each mask's fitness alone equals its fitness in two different batches (exactly)."""
    from evoprune.problem import HeadProblem, HeadTraining

    problem = HeadProblem(enc, n_classes, [fold], HeadTraining.of("fast", seed=0))
    near = masks[0].copy()
    near[np.flatnonzero(near)[:2]] = 0  # most likely of mask 0's padded shape: one group
    masks = [masks[0], masks[1], masks[2], near, *masks[3:]]
    alone = [problem.evaluate_fold(c, 0).accuracy for c in masks[:3]]
    first = [s.accuracy for s in problem.evaluate_fold_batch(np.stack(masks), 0)[:3]]
    rest = np.stack([masks[2], *masks[3:], masks[1], masks[0]])
    second = [s.accuracy for s in problem.evaluate_fold_batch(rest, 0)]
    return bool(alone == first == [second[-1], second[-2], second[0]])


def search_only(evaluations: int, cache_dir: str | None) -> float:
    """Seconds of one FS search (population 30) on the cached ELPV features, threads chosen as
    the command line chooses them: the unit that ``contention`` runs once and twice at once."""
    from evoprune.devices import share_cores

    share_cores()
    data = prepare_data(RunConfig(data="elpv"), cache_dir=cache_dir, progress=False)
    clf = EvoPruneClassifier(encoding="fs", population=30, evaluations=evaluations, device="cpu")
    t0 = time.perf_counter()
    clf.fit(data.X_train, data.y_train)
    return time.perf_counter() - t0


def contention(evaluations: int, cache_dir: str | None) -> dict:
    """Wall time of a search run beside a second identical one (two processes started
    together) over the same search alone."""
    import subprocess

    cmd = [sys.executable, str(Path(__file__).resolve()), "--search-only", str(evaluations)]
    cmd += ["--cache-dir", cache_dir] if cache_dir else []

    # as `import evoprune` sets it before torch loads (this script imported torch first)
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}

    def start():
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)

    def seconds(proc) -> float:
        out, _ = proc.communicate()
        return float(json.loads(out.strip().splitlines()[-1])["seconds"])

    alone = seconds(start())
    pair = [start(), start()]
    side_by_side = [seconds(p) for p in pair]
    log.info("contention: alone %.1f s, side by side %s s", alone, side_by_side)
    return {
        "contention": {
            "evaluations": evaluations,
            "alone_seconds": alone,
            "side_by_side_seconds": side_by_side,
        },
        "contention_slowdown": max(side_by_side) / alone,
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


#: The issue's targets: key, comparison, bound, and the next lever when missed.
TARGETS = [
    ("full_run_in_paper_evaluations", "<=", 0.7, "fewer epochs or larger groups of heads"),
    ("train_fraction_of_matmul_peak", ">=", 0.5, "fewer, larger products per step"),
    ("fast_vs_paper_accuracy_delta", ">=", -0.5, "benchmarks/trainer.py --variants"),
    ("fast_vs_paper_speedup", ">=", 50, "fewer fast-trainer epochs"),
    ("features_fraction_of_cnn_rate", ">=", 0.9, "more decoding threads"),
    ("cnn_speedup_vs_eager", ">=", 1.5, "onnxruntime installed"),
    ("batch_independent_fitness", "==", True, "per-head shapes and optimiser steps"),
    ("contention_slowdown", "<=", 2.5, "fewer threads beside busy cores"),
    ("gpu_full_run_seconds", "<=", 10, "larger groups of heads on the GPU"),
    ("gpu_features_images_per_second", ">=", 1500, "more decoding threads"),
]


def targets(res: dict) -> dict:
    """{target: met} for each target ``res`` has a figure for."""
    compare = {"<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b, "==": lambda a, b: a == b}
    return {
        f"{key}{op}{bound}": bool(compare[op](res[key], bound))
        for key, op, bound, _ in TARGETS
        if key in res
    }


def missed(res: dict) -> list[str]:
    """One line per missed target: its figure and the next lever."""
    return [
        f"MISSED {key} {op} {bound}: {res[key]:.3g}; next lever: {lever}"
        for key, op, bound, lever in TARGETS
        if key in res and not targets({key: res[key]})[f"{key}{op}{bound}"]
    ]


def trainers(res: dict, quick: bool, cache_dir, fold, X_test, y_test, masks, enc, n_classes):
    """The fast trainer against the paper's: benchmarks/trainer.py's measurement when present
    (8 masks of fs and fc), else this file's (the masks given)."""
    try:
        from trainer import measure_fast_vs_paper  # benchmarks/trainer.py, beside this file
    except ImportError:
        compare_trainers(res, fold, X_test, y_test, masks, enc, n_classes)
        return
    t = measure_fast_vs_paper(quick=quick, cache_dir=cache_dir)
    res["trainers"] = t
    res["paper_trainer_seconds_per_eval"] = t["paper"]["seconds"]
    res["fast_trainer_seconds_per_eval"] = t["fast"]["seconds"]
    for key in ("fast_vs_paper_speedup", "fast_vs_paper_accuracy_delta"):
        res[key] = t[key]


def features(quick: bool) -> dict:
    """benchmarks/features.py's ratios (and its GPU figure), when that file is present."""
    try:
        from features import measure_features  # benchmarks/features.py, beside this file
    except ImportError:
        return {}
    f = measure_features(quick=quick)
    keys = ("features_fraction_of_cnn_rate", "cnn_speedup_vs_eager", "features_max_abs_diff")
    out = {k: f[k] for k in keys if k in f}
    out.update({k: v for k, v in f.items() if k.startswith("gpu_")})
    return out


def gpu_figures(X_train, y_train, X_test, y_test, evaluations: int) -> dict:
    """The whole search on the GPU (absolute seconds), when torch sees one."""
    if not torch.cuda.is_available():
        return {}
    from evoprune.devices import describe_device

    run = full_run(X_train, y_train, X_test, y_test, evaluations, device="cuda")
    return {
        "gpu_name": torch.cuda.get_device_name(0),
        "gpu_device": describe_device("cuda"),
        "gpu_full_run_seconds": run["full_run_seconds"],
        "gpu_full_run": run["full_run"],
    }


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller budgets (a few minutes)")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results.json)")
    p.add_argument("--cache-dir", default=None, help="feature cache folder")
    p.add_argument("--no-sklearn-genetic", action="store_true", help="skip that comparison")
    p.add_argument("--no-features", action="store_true", help="skip benchmarks/features.py")
    p.add_argument("--search-only", type=int, default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.search_only:  # one search, for contention(): prints its seconds as JSON
        seconds = search_only(args.search_only, args.cache_dir)
        sys.stdout.write(json.dumps({"seconds": seconds}) + "\n")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from evoprune.devices import share_cores

    quick = args.quick
    out = Path(args.out) if args.out else HERE / ("results-quick.json" if quick else "results.json")
    evaluations = 60 if quick else 200
    t_start = time.perf_counter()
    threads = share_cores()
    data = prepare_data(
        RunConfig(data="elpv"), cache_dir=args.cache_dir, progress=True
    )  # fmt: skip
    n_classes = data.n_classes
    X_train, y_train, X_test, y_test = data.X_train, data.y_train, data.X_test, data.y_test
    fold = make_folds(X_train, y_train, FitnessSettings(fitness_split="validation", seed=0))[0]
    enc = make_encoding("fs", X_train.shape[1])
    masks = [enc.full()] + list(init_population(np.random.default_rng(1), 7, enc.n_genes))
    res: dict = {
        "quick": quick,
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": threads,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
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

    def checkpoint() -> None:
        """What is measured so far, so that a stopped run leaves its parts (marked partial)."""
        atomic_write_json(out, {**res, "complete": False})

    trainers(res, quick, args.cache_dir, fold, X_test, y_test, masks[:1], enc, n_classes)
    checkpoint()
    res.update(full_run(X_train, y_train, X_test, y_test, evaluations))
    res["full_run_in_paper_evaluations"] = (
        res["full_run_seconds"] * (200 / evaluations) / res["paper_trainer_seconds_per_eval"]
    )
    checkpoint()
    res["batched"] = batched_training(fold, enc, masks[: 4 if quick else 8], n_classes)
    res["batch_independent_fitness"] = batch_independence(fold, enc, masks, n_classes)
    res["matmul_gflops"] = matmul_gflops()
    res["train_gflops"] = res["batched"]["batched_gflops"]
    res["train_fraction_of_matmul_peak"] = res["train_gflops"] / res["matmul_gflops"]
    res["train_fraction_head_by_head"] = (
        res["batched"]["head_by_head_gflops"] / res["matmul_gflops"]
    )
    checkpoint()
    res.update(contention(30 if quick else evaluations, args.cache_dir))
    checkpoint()
    if not args.no_sklearn_genetic:
        res.update(
            compare_sklearn_genetic(
                X_train, y_train, X_test, y_test, 50 if quick else evaluations, 10 if quick else 30
            )
        )
        checkpoint()
    if not args.no_features:
        res.update(features(quick))
        checkpoint()
    res.update(gpu_figures(X_train, y_train, X_test, y_test, evaluations))
    if not quick:
        res["scaling"] = scaling(data, n_classes, [500, 1000, 2600], [1280, 2048], repeats=3)
    res["targets"] = targets(res)
    res["benchmark_seconds"] = time.perf_counter() - t_start
    res["complete"] = True
    atomic_write_json(out, res)
    sys.stdout.write(format_table(res) + f"\nwritten: {out}\n")
    return 0


def format_table(res: dict) -> str:
    lines = [f"{'measure':46s} {'value':>12s}", "-" * 59]

    def row(name, key, fmt="{:.3f}"):
        if key in res:
            lines.append(f"{name:46s} {fmt.format(res[key]):>12s}")

    row("paper trainer s/eval", "paper_trainer_seconds_per_eval")
    row("fast trainer s/eval", "fast_trainer_seconds_per_eval")
    row("fast vs paper speed-up (x)", "fast_vs_paper_speedup", "{:.1f}")
    row("fast - paper test accuracy (points)", "fast_vs_paper_accuracy_delta", "{:+.2f}")
    fr = res["full_run"]
    row(f"full FS run, pop 30, {fr['evaluations']} evals (s)", "full_run_seconds", "{:.1f}")
    lines.append(f"{'  its test accuracy':46s} {fr['test_accuracy']:>12.4f}")
    row("full run / one paper evaluation", "full_run_in_paper_evaluations", "{:.2f}")
    b = res["batched"]
    lines.append(
        f"{str(b['heads']) + ' heads head by head (s)':46s} {b['head_by_head_seconds']:>12.2f}"
    )
    lines.append(f"{'  batched (s)':46s} {b['batched_seconds']:>12.2f}")
    lines.append(
        f"{'  accuracy max |diff| (points)':46s} {100 * b['accuracy_max_abs_diff']:>12.2f}"
    )
    row("large matmul GFLOP/s", "matmul_gflops", "{:.1f}")
    row("batched training / matmul peak", "train_fraction_of_matmul_peak", "{:.2f}")
    row("head-by-head training / matmul peak", "train_fraction_head_by_head", "{:.2f}")
    row("fitness independent of the batch", "batch_independent_fitness", "{}")
    row("search beside another / alone", "contention_slowdown", "{:.2f}")
    row("vs sklearn-genetic-opt speed-up (x)", "vs_sklearn_genetic_speedup", "{:.1f}")
    row("features pipeline / CNN alone", "features_fraction_of_cnn_rate", "{:.2f}")
    row("CNN fastest form / eager", "cnn_speedup_vs_eager", "{:.2f}")
    row("GPU full run (s)", "gpu_full_run_seconds", "{:.1f}")
    row("GPU features images/s", "gpu_features_images_per_second", "{:.0f}")
    if "gpu_name" in res:
        lines.append(f"GPU: {res['gpu_name']}")
    lines.append("")
    lines.append(
        "targets: "
        + ", ".join(f"{k}: {'met' if v else 'MISSED'}" for k, v in res["targets"].items())
    )
    lines.extend(missed(res))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
