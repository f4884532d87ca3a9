"""What pruning buys at deployment: the exported head's size and CPU latency, pruned vs not.

    python benchmarks/export.py [RUN_DIR] [--quick] [--threads N]

Without RUN_DIR it first makes a quick run on the built-in ELPV data (a stratified ``--limit`` of
its images, feature selection, a small GA budget). Both heads of the run (evolved and
not-pruned) are exported to ONNX twice: the head alone (input: backbone features) and the full
model (input: preprocessed images). Sizes are counted, then onnxruntime latency per image is
measured at batch 1 and 32 on real images, pruned and not-pruned blocks alternating in every
round so that both see the same machine load. Prints a table and writes
benchmarks/export_results.json. Ratios travel between machines better than absolute times.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("benchmarks")
HERE = Path(__file__).resolve().parent


def make_run(out: Path, quick: bool, limit: int | None, cache_dir: str | None) -> Path:
    """A small feature-selection run on ELPV (real images) in ``out``."""
    from evoprune.runs import RunConfig, run_experiment

    cfg = RunConfig(
        data="elpv",
        encoding="fs",
        limit=limit or (200 if quick else 600),
        population=8 if quick else 20,
        evaluations=16 if quick else 60,
        seed=0,
    )
    log.info("making a run: %s", cfg)
    run_experiment(cfg, out, progress=False, cache_dir=cache_dir)
    return out


def input_images(run, n: int) -> tuple[np.ndarray, list[str]]:
    """A (n, 3, H, W) preprocessed batch of the run's own images (every k-th, both classes)."""
    from evoprune.backbones import get_backbone
    from evoprune.data import load_dataset, open_rgb

    data = run.run_config.get("data") or run.result.get("data")
    dataset = load_dataset(data)
    step = max(1, len(dataset.paths) // n)
    paths = dataset.paths[::step][:n]
    backbone = get_backbone(run.result["backbone"])
    return np.stack([backbone.preprocess(open_rgb(p)) for p in paths]), paths


def session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def calls_for(sess, feed: dict, target_s: float) -> int:
    """How many calls make one timed block of about ``target_s`` seconds (after a warm-up)."""
    for _ in range(3):
        sess.run(None, feed)
    t0 = time.perf_counter()
    sess.run(None, feed)
    one = max(time.perf_counter() - t0, 1e-6)
    return max(1, int(target_s / one))


def time_pair(sessions: dict, feed: dict, batch: int, rounds: int, target_s: float) -> dict:
    """Seconds per image of each session, in blocks that alternate between the sessions."""
    calls = {name: calls_for(s, feed, target_s) for name, s in sessions.items()}
    per_image: dict[str, list[float]] = {name: [] for name in sessions}
    names = list(sessions)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            sess, n = sessions[name], calls[name]
            t0 = time.perf_counter()
            for _ in range(n):
                sess.run(None, feed)
            per_image[name].append((time.perf_counter() - t0) / (n * batch))
    return {
        name: {
            "median_s_per_image": statistics.median(v),
            "min_s_per_image": min(v),
            "rounds_s_per_image": v,
            "calls_per_block": calls[name],
        }
        for name, v in per_image.items()
    }


def initializer_elements(path: Path) -> int:
    import onnx

    model = onnx.load(str(path))
    return sum(int(np.prod(i.dims)) for i in model.graph.initializer)


def measure(run_dir: Path, work: Path, threads: int, rounds: int) -> dict:
    import onnxruntime as ort
    import torch

    import evoprune
    from evoprune.backbones import get_backbone
    from evoprune.export import export_model
    from evoprune.runs import open_run

    run = open_run(run_dir)
    variants = {"pruned": False, "not pruned": True}
    models: dict[str, dict] = {}
    for name, reference in variants.items():
        tag = "reference" if reference else "pruned"
        head = export_model(run_dir, work / f"{tag}_head.onnx", reference=reference, head_only=True)
        full = export_model(run_dir, work / f"{tag}_model.onnx", reference=reference)
        models[name] = {
            "head_params": head.metadata["head_params"],
            "head_macs": head.metadata["head_macs"],
            "head_sizes": head.metadata["head_sizes"],
            "head_onnx_bytes": head.path.stat().st_size,
            "head_onnx_initializer_elements": initializer_elements(head.path),
            "model_onnx_bytes": full.path.stat().st_size,
            "model_onnx_initializer_elements": initializer_elements(full.path),
            "safetensors_bytes": run.head_path(reference).stat().st_size,
            "_head": head.path,
            "_model": full.path,
        }
    images, paths = input_images(run, 32)
    clf = evoprune.load(run_dir)
    features = get_backbone(clf.backbone_).features(images)
    expected = clf.predict_proba(images)  # the library's own route from images
    sessions = {
        kind: {name: session(m[f"_{kind}"], threads) for name, m in models.items()}
        for kind in ("head", "model")
    }
    got = sessions["model"]["pruned"].run(None, {"images": images})[0]
    agreement = float(np.abs(got - expected).max())
    latency = {}
    for kind, inputs, key in (("head", features, "features"), ("model", images, "images")):
        for batch in (1, 32):
            feed = {key: np.ascontiguousarray(inputs[:batch])}
            target = 0.05 if kind == "head" else 0.3
            latency[f"{kind}_batch{batch}"] = time_pair(sessions[kind], feed, batch, rounds, target)
    for m in models.values():
        m.pop("_head"), m.pop("_model")
    r = run.result
    return {
        "run": {
            "path": str(run_dir),
            "dataset": r.get("dataset"),
            "data": r.get("data"),
            "n_images": r.get("n_images"),
            "backbone": r["backbone"],
            "encoding": r["encoding"],
            "active_units": r.get("active_units"),
            "total_units": r.get("total_units"),
            "test_accuracy": r.get("test_accuracy"),
            "reference_test_accuracy": r.get("reference_test_accuracy"),
        },
        "models": models,
        "latency": latency,
        "onnx_vs_library_max_abs_diff": agreement,
        "input_images": len(paths),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "load_average": list(os.getloadavg()),
            "onnxruntime": ort.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "settings": {"threads": threads, "rounds": rounds},
    }


def fmt_time(seconds: float) -> str:
    return f"{seconds * 1e6:.1f} us" if seconds < 1e-3 else f"{seconds * 1e3:.2f} ms"


def table(res: dict) -> str:
    p, n = res["models"]["pruned"], res["models"]["not pruned"]
    rows = [
        ("", "pruned", "not pruned", "pruned / not"),
        (
            "head layer sizes",
            "-".join(map(str, p["head_sizes"])),
            "-".join(map(str, n["head_sizes"])),
            "",
        ),
    ]

    def add(label, key):
        rows.append((label, f"{p[key]:,}", f"{n[key]:,}", f"{p[key] / n[key]:.3f}"))

    add("head parameters", "head_params")
    add("head multiply-adds / image", "head_macs")
    add("head .safetensors (bytes)", "safetensors_bytes")
    add("head alone .onnx (bytes)", "head_onnx_bytes")
    add("full model .onnx (bytes)", "model_onnx_bytes")
    labels = {
        "head_batch1": "head alone, batch 1",
        "head_batch32": "head alone, batch 32",
        "model_batch1": "full model, batch 1",
        "model_batch32": "full model, batch 32",
    }
    for key, label in labels.items():
        lp = res["latency"][key]["pruned"]["median_s_per_image"]
        ln = res["latency"][key]["not pruned"]["median_s_per_image"]
        rows.append((f"latency / image: {label}", fmt_time(lp), fmt_time(ln), f"{lp / ln:.3f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
        for r in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    run, m = res["run"], res["machine"]
    acc = (
        f"held-out accuracy {run['test_accuracy']:.4f} pruned vs "
        f"{run['reference_test_accuracy']:.4f} not pruned"
    )
    lines += [
        "",
        f"{run['dataset']} ({run['n_images']} images), {run['backbone']}, encoding "
        f"{run['encoding']}, active units {run['active_units']}; {acc}",
        f"onnxruntime {m['onnxruntime']}, {res['settings']['threads']} thread(s), "
        f"median of {res['settings']['rounds']} alternating rounds, "
        f"{res['input_images']} real images; {m['cpus']} CPUs, load average "
        f"{m['load_average'][0]:.1f}",
        f"ONNX full model vs library probabilities: max abs diff "
        f"{res['onnx_vs_library_max_abs_diff']:.2e}",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "run_dir",
        nargs="?",
        default=None,
        help="a folder written by 'evoprune run'; default: make a quick run",
    )
    parser.add_argument("--quick", action="store_true", help="smaller run and fewer rounds")
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        help="ELPV images for the run it makes (default 600; 200 with --quick)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="onnxruntime intra-op threads (default 1: steadiest on a shared CPU)",
    )
    parser.add_argument(
        "--rounds", type=int, default=None, help="timing rounds (default 7; 3 with --quick)"
    )
    parser.add_argument("--cache-dir", default=None, help="feature cache folder")
    parser.add_argument("--out", default=str(HERE / "export_results.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from evoprune.io import atomic_write_json

    rounds = args.rounds or (3 if args.quick else 7)
    with tempfile.TemporaryDirectory(prefix="evoprune-export-bench-") as tmp:
        tmp = Path(tmp)
        run_dir = (
            Path(args.run_dir)
            if args.run_dir
            else make_run(tmp / "run", args.quick, args.limit, args.cache_dir)
        )
        t0 = time.perf_counter()
        res = measure(run_dir, tmp, args.threads, rounds)
        res["settings"].update(
            quick=args.quick, made_run=args.run_dir is None, seconds=time.perf_counter() - t0
        )
        if args.run_dir is None:
            res["run"]["path"] = "(temporary quick run on elpv)"
    atomic_write_json(args.out, res)
    sys.stdout.write(table(res) + f"\nresults: {args.out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
