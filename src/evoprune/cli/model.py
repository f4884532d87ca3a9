"""The command-line verbs that use a finished run: ``export``, ``predict`` and ``show``."""

from __future__ import annotations

import argparse
import csv
import logging
import os
import sys
from pathlib import Path

from evoprune.cli.options import add_json_option, write_json
from evoprune.cli.page import folder_files, list_runs, runs_table
from evoprune.cli.tables import format_table
from evoprune.errors import EvoPruneError

log = logging.getLogger("evoprune")


def add_model_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``export``, ``predict`` and ``show`` on the main parser's subcommands."""
    _add_export_command(sub)
    _add_predict_command(sub)
    _add_show_command(sub)


def _add_export_command(sub: argparse._SubParsersAction) -> None:
    from evoprune.export import FORMATS

    p = sub.add_parser(
        "export",
        help="write a run's model (backbone + pruned head) as one file",
        description="Write one self-contained model from preprocessed images "
        "(N, 3, H, W) to class probabilities: the frozen backbone, the "
        "feature selection and the compact head (pruned units "
        "removed). Class names and preprocessing go beside it in "
        "FILE.json (and, for ONNX, inside it as metadata).",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by 'evoprune run'")
    p.add_argument(
        "--format",
        default="onnx",
        choices=list(FORMATS),
        help="onnx (default; runs in onnxruntime) or torchscript",
    )
    p.add_argument(
        "--out",
        default=None,
        metavar="FILE",
        help="output file. Default: RUN_DIR/model.onnx (or .pt; reference_model.* "
        "with --reference)",
    )
    p.add_argument(
        "--reference",
        action="store_true",
        help="export the not-pruned head instead of the evolved one (comparisons)",
    )
    _rank_option(p, "export")
    p.set_defaults(func=cmd_export)


def _add_predict_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="predict the class of images with a run's model",
        description="Predict each image's class with the run's backbone, mask and "
        "head. Folders are searched (recursively) for image files; "
        "unreadable images are reported and skipped.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by 'evoprune run'")
    p.add_argument(
        "images", metavar="IMAGE_OR_FOLDER", nargs="+", help="image files and/or folders of images"
    )
    p.add_argument(
        "--csv",
        default=None,
        metavar="FILE",
        help="also write path, predicted class, its probability and every class's "
        "probability to this CSV file",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_json_option(p, "each image's class and every class's probability")
    _rank_option(p, "use")
    p.set_defaults(func=cmd_predict)


def _add_show_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "show",
        help="summarise a finished run, a comparison, or a folder of runs",
        description="Print a run's dataset, backbone, encoding, held-out accuracy "
        "against the not-pruned head, units kept per layer, the head's "
        "size and cost before and after pruning, and every file of the folder. Given a "
        "comparison folder: its table and its runs; given a folder of runs (runs/): one "
        "line per run, finished or not.",
    )
    p.add_argument(
        "run_dir",
        metavar="RUN_DIR|COMPARE_DIR|RUNS_DIR",
        help="a folder written by 'evoprune run' or 'evoprune compare', or a folder of runs",
    )
    add_json_option(p, "the summary")
    p.set_defaults(func=cmd_show)


def _rank_option(p: argparse.ArgumentParser, verb: str) -> None:
    p.add_argument(
        "--rank",
        type=int,
        default=None,
        metavar="N",
        help=f"{verb} front member N of a multi-objective run (the rank column of pareto.csv, "
        "smallest head first) instead of the shipped head",
    )


def cmd_export(args: argparse.Namespace) -> int:
    from evoprune.export import export_model

    exported = export_model(
        args.run_dir,
        args.out,
        format=args.format,
        reference=args.reference,
        rank=getattr(args, "rank", None),
    )
    meta = exported.metadata
    size = meta["preprocessing"]["image_size"]
    sys.stdout.write(
        f"{exported.path}  ({format_bytes(exported.path.stat().st_size)}, {args.format}, "
        f"{meta['head']} head {'-'.join(map(str, meta['head_sizes']))}, "
        f"{meta['head_params']:,} head parameters)\n"
        f"input: {meta['input']['name']} (N, 3, {size[0]}, {size[1]}) float32, "
        f"RGB / 255, mean {_fmt_tuple(meta['preprocessing']['mean'])}, "
        f"std {_fmt_tuple(meta['preprocessing']['std'])}; output: probabilities of "
        f"{', '.join(meta['classes'])}\n"
        f"metadata: {exported.metadata_path}\n"
    )
    return 0


def _fmt_tuple(values) -> str:
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"


