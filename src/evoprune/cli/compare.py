"""``evoprune compare``: every encoding R times plus the baselines, tables, tests and plots."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from evoprune.cli.options import add_run_command_options
from evoprune.errors import ConfigError

log = logging.getLogger("evoprune")


def add_compare_command(sub: argparse._SubParsersAction) -> None:
    """Register ``compare`` on the main parser's subcommands (with the options of ``run``)."""
    p = sub.add_parser(
        "compare",
        help="repeat runs of several encodings and compare them with the baselines",
        description="Run every encoding --runs times (seeds --seed-base + k) and, for each run, "
        "the paper's baselines at the evolved head's size: not pruned, best fixed "
        "density, weight pruning, neuron pruning, polynomial decay, the rankings "
        "(mutual information, ANOVA F, L1 logistic regression, weight norm, RFE, activation "
        "variance; mRMR, ReliefF, LassoNet with the selection extra: top units kept, "
        "retrained) and a narrower head trained from scratch (neuron encodings). All are "
        "scored on one held-out test set that no search sees. Writes summary.csv, "
        "stats.csv (paired tests), table.md and plots into --out; run folders go to "
        "OUT/runs/<encoding>_run<k>/. Rerunning the same command resumes.",
    )
    _add_comparison_options(p.add_argument_group("comparison"))
    add_run_command_options(p, per_run=False)
    p.set_defaults(func=cmd_compare)


def _add_comparison_options(g) -> None:
    """The options of a comparison (the run options come from the settings' declaration)."""
    g.add_argument(
        "--encodings",
        default="fs,fc1,fc2,both",
        type=_encodings,
        help="comma-separated encodings to compare. Default: fs,fc1,fc2,both",
    )
    g.add_argument(
        "--algorithms",
        default="ssga",
        type=lambda text: tuple(a.strip() for a in text.split(",") if a.strip()),
        help=_algorithms_help(),
    )
    g.add_argument(
        "--runs",
        type=int,
        default=5,
        help="independent runs per encoding (the paper: 5). Default: 5",
    )
    g.add_argument(
        "--seed-base",
        type=int,
        default=0,
        help="run k (0-based) uses seed SEED_BASE + k; the held-out test set is "
        "drawn once with SEED_BASE. Default: 0",
    )
    g.add_argument(
        "--curves",
        default=(),
        type=_densities,
        metavar="D,D,...",
        help="also retrain every ranking, the narrower head and random masks at these "
        "densities (fractions of "
        "the units kept) and score them on the held-out test set: curves.csv and "
        "curves.png, with the evolved heads on top. E.g. 0.02,0.05,0.1,0.2,0.5,1. "
        "Default: no curves",
    )
    g.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="output folder. Default: runs/compare_<data>_<backbone>_<trainer>_"
        "<fitness split>_s<seed base>",
    )


def _algorithms_help() -> str:
    """--algorithms' help, from the registry of search algorithms."""
    from evoprune.search.algorithms import ALGORITHMS, AUTO_ONE_OBJECTIVE

    several = [name for name, spec in ALGORITHMS.items() if spec.several_objectives]
    return (
        f"comma-separated search algorithms, each compared: {', '.join(ALGORITHMS)}. "
        f"{AUTO_ONE_OBJECTIVE} (the paper's GA) gives the rows <encoding>, any other "
        "<encoding>-<algorithm>; one that optimises several objectives "
        f"({', '.join(several)}) searches accuracy and size and its selected head is "
        f"compared. Default: {AUTO_ONE_OBJECTIVE}"
    )


def _encodings(text: str) -> tuple[str, ...]:
    """A comma list of encodings, checked against the run settings' declaration."""
    from evoprune.runs.config import BY_NAME

    choices = BY_NAME["encoding"].choice_list() or []
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    bad = [n for n in names if n not in choices]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"{text!r}: unknown encoding(s) {', '.join(bad) or '(none given)'}; choose from "
            f"{', '.join(choices)}"
        )
    return names


def _densities(text: str) -> tuple[float, ...]:
    """A comma list of densities in (0, 1]."""
    from evoprune.compare.curves import check_densities

    try:
        return check_densities([s.strip() for s in text.split(",") if s.strip()])
    except ConfigError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give densities in (0, 1], each once, e.g. 0.02,0.05,0.1,0.2,0.5,1"
        ) from None


def compare_config_from_args(args: argparse.Namespace):
    """The comparison of parsed options (the run settings from the one declaration), checked
    before anything is computed or written."""
    from evoprune.compare.runner import CompareConfig
    from evoprune.runs.config import config_from_args

    base = config_from_args(args, encoding=args.encodings[0], seed=args.seed_base)
    cc = CompareConfig(
        base=base,
        encodings=args.encodings,
        runs=args.runs,
        seed_base=args.seed_base,
        algorithms=args.algorithms,
        curves=args.curves,
    )
    cc.check()
    return cc


def default_compare_dir(cc) -> Path:
    from evoprune.runs.config import backbone_folder_word

    b = cc.base
    data = Path(b.data).name or "data"
    backbone = backbone_folder_word(b.backbone)  # a spec's file stem, not its path
    name = f"compare_{data}_{backbone}_{b.trainer}_{b.fitness_split}_s{cc.seed_base}"
    return Path("runs") / name


def cmd_compare(args: argparse.Namespace) -> int:
    from evoprune.compare.runner import run_comparison

    cc = compare_config_from_args(args)
    out = Path(args.out) if args.out else default_compare_dir(cc)
    if out.exists() and not out.is_dir():
        raise ConfigError(
            f"--out {out} is a file, not a folder; give --out a new folder or a "
            "comparison folder to resume"
        )
    try:
        run_comparison(cc, out, progress=not args.no_progress, cache_dir=args.cache_dir)
    except KeyboardInterrupt:
        log.warning(
            "interrupted: finished runs and baselines are kept in %s; run the same "
            "command again to resume",
            out,
        )
        return 130
    from evoprune.runs.store import read_table_md

    table = read_table_md(out) or ""
    sys.stdout.write(
        table + f"\nresults: {out} (summary.csv, stats.csv, table.md, "
        "convergence_<encoding>.png, accuracy_vs_active.png"
        + (", curves.csv, curves.png" if cc.curves else "")
        + ")\n"
    )
    return 0
