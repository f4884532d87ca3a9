"""Scale-out benchmark (issue 11): Ray workers against one process, ratios measured in one run on
the same machine and the same cached ELPV features.

    python benchmarks/scaleout.py --quick                 # a check that it works (~3 minutes)
    python benchmarks/scaleout.py                         # the figures of the README
    python benchmarks/scaleout.py --workers 1,2,4,8,16    # on a bigger machine: speed-up plot

Measured:
- speedup_2_workers_paper_trainer: seconds per evaluation of the paper trainer, one process with
  2 torch threads against 2 Ray workers with 1 thread each (the same masks);
- speedup_2_workers_compare: wall time of a shortened ``evoprune compare`` on ELPV, 1 worker
  against 2 (one torch thread per evaluation in both);
- ray_overhead_fraction: one full search with the fast trainer on 1 Ray worker: the time the
  driver waited for evaluations beyond what the worker spent evaluating (dispatch, transfer,
  Ray's bookkeeping), over the search's wall time;
- identical_results: the same search in this process and on 2 Ray workers gives the same best
  mask, fitness and history;
- features_speedup_2_workers: feature extraction of ELPV (no cache), one process with 2 threads
  against 2 workers with 1 thread each;
- scaling: evaluations per second of the paper trainer against the number of workers
  (``--workers``), plotted to benchmarks/scaleout.png.

Prints a table and writes benchmarks/scaleout.json, after each part: a stopped run keeps the parts
it finished, and the same command again does only the rest.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from evoprune.cluster import RayExecutor, ThreadsExecutor, feature_compute, ray_session
from evoprune.compare import CompareConfig, run_comparison
from evoprune.io import atomic_write_json
from evoprune.model import TRAINERS
from evoprune.problem import HeadProblem
from evoprune.runs import RunConfig, RunContext, evolve, prepare_data

HERE = Path(__file__).parent
log = logging.getLogger("benchmarks.scaleout")


def paper_problem(data, quick: bool) -> HeadProblem:
    """The paper trainer on the validation fold of ELPV's training features (fs encoding)."""
    trainer = TRAINERS["paper"]
    if quick:  # a few epochs: checks the plumbing, not the figure
        trainer = dataclasses.replace(trainer, max_epochs=15)
    cfg = RunConfig(encoding="fs", hidden_size=512, fitness_split="validation", device="cpu")
    return RunContext.of_data(cfg, data, trainer=trainer).problem


def masks(n_genes: int, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((n, n_genes)) < rng.uniform(0.2, 0.8, size=(n, 1))).astype(np.uint8)


def seconds_per_evaluation(problem, chromosomes, workers: int, threads: int) -> float:
    """Wall seconds per evaluation of ``chromosomes``: here (workers 1) or on Ray workers."""
    if workers == 1 and threads > 1:
        t0 = time.perf_counter()
        ThreadsExecutor(threads).evaluate(problem, chromosomes)
        return (time.perf_counter() - t0) / len(chromosomes)
    with ray_session(workers, None, threads) as ray:
        executor = RayExecutor(ray, workers, threads)
        executor.evaluate(problem, chromosomes[:workers])  # workers fetch the problem
        t0 = time.perf_counter()
        executor.evaluate(problem, chromosomes)
        return (time.perf_counter() - t0) / len(chromosomes)


def search_config(evaluations: int) -> RunConfig:
    return RunConfig(population=30, evaluations=evaluations, seed=0).validate()


def run_search(data, cfg, executor) -> tuple[float, object]:
    t0 = time.perf_counter()
    evolved = evolve(RunContext.of_data(cfg, data), executor=executor)
    return time.perf_counter() - t0, evolved.result


def summary(result) -> tuple:
    return (
        result.best.tobytes(),
        result.best_fitness,
        [(r.chromosome.tobytes(), r.fitness) for r in result.history],
    )


def overhead_and_identity(data, evaluations: int) -> dict:
    """One search on 1 Ray worker (overhead) and the same search here and on 2 workers."""
    cfg = search_config(evaluations)
    wall_here, here = run_search(data, cfg, ThreadsExecutor(1))
    with ray_session(1, None, 1) as ray:
        one = RayExecutor(ray, 1, 1)
        wall_one, on_one = run_search(data, cfg, one)
        busy, waited = sum(one.busy.values()), one.seconds
    with ray_session(2, None, 1) as ray:
        wall_two, on_two = run_search(data, cfg, RayExecutor(ray, 2, 1))
    return {
        "search_evaluations": evaluations,
        "search_seconds_here": wall_here,
        "search_seconds_1_ray_worker": wall_one,
        "search_seconds_2_ray_workers": wall_two,
        "ray_overhead_fraction": max(0.0, waited - busy) / wall_one,
        "identical_results": summary(here) == summary(on_one) == summary(on_two),
    }


def compare_speedup(base: RunConfig, quick: bool, cache_dir) -> dict:
    """A shortened comparison on ELPV, 1 worker against 2."""
    seconds = {}
    for workers in (1, 2):
        cfg = dataclasses.replace(
            base, workers=workers, population=6, evaluations=8 if quick else 20
        )
        cc = CompareConfig(
            base=cfg,
            encodings=("fs",) if quick else ("fs", "fc1"),
            runs=2,
            poly_epochs=2 if quick else 5,
        )
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            run_comparison(cc, tmp, progress=False, cache_dir=cache_dir)
            seconds[workers] = time.perf_counter() - t0
    return {
        "compare_seconds_1_worker": seconds[1],
        "compare_seconds_2_workers": seconds[2],
        "speedup_2_workers_compare": seconds[1] / seconds[2],
    }


