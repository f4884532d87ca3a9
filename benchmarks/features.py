"""Feature-extraction speed on ELPV images: each lever measured alone, then the whole pipeline.

    python benchmarks/features.py            # 1,024 ELPV images (about 4 min on 2 cores)
    python benchmarks/features.py --quick    # 96 images (under a minute)

Prints a table and writes benchmarks/features.json (features-quick.json with --quick).
Targets are ratios within one run: ``features_fraction_of_cnn_rate`` (images per second of the
whole pipeline, decoding and resizing included, over the CNN alone on ready tensors in the same
form; >= 0.9), ``cnn_speedup_vs_eager`` (the fastest form over plain eager float32; >= 1.5) and
``features_max_abs_diff`` (<= 1e-4). Where torch sees a GPU, the GPU path is measured too
(``gpu_features_images_per_second``, target >= 1500, an absolute figure).
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from evoprune.backbones import get_backbone
from evoprune.backbones.runtime import TOLERANCE, Runner, build_runner
from evoprune.data import load_dataset, open_rgb
from evoprune.features import extract_features
from evoprune.io import atomic_write_json

log = logging.getLogger("benchmarks.features")
HERE = Path(__file__).resolve().parent
BACKBONE = "efficientnet-lite0"


def _best_rate(step: Callable[[], object], n_images: int, repeats: int) -> float:
    """Images per second of ``step`` (which handles ``n_images``), best of ``repeats``."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - start)
    return n_images / best


def _cnn_step(run: Callable[[np.ndarray], np.ndarray], ready: np.ndarray, batch: int, streams: int):
    """One pass of ``run`` over ``ready`` in batches, ``streams`` calls at a time."""
    starts = range(0, len(ready), batch)

    def step() -> np.ndarray:
        if streams <= 1:
            return np.concatenate([run(ready[s : s + batch]) for s in starts])
        with ThreadPoolExecutor(streams) as pool:
            return np.concatenate(list(pool.map(lambda s: run(ready[s : s + batch]), starts)))

    return step


def _plain_eager(module: torch.nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    """The baseline: the module as built, NCHW float32, under torch.no_grad."""

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(batch)).numpy()

    return run


def _jit_frozen(module: torch.nn.Module, image_size: int) -> Callable[[np.ndarray], np.ndarray]:
    """torch.jit.trace + freeze (folds BatchNorm into the convolutions); measured, not used."""
    with torch.no_grad():
        example = torch.zeros(1, 3, image_size, image_size)
        frozen = torch.jit.freeze(torch.jit.trace(module, example).eval())

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return frozen(torch.from_numpy(batch)).numpy()

    return run


def measure_cnn(module, ready, forward_batch, repeats, reference) -> dict[str, dict]:
    """The CNN alone on ready tensors, lever by lever: images/s and max abs diff to eager."""
    image_size = ready.shape[-1]
    threads = torch.get_num_threads()
    cpu = torch.device("cpu")
    forms: dict[str, tuple[Callable[[np.ndarray], np.ndarray], int]] = {
        "plain_eager_no_grad": (_plain_eager(module), 1)
    }
    for form in ("eager", "channels_last", "onnxruntime"):
        runner = build_runner(
            module, image_size=image_size, forward_batch=forward_batch, device=cpu, form=form
        )
        if runner.form == form:
            forms[f"{form}_inference_mode" if form == "eager" else form] = (
                runner,
                threads if runner.concurrent else 1,
            )
    try:
        forms["jit_trace_freeze"] = (_jit_frozen(module, image_size), 1)
    except Exception as exc:  # a custom module that does not trace
        log.warning("torch.jit.trace/freeze failed: %s", exc)
    levers = {}
    for name, (run, streams) in forms.items():
        step = _cnn_step(run, ready, forward_batch, streams)
        features = step()  # warm-up, and the features compared
        levers[name] = {
            "images_per_second": _best_rate(step, len(ready), repeats),
            "max_abs_diff": float(np.max(np.abs(features - reference))),
            "batch": forward_batch,
            "parallel_calls": streams,
        }
        log.info("CNN %s: %.1f img/s", name, levers[name]["images_per_second"])
    return levers