def collect_images(items: list[str]) -> list[str]:
    """Image files named or found (recursively, sorted) in the folders named; missing paths and
    folders without images are reported and skipped."""
    from evoprune.data.images import is_image_file

    paths: list[str] = []
    for item in items:
        if os.path.isdir(item):
            found = sorted(
                os.path.join(root, name)
                for root, _, names in os.walk(item)
                for name in names
                if is_image_file(name) and os.path.isfile(os.path.join(root, name))
            )
            if not found:
                log.warning("no image files in folder %s", item)
            paths.extend(found)
        elif os.path.isfile(item):
            paths.append(item)
        elif os.path.exists(item):
            log.warning(
                "skipping %s: not a regular file (a FIFO, socket or device); it was not opened",
                item,
            )
        else:
            log.warning("skipping %s: no such file or folder", item)
    return paths


def cmd_predict(args: argparse.Namespace) -> int:
    from evoprune.backbones import get_backbone
    from evoprune.data.images import find_unreadable
    from evoprune.estimator import load
    from evoprune.export import check_output_path
    from evoprune.features import extract_features
    from evoprune.io import check_file_target
    from evoprune.runs.store import open_run

    if args.csv:  # before the (slow) feature extraction
        check_output_path(args.csv, "--csv", example="predictions.csv")
        check_file_target(args.csv, "predict", "--csv", open_run(args.run_dir).data_roots())
    clf = load(args.run_dir, rank=getattr(args, "rank", None))
    paths = collect_images(args.images)
    if not paths:
        raise EvoPruneError("no images to predict in " + ", ".join(args.images))
    bad = dict(find_unreadable(paths))
    for path, reason in bad.items():
        log.warning("skipping unreadable image %s (%s)", path, reason)
    good = [p for p in paths if p not in bad]
    if not good:
        log.error("none of the %d images could be read", len(paths))
        return 1
    X = extract_features(
        get_backbone(clf.backbone_), good, use_cache=False, progress=not args.no_progress
    ).X
    proba = clf.predict_proba(X)
    best = proba.argmax(axis=1)
    classes = [str(c) for c in clf.classes_]
    if args.json:
        write_json(
            {
                "predictions": [
                    {
                        "path": p,
                        "class": classes[k],
                        "probability": float(proba[i, k]),
                        "probabilities": dict(zip(classes, map(float, proba[i]))),
                    }
                    for i, (p, k) in enumerate(zip(good, best))
                ],
                "unreadable": [{"path": p, "reason": str(r)} for p, r in bad.items()],
                "csv": args.csv,
            }
        )
        if args.csv:
            _write_predictions(args.csv, good, proba, classes)
        return 0
    rows = [("image", "class", "probability")]
    rows += [(p, classes[k], f"{proba[i, k]:.4f}") for i, (p, k) in enumerate(zip(good, best))]
    sys.stdout.write(format_table(rows, right=(2,)))
    if bad:
        sys.stdout.write(f"{len(good)} predicted, {len(bad)} unreadable skipped\n")
    if args.csv:
        _write_predictions(args.csv, good, proba, classes)
        sys.stdout.write(f"predictions: {args.csv}\n")
    return 0


def _write_predictions(path: str, paths: list[str], proba, classes: list[str]) -> None:
    from evoprune.export import writing_to
    from evoprune.io import atomic_write, claim_file

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["path", "predicted", "probability"] + [f"p_{c}" for c in classes])
            for p, row in zip(paths, proba):
                k = int(row.argmax())
                writer.writerow([p, classes[k], f"{row[k]:.6f}"] + [f"{v:.6f}" for v in row])

    with claim_file([path], "predict", "--csv"), writing_to(path, "--csv"):
        atomic_write(path, write)


