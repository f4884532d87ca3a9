"""``evoprune report``: one self-contained HTML page of a run or a comparison folder.

Everything the page shows is read from the folder (``result.json``, ``config.json``,
``pareto.csv``, ``table.md``, ``summary.csv``, the PNG figures) and written into one file: the
figures embedded as base64 PNG, the style inline, no script and no link outside the page, so
it opens anywhere (a mail attachment, a CI artefact) and looks the same.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence
from pathlib import Path

from evoprune.errors import ConfigError, EvoPruneError
from evoprune.io import atomic_write_text

PAGE_FILE = "report.html"

_STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d2327;
       max-width: 1100px; margin: 2em auto; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: .2em; } h2 { font-size: 1.2em; margin-top: 1.8em;
     border-bottom: 1px solid #d0d7de; padding-bottom: .2em; }
.sub { color: #57606a; margin-top: 0; }
table { border-collapse: collapse; margin: .6em 0; font-size: .92em; }
th, td { border: 1px solid #d0d7de; padding: .25em .6em; text-align: left; }
th { background: #f3f5f7; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.shipped td { background: #fff4d6; font-weight: 600; }
.warn { background: #ffebe9; border: 1px solid #ff8182; padding: .5em .8em; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #d0d7de; }
figcaption { color: #57606a; font-size: .9em; }
code { background: #f3f5f7; padding: 0 .25em; }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", "").replace("%", "").replace("+", ""))
    except ValueError:
        return False
    return True


def table(rows: Sequence[Sequence[object]], shipped: Iterable[int] = ()) -> str:
    """An HTML table: the first row is the header; rows whose index (counting data rows from
    0) is in ``shipped`` are highlighted; numbers are right-aligned."""
    marked = set(shipped)
    out = ["<table>", "<tr>" + "".join(f"<th>{_e(c)}</th>" for c in rows[0]) + "</tr>"]
    for i, row in enumerate(rows[1:]):
        cls = ' class="shipped"' if i in marked else ""
        cells = "".join(
            f'<td class="num">{_e(c)}</td>' if _is_number(str(c)) else f"<td>{_e(c)}</td>"
            for c in row
        )
        out.append(f"<tr{cls}>{cells}</tr>")
    out.append("</table>")
    return "\n".join(out)


def figure(path: Path, caption: str) -> str:
    """The PNG at ``path`` embedded as base64, with a caption."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{_e(caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


def markdown_tables(text: str) -> str:
    """The pipe tables of a Markdown text as HTML tables, its other lines as paragraphs (what
    ``table.md`` of a comparison holds)."""
    out: list[str] = []
    block: list[list[str]] = []

    def flush() -> None:
        if block:
            out.append(table(block))
            block.clear()

    for line in text.splitlines():
        s = line.strip()
        if s.startswith("|"):
            cells = [c.strip() for c in s.strip("|").split("|")]
            if all(set(c) <= set(":- ") for c in cells):
                continue  # the header rule
            block.append(cells)
            continue
        flush()
        if s.startswith("#"):
            out.append(f"<h3>{_e(s.lstrip('#').strip())}</h3>")
        elif s:
            out.append(f"<p>{_e(s.lstrip('-* ').strip())}</p>")
    flush()
    return "\n".join(out)


#: What each figure a run or comparison writes shows (a caption for the page).
CAPTIONS = {
    "convergence.png": "Fitness of each evaluation and of the best so far (the shipped head's "
    "line for a multi-objective run)",
    "pareto.png": "The front: fitness on the fitness split and held-out accuracy of each "
    "front head against its size",
    "hypervolume.png": "Hypervolume of the heads evaluated so far",
    "confusion.png": "Confusion matrices on the held-out images",
    "accuracy_vs_active.png": "Held-out accuracy against size, every method and run",
}


def _figures(folder: Path) -> list[str]:
    """Every PNG of ``folder`` and its ``analysis/`` folder, named figures first."""
    found = sorted(folder.glob("*.png")) + sorted((folder / "analysis").glob("*.png"))
    order = {name: i for i, name in enumerate(CAPTIONS)}
    found.sort(key=lambda p: (order.get(p.name, len(order)), str(p)))
    return [
        figure(p, CAPTIONS.get(p.name, str(p.relative_to(folder)).replace(".png", "")))
        for p in found
    ]


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    if value is None:
        return "-"
    return str(value)


