"""The fast trainer against the paper's trainer on cached ELPV features: accuracy and speed.

    python benchmarks/trainer.py             # 8 masks; the paper trainer once per mask (~6 min)
    python benchmarks/trainer.py --variants  # also every candidate setting tried (+ ~5 min)
    python benchmarks/trainer.py --quick     # 2 masks (about 2 min)

Heads train on the fitness split's training part (as the search trains them); "val" is the
accuracy on its validation part (the figure the settings were chosen on), "test" on the held-out
test set. Masks are seeded, of densities spread from 10 % to 100 %, alternately of the fs and the
fc encoding. Prints a table and writes benchmarks/trainer.json (trainer-quick.json with
--quick). ``measure_fast_vs_paper`` gives the keys ``fast_vs_paper_accuracy_delta`` (points,
fast minus paper, test, mean over the masks) and ``fast_vs_paper_speedup`` (paper seconds per
evaluation over fast, same run).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from evoprune.encodings import make_encoding
from evoprune.io import atomic_write_json
from evoprune.model import TrainerConfig, accuracy, get_trainer, train_head
from evoprune.problem import Fold, make_folds
from evoprune.runs import RunConfig, prepare_data
from evoprune.search import init_population
from evoprune.settings import FitnessSettings

log = logging.getLogger("benchmarks.trainer")
HERE = Path(__file__).resolve().parent

#: Settings tried for the fast trainer (changes to the fast trainer of before, which is
#: ``adam``: Adam 2e-3, batch 256, 15 epochs, weight decay 1e-4, standardised inputs).
_BEFORE = dict(
    optimizer="adam", lr=2e-3, batch_size=256, max_epochs=15, early_stop_patience=3,
    min_delta=1e-4, standardize=True, weight_decay=1e-4,
)  # fmt: skip


def _v(**changes) -> dict:
    return {**_BEFORE, **changes}


VARIANTS: dict[str, dict] = {
    "adam (before)": _v(),
    "adam wd1e-2": _v(weight_decay=1e-2),
    "adam avg10": _v(average_from=10),
    "adam avg5": _v(average_from=5),
    "adam wd1e-2 avg10 (fast)": _v(weight_decay=1e-2, average_from=10),
    "adam raw inputs": _v(standardize=False),
}


@dataclasses.dataclass
class Bench:
    """ELPV features: the fitness split the search uses, the held-out test set, the masks."""

    fold: Fold
    X_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    masks: list[tuple[str, np.ndarray]]


def trainer_masks(n_masks: int, n_features: int, hidden: int = 512, seed: int = 0) -> list:
    """``n_masks`` (encoding, chromosome) pairs: densities evenly from 0.1 to 1, alternately fs
    and fc, genes drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_masks):
        name = "fs" if i % 2 == 0 else "fc"
        density = 0.1 + 0.9 * i / max(n_masks - 1, 1)
        n_genes = make_encoding(name, n_features, hidden).n_genes
        out.append((name, init_population(rng, 1, n_genes, (density, density))[0]))
    return out


def mask_id(name: str, chrom: np.ndarray) -> str:
    """A short name for a mask: encoding, active genes and a digest of the genes."""
    digest = hashlib.sha1(np.asarray(chrom, np.uint8).tobytes()).hexdigest()[:8]
    return f"{name}-{int(chrom.sum())}-{digest}"


def load_bench(n_masks: int, cache_dir: str | None = None) -> Bench:
    data = prepare_data(RunConfig(data="elpv"), cache_dir=cache_dir, progress=True)
    fold = make_folds(
        data.X_train, data.y_train, FitnessSettings(fitness_split="validation", seed=0)
    )[0]
    masks = trainer_masks(n_masks, data.X_train.shape[1])
    return Bench(fold, data.X_test, data.y_test, data.n_classes, masks)


def score_mask(bench: Bench, trainer, name: str, chrom: np.ndarray, seed: int = 0) -> dict:
    """One evaluation as the search runs it (train, score on the validation part), timed; and
    the head's test accuracy."""
    f = bench.fold
    masks = make_encoding(name, f.X_fit.shape[1]).decode(chrom)
    t0 = time.perf_counter()
    trained = train_head(f.X_fit, f.y_fit, masks, bench.n_classes, trainer, seed, f.stats)
    val = accuracy(trained.head, f.X_score, f.y_score)
    seconds = time.perf_counter() - t0
    test = accuracy(trained.head, bench.X_test, bench.y_test)
    return {"val": val, "test": test, "seconds": seconds, "epochs": trained.epochs}


def score_trainer(bench: Bench, trainer, seeds=(0,), cache: dict | None = None) -> dict:
    """Mean figures of ``trainer`` over the masks (and ``seeds``); per mask in ``per_mask``.
    ``cache`` (mask id -> figures, seed 0) is read and filled when given."""
    rows = {}
    for name, chrom in bench.masks:
        key = mask_id(name, chrom)
        runs = []
        for seed in seeds:
            if cache is not None and seed == 0 and key in cache:
                runs.append(cache[key])
                continue
            runs.append(score_mask(bench, trainer, name, chrom, seed))
            if cache is not None and seed == 0:
                cache[key] = runs[-1]
        rows[key] = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
        log.info("%s %s: %s", getattr(trainer, "name", trainer), key, rows[key])
    mean = {k: float(np.mean([r[k] for r in rows.values()])) for k in next(iter(rows.values()))}
    return {**mean, "per_mask": rows}