def measure_batch_sizes(runner: Runner, ready: np.ndarray, repeats: int) -> dict[str, float]:
    """The chosen form at several images per call."""
    streams = torch.get_num_threads() if runner.concurrent else 1
    rates = {}
    for batch in (1, 4, 16):
        step = _cnn_step(runner, ready, batch, streams)
        step()
        rates[str(batch)] = _best_rate(step, len(ready), repeats)
    return rates


def measure_pipeline(paths: list[str], device: str, form: str, **options) -> tuple[float, object]:
    """Images per second of extract_features (decoding included, no cache) and its features."""
    extract_features(BACKBONE, paths[:8], use_cache=False, progress=False, device=device, form=form)
    start = time.perf_counter()
    result = extract_features(
        BACKBONE, paths, use_cache=False, progress=False, device=device, form=form, **options
    )
    return len(paths) / (time.perf_counter() - start), result.X


def measure_decoding(paths: list[str]) -> float:
    """Images per second of decoding and preprocessing alone, in this thread."""
    prep = get_backbone(BACKBONE).preprocessing
    start = time.perf_counter()
    for path in paths:
        prep(open_rgb(path))
    return len(paths) / (time.perf_counter() - start)


def measure_gpu(paths: list[str], reference: np.ndarray, repeats: int) -> dict:
    """The GPU path: the CNN alone and the whole pipeline (absolute figures)."""
    backbone = get_backbone(BACKBONE)
    runner = backbone.runner("cuda")
    ready = np.stack([backbone.preprocess(open_rgb(p)) for p in paths[: len(reference)]])
    step = _cnn_step(runner, ready, runner.forward_batch, 1)
    diff = float(np.max(np.abs(step() - reference)))
    cnn = _best_rate(lambda: (step(), torch.cuda.synchronize()), len(ready), repeats)
    rate, X = measure_pipeline(paths, "cuda", "auto")
    return {
        "gpu_name": torch.cuda.get_device_name(0),
        "gpu_form": runner.form,
        "gpu_cnn_images_per_second": cnn,
        "gpu_features_images_per_second": rate,
        "gpu_features_images": len(paths),
        "gpu_features_max_abs_diff": max(
            diff, float(np.max(np.abs(X[: len(reference)] - reference)))
        ),
    }