def _page(title: str, subtitle: str, body: Sequence[str]) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>\n"
        f'<h1>{_e(title)}</h1><p class="sub">{_e(subtitle)}</p>\n'
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def run_page(run) -> str:
    """The page of a finished run (a :class:`~evoprune.runs.store.RunFolder`)."""
    r = run.result
    body: list[str] = []
    if r.get("leaked_test_set"):
        body.append(
            '<p class="warn">LEAKED: fitness was measured on the test set (the paper\'s '
            "protocol); the held-out accuracy below is optimistic.</p>"
        )
    body += _result_section(r)
    if r.get("front"):
        body += _front_section(r)
    if r.get("per_class"):
        body += _per_class_section(r)
    body.append("<h2>Figures</h2>")
    body += _figures(run.path) or ["<p>No figures in this folder.</p>"]
    body += _timings_and_settings(run)
    body.append(_files(run.path))
    title = f"{r['dataset']} · {r['encoding']} · {r['backbone']} · seed {r['seed']}"
    return _page(title, f"evoprune run {run.path.name}", body)


def _result_section(r) -> list[str]:
    """The shipped and the not-pruned head on the held-out images."""
    body: list[str] = []
    acc, ref = r["test_accuracy"], r["reference_test_accuracy"]
    body.append("<h2>Result on held-out images</h2>")
    body.append(
        table(
            [
                ("head", "test accuracy", "% active", "parameters", "multiply-adds"),
                (
                    f"evolved ({r['encoding']})",
                    f"{acc:.4f}",
                    f"{100 * r['active_fraction']:.1f}",
                    f"{r['head_params']:,}",
                    f"{r.get('head_macs', 0):,}",
                ),
                (
                    "not pruned",
                    f"{ref:.4f}",
                    "100.0",
                    f"{r['reference_head_params']:,}",
                    f"{r.get('reference_head_macs', 0):,}",
                ),
            ]
        )
    )
    body.append(
        f"<p>{r['n_train']} training and {r['n_test']} held-out images "
        f"({_e(r.get('test_set', ''))}), "
        f"{r['n_classes']} classes; fitness of the shipped head on the {_e(r['fitness_split'])} "
        f"split {r['fitness']:.4f}; {r['evaluations']} evaluations; "
        f"{100 * (acc - ref):+.1f} points against the not-pruned head.</p>"
    )
    return body


def _front_section(r) -> list[str]:
    """The front, its shipped head marked."""
    body: list[str] = []
    body.append(
        f"<h2>Pareto front ({len(r['front'])} heads over {_e(', '.join(r['objectives']))}, "
        f"selected by {_e(r.get('select'))})</h2>"
    )
    rows: list[Sequence[object]] = [
        ("", "rank", "% active", "parameters", "fitness", "test accuracy")
    ]
    shipped = []
    for i, m in enumerate(r["front"]):
        if m.get("selected"):
            shipped.append(i)
        rows.append(
            (
                "shipped" if m.get("selected") else "",
                m["rank"],
                f"{100 * m['active_fraction']:.1f}",
                f"{m['head_params']:,}",
                f"{m['fitness']:.4f}",
                f"{m['test_accuracy']:.4f}",
            )
        )
    body.append(table(rows, shipped))
    return body


def _per_class_section(r) -> list[str]:
    """Each class's precision, recall and F1, against the not-pruned head's F1."""
    body: list[str] = []
    body.append("<h2>Per class (held-out images)</h2>")
    rows = [("class", "images", "precision", "recall", "F1", "F1 not pruned", "change")]
    for c in r["per_class"]:
        rows.append(
            (
                c["class"],
                c["support"],
                f"{c['precision']:.3f}",
                f"{c['recall']:.3f}",
                f"{c['f1']:.3f}",
                f"{c['reference_f1']:.3f}",
                f"{c['f1'] - c['reference_f1']:+.3f}",
            )
        )
    body.append(table(rows))
    return body


def _timings_and_settings(run) -> list[str]:
    r = run.result
    body: list[str] = []
    t = dict(r.get("timings") or {})
    body.append("<h2>Timings (seconds)</h2>")
    body.append(
        table(
            [("step", "seconds")]
            + [(k.replace("_", " "), f"{v:.1f}") for k, v in t.items()]
            + [("total (wall)", f"{r['wall_seconds']:.1f}")]
        )
    )
    body.append("<h2>Settings</h2>")
    settings = run.run_config or {}
    body.append(
        table(
            [("setting", "value")]
            + [(k, _fmt(v)) for k, v in settings.items()]
            + [
                ("backbone", r["backbone"]),
                ("device", _fmt(r.get("device"))),
                ("evoprune version", r.get("evoprune_version", "?")),
            ]
        )
    )
    return body


def folder_files(folder: Path) -> list[tuple[str, int]]:
    """(path relative to ``folder``, bytes) of every file in it and below, hidden ones (the
    manifest, locks) and the runs of a comparison aside."""
    out = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or rel.parts[0] == "runs":
            continue
        if p.is_file():
            out.append((str(rel), p.stat().st_size))
    return out


def _files(folder: Path) -> str:
    rows: list[Sequence[object]] = [("file", "bytes")]
    rows += [(name, f"{size:,}") for name, size in folder_files(folder)]
    return "<h2>Files</h2>\n" + table(rows)


