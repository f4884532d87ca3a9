"""The ``evoprune`` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from evoprune.cli.options import add_json_option, add_run_command_options, write_json
from evoprune.cli.tables import format_table
from evoprune.errors import EvoPruneError

log = logging.getLogger("evoprune")


def _config_from_args(args: argparse.Namespace):
    """The run configuration of parsed ``run`` options (validated by the caller)."""
    from evoprune.encodings import encoding_for_layer
    from evoprune.runs.config import config_from_args

    return config_from_args(args, encoding=encoding_for_layer(args.encoding, args.layer))


def format_run_table(result: dict) -> str:
    """A short table: evolved head vs not-pruned head on the held-out test set."""
    leak = "  (LEAKED: fitness was measured on this test set)" if result["leaked_test_set"] else ""
    rows = [
        ("head", "test acc", "% active", "params"),
        (
            "evoprune (" + result["encoding"] + ")",
            f"{result['test_accuracy']:.4f}",
            f"{100 * result['active_fraction']:.1f}",
            f"{result['head_params']:,}",
        ),
        (
            "not pruned",
            f"{result['reference_test_accuracy']:.4f}",
            "100.0",
            f"{result['reference_head_params']:,}",
        ),
    ]
    lines = format_table(rows, rule=True, right=(1, 2, 3)).splitlines()
    if result.get("front"):
        from evoprune.cli.model import format_front

        lines += [
            "",
            f"Pareto front over {', '.join(result['objectives'])}: "
            f"{len(result['front'])} heads; * = selected by {result['select']}",
            format_front(result["front"]).rstrip("\n"),
        ]
    t = result["timings"]
    lines.append("")
    lines.append(
        f"{result['dataset']}: {result['n_train']} training / {result['n_test']} held-out "
        f"images, {result['n_classes']} classes, backbone {result['backbone']}{leak}"
    )
    fidelity = result.get("fidelity", "full")
    shared = f" + {result['shared_evaluations']} shared" if result.get("shared_evaluations") else ""
    lines.append(
        f"fitness ({result['fitness_split']}, fidelity {fidelity}) of the shipped mask: "
        f"{result['fitness']:.4f}; {result['evaluations']} evaluations{shared}"
    )
    if result.get("selection_bias") is not None:
        check = (
            f"; cross-validated accuracy {result['check_accuracy']:.4f} "
            f"(bias {100 * result['check_selection_bias']:+.1f} points)"
            if result.get("check_accuracy") is not None
            else ""
        )
        lines.append(
            f"selection bias (fitness - held-out accuracy): "
            f"{100 * result['selection_bias']:+.1f} points{check}"
        )
    lines.append(
        f"seconds: features {t['features']:.1f}"
        f"{' (cached)' if result['features_cached'] else ''}, search {t['search']:.1f}, "
        f"final training {t['final_training']:.1f} (+{t.get('reference_training', 0):.1f} "
        f"not pruned), total {result['wall_seconds']:.1f}"
    )
    return "\n".join(lines)


def cmd_run(args: argparse.Namespace) -> int:
    from evoprune.runs.experiment import default_out_dir, run_experiment

    cfg = _config_from_args(args).validate()  # every option, before anything is computed
    out = args.out or default_out_dir(cfg)
    try:
        result = run_experiment(
            cfg,
            out,
            progress=not args.no_progress,
            cache_dir=args.cache_dir,
            overwrite=args.overwrite,
        )
    except KeyboardInterrupt:
        log.warning(
            "interrupted: the evaluations so far are in %s/history.csv; run the same "
            "command again to resume",
            out,
        )
        return 130
    if args.json:
        write_json({**result, "run_dir": str(out)})
    else:
        sys.stdout.write(format_run_table(result) + f"\nresults: {out}\n")
    return 0


def cmd_backbones(args: argparse.Namespace) -> int:
    from evoprune.backbones import list_backbones
    from evoprune.backbones.specs import SPEC_FORMS

    rows = [("name", "features", "input", "available", "source")]
    for b in list_backbones():
        rows.append(
            (
                b.name,
                str(b.feature_dim),
                f"{b.image_size}px",
                "yes" if b.available else "no",
                b.source,
            )
        )
    sys.stdout.write(format_table(rows))
    sys.stdout.write(f"\nOr pass --backbone SPEC: {SPEC_FORMS}; options after '?'.\n")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from evoprune.data import list_datasets

    rows = [("name", "description")] + [tuple(r) for r in list_datasets()]
    sys.stdout.write(format_table(rows))
    sys.stdout.write(
        "\nOr pass --data PATH: a folder of class folders, train/ + test/, "
        "k partitions, or a CSV manifest.\n"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evoprune",
        description="Evolve which neurons or input features of a transfer-learning classifier's "
        "head to keep (EvoPruneDeepTL), with honest held-out evaluation.",
    )
    from evoprune import __version__

    parser.add_argument("--version", action="version", version=f"evoprune {__version__}")
    _add_verbosity(parser, argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser(
        "run",
        help="evolve a pruned head on one dataset and write a results folder",
        description="Evolve a pruned head: features once (cached), a GA search on "
        "a fitness split inside the training data, the best mask "
        "retrained and scored on the held-out test set next to the "
        "not-pruned head.",
    )
    add_run_command_options(p)
    add_json_option(p, "result.json's contents and the results folder")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("backbones", help="list the feature extractors")
    p.set_defaults(func=cmd_backbones)
    p = sub.add_parser("datasets", help="list the built-in datasets")
    p.set_defaults(func=cmd_datasets)
    from evoprune.cli.analyze import add_analyze_command
    from evoprune.cli.compare import add_compare_command
    from evoprune.cli.ensemble import add_ensemble_command
    from evoprune.cli.model import add_model_commands

    add_compare_command(sub)
    add_ensemble_command(sub)
    add_model_commands(sub)
    add_analyze_command(sub)
    from evoprune.cli.page import add_report_command

    add_report_command(sub)
    for command in sub.choices.values():  # -q and -v also after the command's name
        _add_verbosity(command, argparse.SUPPRESS)
    parser.set_defaults(verbose=False, quiet=False)
    return parser


def _add_verbosity(p: argparse.ArgumentParser, default) -> None:
    """-v and -q (``default`` SUPPRESS: a command's parser leaves the value given before the
    command alone unless given again after it)."""
    p.add_argument("-v", "--verbose", action="store_true", default=default, help="debug logging")
    p.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=default,
        help="warnings and errors only, no progress bars",
    )


def setup_logging(verbose: bool = False, quiet: bool = False) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    logging.getLogger("evoprune").setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, args.quiet)
    if args.quiet:
        args.no_progress = True  # every command that draws bars reads --no-progress
    try:
        from evoprune.devices import share_cores

        log.debug("torch threads: %d", share_cores())  # the cores other work leaves free
        return int(args.func(args) or 0)
    except EvoPruneError as exc:
        log.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
