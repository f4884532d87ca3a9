"""``evoprune analyze``: the paper's analyses of a run folder (or a comparison folder)."""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path

from evoprune.cli.options import add_output_options
from evoprune.cli.tables import format_table

log = logging.getLogger("evoprune")


def add_analyze_command(sub: argparse._SubParsersAction) -> None:
    """Register ``analyze`` on the main parser's subcommands."""
    p = sub.add_parser(
        "analyze",
        help="robustness (CKA), heatmaps and class relevance of a finished run",
        description="Analyses of a run folder, written to RUN_DIR/analysis/ (CSV tables, PNG "
        "plots): CKA of the evolved head against its nearest evaluated neighbour and the "
        "not-pruned head (weights and activations), Grad-CAM heatmaps of held-out images, "
        "and with the options below the class relevance. Given a comparison folder "
        "(evoprune compare), it writes which backbone channels its fs runs kept most often.",
    )
    p.add_argument(
        "run_dir", metavar="RUN_DIR", help="a folder written by 'evoprune run' or 'compare'"
    )
    g = p.add_argument_group("analyses")
    g.add_argument("--no-cka", action="store_true", help="skip the CKA robustness analysis")
    g.add_argument("--no-heatmaps", action="store_true", help="skip the Grad-CAM heatmaps")
    g.add_argument(
        "--images-per-class",
        type=_positive,
        default=2,
        metavar="K",
        help="held-out images per class in the heatmap grid. Default: 2",
    )
    g.add_argument(
        "--remove-each-class",
        action="store_true",
        help="search the run's configuration again without each class in turn (a search "
        "per class, plus one on all classes when --evaluations differs from the run's)",
    )
    g.add_argument(
        "--add-class",
        metavar="NAME",
        default=None,
        help="search without class NAME, then with 20/40/60/80/100%% of its training images",
    )
    g.add_argument(
        "--evaluations",
        type=_positive,
        default=None,
        metavar="N",
        help="budget of each class-relevance search (recorded in its table). Default: the run's",
    )
    add_output_options(p)
    p.set_defaults(func=cmd_analyze)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


def cmd_analyze(args: argparse.Namespace) -> int:
    from evoprune.io import WRITE_ERRORS, OutputFolder, writing_folder

    if not Path(args.run_dir).is_dir():  # the analyses say what is missing
        return _analyze(args)
    folder = OutputFolder(args.run_dir, "analyze", "RUN_DIR")
    folder.check()  # evoprune's own files only; nothing written before this
    with folder.claim(recheck=False), writing_folder(args.run_dir, "RUN_DIR", WRITE_ERRORS):
        return _analyze(args)


def _analyze(args: argparse.Namespace) -> int:
    from evoprune.analysis.channels import channel_frequency
    from evoprune.runs.store import is_comparison

    if is_comparison(args.run_dir):
        freq = channel_frequency(args.run_dir)
        always = int((freq.kept == len(freq.runs)).sum())
        sys.stdout.write(
            f"{len(freq.runs)} fs runs; {always} channels kept in every run "
            f"({freq.expected()[-1]:.1f} expected from independent runs)\n"
            f"analyses: {Path(args.run_dir) / 'analysis'} (channels.csv, channels.png)\n"
        )
        return 0
    return _analyze_run(args)


def _analyze_run(args: argparse.Namespace) -> int:
    from evoprune.analysis import (
        add_class,
        heatmap_grid,
        open_analysis,
        remove_each_class,
        robustness,
    )

    ctx = open_analysis(args.run_dir, cache_dir=args.cache_dir, progress=not args.no_progress)
    lines = []
    if not args.no_cka:
        lines.append(_cka_table(robustness(ctx)))
    if not args.no_heatmaps:
        maps = heatmap_grid(ctx, per_class=args.images_per_class)
        agree = [r.map_correlation for r in maps if not math.isnan(r.map_correlation)]
        mean = sum(agree) / len(agree) if agree else float("nan")
        lines.append(
            f"heatmaps: {len(maps)} held-out images; correlation of the evolved and "
            f"not-pruned maps {mean:.2f} on average"
        )
    if args.remove_each_class:
        lines.append(_relevance_table(remove_each_class(ctx, evaluations=args.evaluations)))
    if args.add_class is not None:
        added = add_class(ctx, args.add_class, evaluations=args.evaluations)
        lines.append(_relevance_table(added))
    sys.stdout.write("\n\n".join(lines) + f"\n\nanalyses: {ctx.out}\n")
    return 0


def _cka_table(rows) -> str:
    table = [("best head vs", "genes away", "layer", "measure", "CKA")]
    for r in rows:
        table.append(
            (r.against.replace("_", " "), str(r.hamming), r.layer, r.measure, f"{r.cka:.3f}")
        )
    return format_table(table, rule=True, right=(1, 4)).rstrip("\n")


def _relevance_table(rows) -> str:
    table = [("variant", "classes", "test acc", "not pruned", "% active", "evaluations")]
    for r in rows:
        table.append(
            (
                r.variant,
                str(r.n_classes),
                f"{r.test_accuracy:.4f}",
                f"{r.reference_test_accuracy:.4f}",
                f"{100 * r.active_fraction:.1f}",
                str(r.evaluations),
            )
        )
    return format_table(table, rule=True, right=(1, 2, 3, 4, 5)).rstrip("\n")