def list_runs(folder: str | Path) -> list[dict]:
    """One entry per run folder directly inside ``folder`` (the run store's
    :func:`~evoprune.runs.store.list_runs`)."""
    from evoprune.runs.store import list_runs as store_list_runs

    return store_list_runs(folder)


def runs_table(runs: Sequence[dict]) -> list[tuple[str, ...]]:
    """:func:`list_runs` as table rows (header first)."""

    def num(v, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    rows: list[tuple[str, ...]] = [
        (
            "run",
            "status",
            "dataset",
            "encoding",
            "seed",
            "evaluations",
            "test acc",
            "not pruned",
            "% active",
        )
    ]
    for r in runs:
        active = r.get("active_fraction")
        rows.append(
            (
                r["run"],
                r["status"],
                str(r.get("dataset") or "-"),
                str(r.get("encoding") or "-"),
                str(r.get("seed", "-")),
                str(r.get("evaluations", "-")),
                num(r.get("test_accuracy"), ".4f"),
                num(r.get("reference_test_accuracy"), ".4f"),
                "-" if active is None else f"{100 * active:.1f}",
            )
        )
    return rows


def comparison_page(folder: Path) -> str:
    """The page of a folder written by ``evoprune compare``."""
    from evoprune.runs.store import (
        STATS_FILE,
        SUMMARY_FILE,
        read_comparison,
        read_table_cells,
        read_table_md,
    )

    settings = read_comparison(folder)
    body: list[str] = []
    runs = list_runs(folder / "runs")
    if runs:
        body.append("<h2>Runs</h2>")
        body.append(table(runs_table(runs)))
    table_md = read_table_md(folder)
    if table_md is not None:
        body.append("<h2>Results</h2>")
        body.append(markdown_tables(table_md))
    body.append("<h2>Figures</h2>")
    body += _figures(folder) or ["<p>No figures in this folder.</p>"]
    for name, heading in ((SUMMARY_FILE, "Every run and method"), (STATS_FILE, "Paired tests")):
        if (folder / name).is_file():
            body.append(f"<h2>{heading} ({name})</h2>")
            body.append(table(read_table_cells(folder / name)))
    body.append("<h2>Settings</h2>")
    body.append(table([("setting", "value")] + [(k, _fmt(v)) for k, v in dict(settings).items()]))
    body.append(_files(folder))
    return _page(f"Comparison {folder.name}", "evoprune compare", body)


def write_page(folder: str | Path, out: str | Path | None = None) -> Path:
    """Write the page of a run or comparison ``folder`` to ``out`` (default
    ``folder/report.html``); EvoPruneError when the folder is neither, before any work."""
    from evoprune.io import check_file_target, claim_file
    from evoprune.runs.store import is_comparison, open_run

    path = Path(folder)
    target = Path(out) if out is not None else path / PAGE_FILE
    if target.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"--out {target}: the page is HTML; give a file name ending in .html")
    roots = []  # the run's images: the page is never written among them
    if (path / "result.json").is_file():
        try:
            roots = open_run(path).data_roots()
        except EvoPruneError:
            pass  # the damaged run is reported below
    check_file_target(target, "report", "--out", roots)
    if is_comparison(path):
        text = comparison_page(path)
    else:
        from evoprune.runs.store import CONFIG_FILE, RESULT_FILE

        if path.is_dir() and not (path / RESULT_FILE).is_file():
            if (path / CONFIG_FILE).is_file():
                raise EvoPruneError(
                    f"{path} is a run that has not finished (no {RESULT_FILE}): run the same "
                    "'evoprune run' command again to finish it, then make its report"
                )
            raise EvoPruneError(
                f"{path} is neither a run folder ({RESULT_FILE}) nor a comparison folder "
                "(comparison.json): 'evoprune report' takes a run folder or a comparison folder"
            )
        text = run_page(open_run(path))
    with claim_file([target], "report", "--out"):
        return atomic_write_text(target, text)


def add_report_command(sub) -> None:
    """Register ``evoprune report``."""
    p = sub.add_parser(
        "report",
        help="write one self-contained HTML page of a run or a comparison",
        description="Write one HTML page of a run folder or a comparison folder: the results "
        "against the not-pruned head, the front with its shipped head, per-class results, "
        "every figure (embedded), timings, settings and files. The page needs nothing else "
        "to open: send it, or keep it as a CI artefact.",
    )
    p.add_argument("folder", metavar="RUN_DIR|COMPARE_DIR", help="a run or comparison folder")
    p.add_argument(
        "--out", default=None, metavar="FILE", help=f"the page. Default: FOLDER/{PAGE_FILE}"
    )
    p.set_defaults(func=cmd_report)


def cmd_report(args) -> int:
    import sys

    path = write_page(args.folder, args.out)
    sys.stdout.write(f"{path}\n")
    return 0
