"""The reviewer's feature-selection baselines beside the filters: held-out accuracy and seconds.

    python benchmarks/selection_rankings.py             # ELPV fs, seed 0, densities 2-20 %
    python benchmarks/selection_rankings.py --seed 1 --data digits
    python benchmarks/selection_rankings.py --methods rfe   # redo one, keep the others' figures

For each feature ranking installed here (compare/rankings.py: ANOVA F, mutual information, RFE
on a linear probe, and with the ``selection`` extra mRMR, ReliefF and LassoNet's path) the top
features at each density, chosen from the run's training images alone, retrained from scratch
with the run's trainer and seed and scored on its held-out test set. ``select_seconds`` is the
ranking's own time over all densities (scores once, or one choice per size for RFE),
``train_seconds`` the retraining. Writes benchmarks/selection_rankings.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch

from evoprune import __version__
from evoprune.compare.curves import density_keep
from evoprune.compare.rankings import Ranker, feature_rankings
from evoprune.io import atomic_write_json
from evoprune.model.head import accuracy
from evoprune.runs.config import RunConfig
from evoprune.runs.context import RunContext
from evoprune.runs.experiment import prepare_data

log = logging.getLogger("benchmarks")
HERE = Path(__file__).resolve().parent
DENSITIES = (0.02, 0.05, 0.1, 0.2)
FIRST = ("anova_f", "mutual_info")  # the filters the new rankings are compared with


def measure(cfg: RunConfig, methods: tuple[str, ...]) -> dict:
    data = prepare_data(cfg, progress=False)
    ranker = Ranker(RunContext.of_data(cfg, data))
    encoding = ranker.encoding
    out = {}
    for method in methods:
        t0 = time.perf_counter()
        chroms = [ranker.chromosome(method, density_keep(encoding, d))[0] for d in DENSITIES]
        select = time.perf_counter() - t0
        t0 = time.perf_counter()
        accs = [accuracy(ranker.retrain(c), data.X_test, data.y_test) for c in chroms]
        out[method] = {
            "test_accuracy": dict(zip(map(str, DENSITIES), accs)),
            "features_kept": [int(c.sum()) for c in chroms],
            "select_seconds": round(select, 2),
            "train_seconds": round(time.perf_counter() - t0, 2),
        }
        log.info("%s: %s in %.1f s", method, [round(a, 4) for a in accs], select)
    return {
        "data": cfg.data,
        "encoding": cfg.encoding,
        "seed": cfg.seed,
        "trainer": cfg.trainer,
        "n_train": int(len(data.y_train)),
        "n_test": int(len(data.y_test)),
        "n_features": int(data.X.shape[1]),
        "torch_threads": torch.get_num_threads(),
        "evoprune_version": __version__,
        "densities": list(DENSITIES),
        "methods": out,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="elpv")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", default=None, help="comma-separated; default: all of them")
    p.add_argument("--out", default=str(HERE / "selection_rankings.json"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = RunConfig(data=args.data, seed=args.seed, encoding="fs").validate()
    methods = FIRST + tuple(m for m in feature_rankings() if m not in FIRST)
    methods = tuple(m for m in methods if m not in ("l1_logistic", "norm_retrained"))
    if args.methods:
        methods = tuple(args.methods.split(","))
    doc = measure(cfg, methods)
    out = Path(args.out)
    if args.methods and out.exists():  # the other methods' figures stay
        old = json.loads(out.read_text(encoding="utf-8"))
        doc["methods"] = {**old.get("methods", {}), **doc["methods"]}
    atomic_write_json(out, doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