def compare(fast: dict, paper: dict) -> dict:
    """Points of accuracy (fast minus paper) and the speed-up of ``fast`` over ``paper``."""
    return {
        "val_delta": 100 * (fast["val"] - paper["val"]),
        "test_delta": 100 * (fast["test"] - paper["test"]),
        "speedup": paper["seconds"] / fast["seconds"],
    }


def measure_fast_vs_paper(
    n_masks: int = 8, quick: bool = False, cache_dir: str | None = None, paper_cache=None
) -> dict:
    """The fast trainer against the paper's on ``n_masks`` masks (2 with ``quick``), both timed
    in this process; ``paper_cache`` (a JSON file of the paper trainer's figures per mask) is
    reused and extended when given."""
    bench = load_bench(2 if quick else n_masks, cache_dir)
    train_head(bench.fold.X_fit[:64], bench.fold.y_fit[:64], bench_masks(bench, 0), bench.n_classes)
    cache = _read_cache(paper_cache)
    fast = score_trainer(bench, "fast")
    paper = score_trainer(bench, "paper", cache=cache)
    _write_cache(paper_cache, cache)
    c = compare(fast, paper)
    return {
        "quick": quick,
        "n_masks": len(bench.masks),
        "fast_vs_paper_accuracy_delta": c["test_delta"],
        "fast_vs_paper_val_accuracy_delta": c["val_delta"],
        "fast_vs_paper_speedup": c["speedup"],
        "fast_settings": get_trainer("fast").describe(),
        "fast": fast,
        "paper": paper,
    }


def bench_masks(bench: Bench, i: int):
    name, chrom = bench.masks[i]
    return make_encoding(name, bench.fold.X_fit.shape[1]).decode(chrom)


def _read_cache(path) -> dict | None:
    if path is None:
        return None
    p = Path(path)
    return json.loads(p.read_text()) if p.exists() else {}


def _write_cache(path, cache: dict | None) -> None:
    if path is not None and cache is not None:
        atomic_write_json(Path(path), cache)


def variant_config(name: str) -> TrainerConfig:
    return TrainerConfig(name=name, **VARIANTS[name])


def compare_variants(bench: Bench, paper: dict, names=None, seeds=(0, 1, 2)) -> list[dict]:
    """Each of ``VARIANTS`` (or ``names``) on the bench's masks, mean over ``seeds``, against
    the paper trainer's figures ``paper``."""
    rows = []
    for name in names or VARIANTS:
        fig = score_trainer(bench, variant_config(name), seeds)
        row = {"variant": name, **compare(fig, paper), "seconds": fig["seconds"]}
        row.update(epochs=fig["epochs"], val=fig["val"], test=fig["test"])
        rows.append(row)
        log.info("variant %s", row)
    return rows


def format_table(res: dict) -> str:
    lines = [
        f"{'trainer':24s} {'val':>7s} {'test':>7s} {'s/eval':>8s} {'epochs':>7s}",
        "-" * 57,
    ]
    for key in ("paper", "fast"):
        r = res[key]
        lines.append(
            f"{key:24s} {r['val']:7.4f} {r['test']:7.4f} {r['seconds']:8.3f} {r['epochs']:7.1f}"
        )
    lines.append(f"fast - paper, test (points): {res['fast_vs_paper_accuracy_delta']:+.2f}")
    lines.append(f"fast - paper, val (points):  {res['fast_vs_paper_val_accuracy_delta']:+.2f}")
    lines.append(f"fast vs paper speed-up (x):  {res['fast_vs_paper_speedup']:.1f}")
    if res.get("variants"):
        lines += ["", f"{'variant':24s} {'val d':>7s} {'test d':>7s} {'s/eval':>8s} {'x':>6s}"]
        for v in res["variants"]:
            lines.append(
                f"{v['variant']:24s} {v['val_delta']:+7.2f} {v['test_delta']:+7.2f} "
                f"{v['seconds']:8.3f} {v['speedup']:6.1f}"
            )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="2 masks (a check that it works)")
    p.add_argument("--n-masks", type=int, default=8, help="masks to average over (default 8)")
    p.add_argument("--variants", nargs="*", default=None, help="also these VARIANTS (none: all)")
    p.add_argument("--paper-cache", default=None, help="JSON of the paper trainer's figures")
    p.add_argument("--cache-dir", default=None, help="feature cache folder")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/trainer.json)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    name = "trainer-quick.json" if args.quick else "trainer.json"
    out = Path(args.out) if args.out else HERE / name
    res = measure_fast_vs_paper(args.n_masks, args.quick, args.cache_dir, args.paper_cache)
    if args.variants is not None:
        bench = load_bench(res["n_masks"], args.cache_dir)
        res["variants"] = compare_variants(bench, res["paper"], args.variants or None)
    atomic_write_json(out, res)
    sys.stdout.write(format_table(res) + f"\nwritten: {out}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
