"""Options shared by several commands (``run`` and ``compare``), in a module of their own so
that the command modules import it and not the package that imports them."""

from __future__ import annotations

import argparse
import sys


def add_output_options(
    p: argparse.ArgumentParser, out_help: str | None = None, overwrite: bool = False
) -> None:
    """Options that are not run settings: where results and features go, progress bars.
    ``out_help=None`` leaves out --out (a command that defines its own)."""
    g = p.add_argument_group("output")
    if out_help is not None:
        g.add_argument("--out", default=None, metavar="DIR", help=out_help)
    if overwrite:
        g.add_argument(
            "--overwrite",
            action="store_true",
            help="when --out holds a run of another configuration, move it aside "
            "(to a sibling folder) and start afresh instead of stopping",
        )
    g.add_argument(
        "--cache-dir",
        default=None,
        help="feature cache folder. Default: $EVOPRUNE_CACHE_DIR or ~/.cache/evoprune/features",
    )
    g.add_argument("--no-progress", action="store_true", help="hide progress bars")


def add_run_command_options(p: argparse.ArgumentParser, per_run: bool = True) -> None:
    """The options of one run, generated from the run settings' declaration
    (:mod:`evoprune.runs.config`). ``per_run=False`` leaves out --encoding, --seed and --out,
    which a command that makes several runs (compare) defines its own way."""
    from evoprune.encodings import LAYER_FAMILIES, layer_help
    from evoprune.runs.config import add_run_options

    add_run_options(p, exclude=() if per_run else ("encoding", "seed"))
    if per_run:
        p.add_argument(
            "--layer",
            default=None,
            choices=sorted({layer for family in LAYER_FAMILIES.values() for layer in family}),
            help=layer_help(),
        )
    add_output_options(
        p,
        out_help=(
            "results folder. Default: runs/<data>_<encoding>_<backbone>_s<seed>-<hash of every "
            "setting that changes the result>; rerunning the same command resumes it"
        )
        if per_run
        else None,
        overwrite=per_run,
    )


def add_json_option(p: argparse.ArgumentParser, what: str) -> None:
    """--json: print ``what`` as one JSON document on stdout instead of the tables."""
    p.add_argument(
        "--json", action="store_true", help=f"print {what} as JSON (for scripts) instead of tables"
    )


def write_json(doc) -> None:
    """One JSON document on stdout (NaN written as null, so any JSON reader takes it)."""
    import json
    import math

    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    sys.stdout.write(json.dumps(clean(doc), indent=2, default=str) + "\n")