def measure_features(n_images: int = 1024, quick: bool = False, repeats: int = 2) -> dict:
    """Every lever and the targets' ratios, measured in this process (see the module doc)."""
    if quick:
        n_images, repeats = min(n_images, 96), 1
    backbone = get_backbone(BACKBONE)
    all_paths = load_dataset("elpv", check_images=False).paths
    paths = all_paths[:n_images]
    ready = np.stack([backbone.preprocess(open_rgb(p)) for p in paths])
    module = backbone.feature_extractor()
    reference = _cnn_step(_plain_eager(module), ready, backbone.forward_batch, 1)()
    cnn = measure_cnn(module, ready, backbone.forward_batch, repeats, reference)
    runner = backbone.runner("cpu")
    chosen = {"eager": "eager_inference_mode"}.get(runner.form, runner.form)
    pipeline = {}
    for name, options in (
        ("serial_decoding", {"decode_threads": 0}),
        ("decoding_threads", {}),
        ("decoding_1_worker_process", {"num_workers": 1}),
        ("decoding_2_worker_processes", {"num_workers": 2}),
    ):
        rate, X = measure_pipeline(paths, "cpu", "auto", **options)
        pipeline[name] = {
            "images_per_second": rate,
            "max_abs_diff": float(np.max(np.abs(X - reference))),
        }
        log.info("pipeline %s: %.1f img/s", name, rate)
    eager_rate, _ = measure_pipeline(paths, "cpu", "eager", decode_threads=0)
    pipeline["eager_serial_decoding (before)"] = {"images_per_second": eager_rate}
    fast = pipeline["decoding_threads"]
    res: dict = {
        "backbone": BACKBONE,
        "images": len(paths),
        "quick": quick,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} {platform.processor()}".strip(),
        "form": runner.form,
        "features_images_per_second": fast["images_per_second"],
        "cnn_images_per_second": cnn[chosen]["images_per_second"],
        "features_fraction_of_cnn_rate": fast["images_per_second"]
        / cnn[chosen]["images_per_second"],
        "cnn_speedup_vs_eager": cnn[chosen]["images_per_second"]
        / cnn["plain_eager_no_grad"]["images_per_second"],
        "features_speedup_vs_before": fast["images_per_second"] / eager_rate,
        "features_max_abs_diff": max(
            fast["max_abs_diff"],
            cnn[chosen]["max_abs_diff"],
            pipeline["serial_decoding"]["max_abs_diff"],
        ),
        "tolerance": TOLERANCE,
        "decoding_images_per_second_one_thread": measure_decoding(paths[:200]),
        "cnn_levers": cnn,
        "batch_size_levers": measure_batch_sizes(runner, ready, repeats),
        "pipeline_levers": pipeline,
    }
    if torch.cuda.is_available():
        res.update(measure_gpu(all_paths if not quick else paths, reference, repeats))
    return res


def format_table(res: dict) -> str:
    lines = [
        f"Features of {res['images']} ELPV images, {res['backbone']}, {res['torch_threads']} "
        f"torch threads (fastest form: {res['form']})",
        "",
        "CNN alone on ready tensors:",
    ]
    for name, lever in res["cnn_levers"].items():
        lines.append(
            f"  {name:28s} {lever['images_per_second']:8.1f} img/s  "
            f"max abs diff {lever['max_abs_diff']:.1e}"
        )
    batches = ", ".join(f"{b}: {r:.1f}" for b, r in res["batch_size_levers"].items())
    lines += [f"  images per call ({res['form']}): {batches} img/s", "", "Whole pipeline:"]
    for name, lever in res["pipeline_levers"].items():
        lines.append(f"  {name:32s} {lever['images_per_second']:8.1f} img/s")
    lines.append(
        f"  decoding + preprocessing alone, one thread: "
        f"{res['decoding_images_per_second_one_thread']:.0f} img/s"
    )
    targets = [
        ("features_fraction_of_cnn_rate", ">= 0.9", res["features_fraction_of_cnn_rate"] >= 0.9),
        ("cnn_speedup_vs_eager", ">= 1.5", res["cnn_speedup_vs_eager"] >= 1.5),
        ("features_max_abs_diff", "<= 1e-4", res["features_max_abs_diff"] <= TOLERANCE),
    ]
    if "gpu_features_images_per_second" in res:
        ok = res["gpu_features_images_per_second"] >= 1500
        targets.append(("gpu_features_images_per_second", ">= 1500", ok))
    lines += ["", "Targets:"]
    for name, target, ok in targets:
        lines.append(f"  {name:32s} {res[name]:10.4g}  {target:8s} {'met' if ok else 'MISSED'}")
    if "gpu_name" in res:
        lines.append(
            f"  (GPU: {res['gpu_name']}, CNN alone {res['gpu_cnn_images_per_second']:.0f}"
            f" img/s, max abs diff {res['gpu_features_max_abs_diff']:.1e})"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="96 images, one repeat (under a minute)")
    p.add_argument("--images", type=int, default=1024, help="ELPV images measured (default 1024)")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/features.json)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    out = (
        Path(args.out)
        if args.out
        else HERE / ("features-quick.json" if args.quick else "features.json")
    )
    res = measure_features(n_images=args.images, quick=args.quick)
    print(format_table(res))
    atomic_write_json(out, res)
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