def features_speedup(data, n_images: int) -> dict:
    """Extraction without the cache: here with 2 threads against 2 workers with 1 thread."""
    import torch

    from evoprune.backbones import get_backbone
    from evoprune.features import extract_features

    backbone = get_backbone("efficientnet-lite0")
    paths = data.paths[:n_images]
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    here = extract_features(backbone, paths, use_cache=False, progress=False).X
    seconds_here = time.perf_counter() - t0
    torch.set_num_threads(before)
    cfg = RunConfig(workers=2)
    with ray_session(2, None, 1):
        t0 = time.perf_counter()
        sharded = extract_features(
            backbone, paths, use_cache=False, progress=False, compute=feature_compute(cfg)
        ).X
        seconds_two = time.perf_counter() - t0
    return {
        "features_images": len(paths),
        "features_seconds_here_2_threads": seconds_here,
        "features_seconds_2_workers": seconds_two,
        "features_speedup_2_workers": seconds_here / seconds_two,
        "features_max_abs_difference": float(np.abs(here - sharded).max()),
    }


def scaling(problem, workers: list[int], n_masks: int) -> list[dict]:
    """The same masks evaluated on each number of workers (1 thread each)."""
    rows = []
    chromosomes = masks(problem.n_genes, max(n_masks, max(workers)), seed=1)
    for w in workers:
        s = seconds_per_evaluation(problem, chromosomes, w, 1)
        rows.append({"workers": w, "seconds_per_evaluation": s})
    base = rows[0]["seconds_per_evaluation"] * rows[0]["workers"]
    for r in rows:
        r["speedup"] = base / r["seconds_per_evaluation"]
    return rows


def plot_scaling(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    w = [r["workers"] for r in rows]
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(w, [r["speedup"] for r in rows], "o-", label="measured")
    ax.plot(w, [x / w[0] for x in w], "--", color="grey", label="ideal")
    ax.set_xlabel("Ray workers (1 torch thread each)")
    ax.set_ylabel("speed-up (evaluations per second)")
    ax.set_title("Paper trainer on ELPV features")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes: checks that it works")
    p.add_argument("--workers", default="1,2", help="worker counts of the scaling plot")
    p.add_argument("--cache-dir", default=None, help="feature cache folder")
    p.add_argument("--out", default=str(HERE / "scaleout.json"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    quick = args.quick
    base = RunConfig(data="elpv")
    data = prepare_data(base, cache_dir=args.cache_dir, progress=False)
    problem = paper_problem(data, quick)
    chromosomes = masks(problem.n_genes, 2 if quick else 6)
    counts = sorted({int(w) for w in args.workers.split(",")})
    out = Path(args.out)
    res = saved_parts(out, quick, counts)

    def paper_speedup() -> dict:
        one = seconds_per_evaluation(problem, chromosomes, 1, 2)
        two = seconds_per_evaluation(problem, chromosomes, 2, 1)
        return {
            "paper_seconds_per_evaluation_1x2_threads": one,
            "paper_seconds_per_evaluation_2_workers": two,
            "speedup_2_workers_paper_trainer": one / two,
        }

    parts = {
        "paper_speedup": paper_speedup,
        "overhead_and_identity": lambda: overhead_and_identity(data, 40 if quick else 200),
        "compare_speedup": lambda: compare_speedup(base, quick, args.cache_dir),
        "features_speedup": lambda: features_speedup(data, 120 if quick else len(data.paths)),
        "scaling": lambda: {"scaling": scaling(problem, counts, 2 if quick else 4)},
    }
    # each part is written as it finishes: a stopped run keeps its parts, a rerun does the rest
    for name, part in parts.items():
        if name in res["parts_done"]:
            log.warning("%s: kept from %s", name, out)
            continue
        res |= part()
        res["parts_done"].append(name)
        atomic_write_json(out, res)
    plot_scaling(res["scaling"], out.with_suffix(".png"))
    res["targets"] = {
        "speedup_2_workers_paper_trainer >= 1.6": res["speedup_2_workers_paper_trainer"] >= 1.6,
        "speedup_2_workers_compare >= 1.5": res["speedup_2_workers_compare"] >= 1.5,
        "ray_overhead_fraction <= 0.05": res["ray_overhead_fraction"] <= 0.05,
        "identical_results": bool(res["identical_results"]),
    }
    res["complete"] = True
    atomic_write_json(out, res)
    print(table(res))
    return 0


def saved_parts(out: Path, quick: bool, workers: list[int]) -> dict:
    """The parts an earlier, stopped run of the same sizes wrote to ``out``; else a fresh start."""
    fresh = {"quick": quick, "workers": workers, "parts_done": [], "complete": False}
    try:
        saved = json.loads(out.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return fresh
    same = saved.get("quick") == quick and saved.get("workers") == workers
    if not same or saved.get("complete") or not isinstance(saved.get("parts_done"), list):
        return fresh
    return saved


def table(res: dict) -> str:
    lines = ["| measure | value |", "| --- | --- |"]
    for key, value in res.items():
        if isinstance(value, (int, float, bool)):
            shown = f"{value:.3f}" if isinstance(value, float) else str(value)
            lines.append(f"| {key} | {shown} |")
    for r in res["scaling"]:
        lines.append(
            f"| {r['workers']} workers | {r['seconds_per_evaluation']:.2f} s/eval, "
            f"speed-up {r['speedup']:.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