def format_bytes(n: int) -> str:
    """1536 -> '1.5 KB' (powers of 1024)."""
    if n < 1024:
        return f"{n} B"
    size = n / 1024
    for unit in ("KB", "MB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def format_show(run) -> str:
    """The summary that ``evoprune show`` prints for a :class:`~evoprune.runs.store.RunFolder`."""

    r = run.result
    lines = [f"run:       {run.path}"]
    if r.get("leaked_test_set"):
        lines.append(
            "LEAKED: fitness was measured on the test set (the paper's protocol); the "
            "test accuracy below is optimistic"
        )
    data = r.get("data")
    lines.append(
        f"dataset:   {r.get('dataset', '?')}"
        + (f" ({data})" if data and data != r.get("dataset") else "")
        + (f", {r['n_classes']} classes: {', '.join(map(str, r['classes']))}")
    )
    if "n_train" in r:
        lines.append(
            f"images:    {r['n_train']} training, {r['n_test']} held out "
            f"({r.get('test_set', 'test set')})"
        )
    lines.append(f"backbone:  {r['backbone']} ({r.get('feature_dim', '?')} features)")
    lines.append(
        f"encoding:  {r['encoding']}, hidden size {r.get('hidden_size', '?')}, "
        f"trainer {r.get('trainer', '?')}, fitness on {r.get('fitness_split', '?')}"
    )
    if "test_accuracy" in r:
        acc, ref = r["test_accuracy"], r["reference_test_accuracy"]
        lines.append(
            f"held-out accuracy: {acc:.4f} pruned vs {ref:.4f} not pruned "
            f"({100 * (acc - ref):+.1f} points)"
        )
    if r.get("per_class"):
        lines.append(format_class_changes(r.per_class).rstrip("\n"))
    if r.front:
        lines.append(
            f"front: {len(r.front)} heads over {', '.join(r.objectives)} "
            f"({r.algorithm}); selected by {r.select}:"
        )
        lines.append(format_front(r.front).rstrip("\n"))
    active, total = r.get("active_units", {}), r.get("total_units", {})
    if active:
        lines.append(
            "active units (kept/total): "
            + ", ".join(f"{name} {kept}/{total.get(name, '?')}" for name, kept in active.items())
        )
    for label, key in (("head parameters", "params"), ("head multiply-adds", "macs")):
        after, before = r.get(f"head_{key}"), r.get(f"reference_head_{key}")
        if after is not None and before:
            lines.append(
                f"{label}: {after:,} pruned vs {before:,} not pruned "
                f"(x{after / before:.3f}, {100 * (1 - after / before):.1f}% fewer)"
            )
    lines += _format_files(folder_files(run.path))
    return "\n".join(lines) + "\n"


def _format_files(files: list[tuple[str, int]]) -> list[str]:
    if not files:
        return []
    width = max(len(name) for name, _ in files)
    return ["files:"] + [f"  {name.ljust(width)}  {format_bytes(size):>9}" for name, size in files]


def format_class_changes(per_class: list[dict]) -> str:
    """The classes whose held-out F1 pruning lowered or raised most, as a table (largest loss
    first; every class when there are at most six)."""
    from evoprune.runs.classes import f1_changes

    changes = f1_changes(per_class)
    shown = "every class" if len(changes) == len(per_class) else "largest losses and gains"
    rows = [["class", "images", "F1 pruned", "F1 not pruned", "change"]]
    for c in changes:
        rows.append(
            [
                c["class"],
                str(c["support"]),
                f"{c['f1']:.3f}",
                f"{c['reference_f1']:.3f}",
                f"{c['change']:+.3f}",
            ]
        )
    head = f"per-class F1 on held-out images, pruning lost most first ({shown}):\n"
    return head + format_table(rows, rule=True, right=range(1, 5))


def format_front(front: list[dict]) -> str:
    """The Pareto front as a table: one row per head, smallest first, the selected one starred."""
    ood = any(m.get("test_auroc") is not None for m in front)
    rows = [
        ["", "rank", "% active", "params", "fitness", "test acc"]
        + (["test AUROC", "FPR95"] if ood else [])
    ]
    for m in front:
        row = [
            "*" if m["selected"] else "",
            str(m["rank"]),
            f"{100 * m['active_fraction']:.1f}",
            f"{m['head_params']:,}",
            f"{m['fitness']:.4f}",
            f"{m['test_accuracy']:.4f}",
        ]
        if ood:
            row += [f"{m['test_auroc']:.4f}", f"{m['test_fpr95']:.4f}"]
        rows.append(row)
    return format_table(rows, rule=True, right=range(1, len(rows[0])))


def cmd_show(args: argparse.Namespace) -> int:
    from evoprune.runs.store import RESULT_FILE, is_comparison, open_run

    path = Path(args.run_dir)
    if is_comparison(path):
        return _show_comparison(path, args.json)
    runs = list_runs(path)
    if not (path / RESULT_FILE).is_file() and runs:
        if args.json:
            write_json({"runs": runs})
        else:
            sys.stdout.write(format_table(runs_table(runs), rule=True, right=range(4, 9)))
        return 0
    run = open_run(path)
    if args.json:
        write_json(
            {
                "run_dir": str(run.path),
                "result": dict(run.result.to_dict()),
                "settings": run.run_config,
                "files": [{"file": n, "bytes": b} for n, b in folder_files(run.path)],
            }
        )
    else:
        sys.stdout.write(format_show(run))
    return 0


def _show_comparison(path: Path, as_json: bool) -> int:
    """A comparison folder: its settings, table.md and the table of its runs."""
    from evoprune.runs.store import SUMMARY_FILE, read_comparison, read_table, read_table_md

    settings = read_comparison(path)
    runs = list_runs(path / "runs")
    if as_json:
        summary = read_table(path / SUMMARY_FILE)
        write_json(
            {
                "comparison_dir": str(path),
                "settings": settings,
                "runs": runs,
                "summary": summary,
                "files": [{"file": n, "bytes": b} for n, b in folder_files(path)],
            }
        )
        return 0
    lines = [f"comparison: {path}"]
    table_md = read_table_md(path)
    if table_md is not None:
        lines.append(table_md.rstrip("\n"))
    else:
        lines.append("(no table.md yet: the comparison has not finished)")
    if runs:
        lines.append(f"runs ({len(runs)}):")
        lines.append(format_table(runs_table(runs), rule=True, right=range(4, 9)).rstrip("\n"))
    lines += _format_files(folder_files(path))
    sys.stdout.write("\n".join(lines) + "\n")
    return 0
