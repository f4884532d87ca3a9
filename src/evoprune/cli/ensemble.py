"""``evoprune ensemble``: several front heads of a multi-objective run as one classifier."""

from __future__ import annotations

import argparse
import sys


def add_ensemble_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ensemble",
        help="combine front heads of a multi-objective run",
        description="Choose --members heads of a multi-objective run's Pareto front for accuracy "
        "and diversity on the run's fitness split, then score their ensemble on the "
        "held-out images next to the best single front head and the not-pruned "
        "head. Writes RUN_DIR/ensemble.json; --export also writes one ONNX model "
        "(one backbone pass, the member heads, averaged probabilities).",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a multi-objective run folder")
    p.add_argument("--members", type=int, default=3, help="heads in the ensemble. Default: 3")
    p.add_argument(
        "--vote",
        choices=["soft", "hard"],
        default="soft",
        help="soft: average probabilities (default); hard: majority of predictions",
    )
    p.add_argument(
        "--export",
        default=None,
        metavar="FILE.onnx",
        help="also export the ensemble as one ONNX model",
    )
    p.add_argument("--cache-dir", default=None, help="feature cache folder")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=cmd_ensemble)


def cmd_ensemble(args: argparse.Namespace) -> int:
    from evoprune.runs.ensembling import build_ensemble, write_ensemble

    if args.export:  # every check before the ensemble is built; ensemble.json written last
        from evoprune.errors import ConfigError
        from evoprune.export import check_ensemble_export
        from evoprune.runs.store import open_run

        if args.vote != "soft":
            raise ConfigError(
                "--export writes an ensemble that averages the heads' probabilities (a soft "
                "vote); use --vote soft with --export, or leave --export out"
            )
        check_ensemble_export(open_run(args.run_dir), args.export)
    doc = build_ensemble(
        args.run_dir,
        args.members,
        args.vote,
        cache_dir=args.cache_dir,
        progress=not args.no_progress,
        write=False,
    )
    lines = [
        f"ensemble of front heads {doc['members']} ({doc['vote']} vote), "
        f"{doc['ensemble_params']:,} parameters: "
        f"{doc['ensemble_params'] / doc['not_pruned_params']:.1%} of the not-pruned head's "
        f"{doc['not_pruned_params']:,}",
        f"held-out accuracy: ensemble {doc['test_accuracy']:.4f}, best single front head "
        f"{doc['best_single_test_accuracy']:.4f}, selected head "
        f"{doc['selected_test_accuracy']:.4f}, not pruned "
        f"{doc['not_pruned_test_accuracy']:.4f}",
    ]
    if "test_auroc" in doc:
        lines.append(
            f"held-out OOD AUROC: ensemble {doc['test_auroc']:.4f}, best single front "
            f"head {doc['best_single_test_auroc']:.4f}"
        )
    if args.export:
        from evoprune.export import export_ensemble

        path = export_ensemble(args.run_dir, doc["members"], args.export, vote=doc["vote"])
        lines.append(f"exported: {path}")
    write_ensemble(args.run_dir, doc)
    sys.stdout.write("\n".join(lines) + f"\nwritten: {args.run_dir}/ensemble.json\n")
    return 0
