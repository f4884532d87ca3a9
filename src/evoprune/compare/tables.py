"""The comparison's outputs: summary.csv, stats.csv, table.md and plots, all written atomically.

Statistics: for each encoding and baseline, the runs are paired by seed (the same seed gives the
search and the baselines the same fitness split and training seed) and evoprune's held-out
accuracy is compared with the baseline's by a two-sided Wilcoxon signed-rank test (exact for
few pairs, zero differences dropped) and a paired t-test, with Holm's adjustment over the
Wilcoxon tests of the table.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evoprune.compare.baselines import METHODS, MethodLabels
from evoprune.compare.layout import SUMMARY_FIELDS, run_dir
from evoprune.plots import COLORS, legend_outside, pyplot, save_figure, styled
from evoprune.runs.store import (
    HISTORY_FILE,
    STATS_FILE,
    SUMMARY_FILE,
    peek_result,
    read_history,
    write_table,
    write_table_md,
)

#: Every row's method: evoprune, then the baselines in the order of :data:`baselines.METHODS`.
METHOD_LABELS = MethodLabels(first={"evoprune": "EvoPruneDeepTL"})
BASELINES = METHODS
STATS_FIELDS = [
    "encoding",
    "baseline",
    "n",
    "evoprune_mean",
    "baseline_mean",
    "mean_diff",
    "sd_diff",
    "ci95_low",
    "ci95_high",
    "wins",
    "ties",
    "losses",
    "wilcoxon_p",
    "wilcoxon_p_holm",
    "min_possible_wilcoxon_p",
    "ttest_p",
]


def write_reports(cc, out: Path, rows: list[dict]) -> None:
    """summary.csv, stats.csv, table.md, convergence_<encoding>.png, accuracy_vs_active.png."""
    out = Path(out)
    write_table(out / SUMMARY_FILE, SUMMARY_FIELDS, rows)
    stats = paired_stats(rows, cc.variants)
    write_table(out / STATS_FILE, STATS_FIELDS, stats)
    meta = _meta(cc, out)
    write_table_md(out, format_table_md(rows, stats, cc.variants, meta))
    for enc in cc.variants:
        curves = []
        for k in range(int(cc.runs)):
            hist = run_dir(out, enc, k) / HISTORY_FILE
            if hist.is_file():
                curves.append((k, int(cc.seed_base) + k, _best_so_far(hist)))
        plot_convergence_runs(
            curves,
            out / f"convergence_{enc}.png",
            title=f"{meta['dataset']} · {enc}: best fitness so far, every run",
        )
    plot_accuracy_vs_active(
        rows,
        out / "accuracy_vs_active.png",
        title=f"{meta['dataset']}: held-out accuracy against size",
    )


def _best_so_far(path: Path) -> tuple[list[int], list[float]]:
    hist = read_history(path)
    return [h.index for h in hist], [h.best_fitness for h in hist]


def _meta(cc, out: Path) -> dict:
    meta = {
        "dataset": Path(cc.base.data).name or cc.base.data,
        "n_train": None,
        "n_test": None,
        "test_set": None,
        "leaked": cc.base.fitness_split == "test",
        "settings": f"backbone {cc.base.backbone}, trainer {cc.base.trainer}, fitness on "
        f"{cc.base.fitness_split}, population {cc.base.population}, "
        f"{cc.base.evaluations or 'the default'} evaluations per run",
    }
    for enc in cc.variants:
        r = peek_result(run_dir(out, enc, 0))
        if r is None:
            continue
        meta.update(
            dataset=r.get("dataset", meta["dataset"]),
            n_train=r.get("n_train"),
            n_test=r.get("n_test"),
            test_set=r.get("test_set"),
        )
        break
    return meta


#: Paired differences closer than this are equal: accuracies are fractions of images, and their
#: differences computed in float64 differ by rounding (~1e-16), a "variance" that would give a
#: t-test p of 1e-15 to two runs that both lost the same 10 images.
_SAME = 1e-9


def paired_stats(rows: Sequence[dict], encodings: Sequence[str]) -> list[dict]:
    """evoprune against each baseline, per encoding, runs paired by run number."""
    acc = {(r["encoding"], r["method"], r["run"]): float(r["test_accuracy"]) for r in rows}
    out = []
    for enc in encodings:
        for base in BASELINES:
            runs = sorted(
                run
                for (e, m, run) in acc
                if e == enc and m == "evoprune" and (enc, base, run) in acc
            )
            if not runs:
                continue
            a = np.array([acc[(enc, "evoprune", k)] for k in runs])
            b = np.array([acc[(enc, base, k)] for k in runs])
            out.append({"encoding": enc, "baseline": base, **_paired(a, b)})
    for row, p in zip(out, holm([r["wilcoxon_p"] for r in out])):
        row["wilcoxon_p_holm"] = p
    return out


def _paired(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """The paired comparison of accuracies ``a`` (evoprune) and ``b`` (a baseline), run by run:
    means, the differences' mean and sd, W/T/L, a t interval and p, Wilcoxon's p."""
    from scipy import stats as st

    d = a - b
    n = len(d)
    nonzero = int(np.count_nonzero(d))
    sd = float(d.std(ddof=1)) if n > 1 else math.nan
    if n > 1 and float(np.ptp(d)) <= _SAME:  # equal differences: rounding is no variance
        sd = 0.0
    row: dict[str, Any] = {
        "n": n,
        "evoprune_mean": float(a.mean()),
        "baseline_mean": float(b.mean()),
        "mean_diff": float(d.mean()),
        "sd_diff": sd,
        "wins": int((d > 0).sum()),
        "ties": n - nonzero,
        "losses": int((d < 0).sum()),
        "min_possible_wilcoxon_p": 2.0 / 2**nonzero if nonzero else math.nan,
    }
    if n > 1 and sd > 0:
        half = float(st.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
        row["ci95_low"], row["ci95_high"] = row["mean_diff"] - half, row["mean_diff"] + half
        row["ttest_p"] = float(st.ttest_rel(a, b).pvalue)
    else:
        row["ci95_low"] = row["ci95_high"] = row["mean_diff"] if n > 1 else math.nan
        row["ttest_p"] = 1.0 if n > 1 and nonzero == 0 else math.nan
    if nonzero == 0:
        row["wilcoxon_p"] = 1.0  # no run differs
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            row["wilcoxon_p"] = float(
                st.wilcoxon(a, b, zero_method="wilcox", alternative="two-sided").pvalue
            )
    return row


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment (family-wise error) of ``pvalues``; NaN stays NaN."""
    p = np.asarray(pvalues, dtype=float)
    adjusted = np.full(p.shape, math.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = len(ok)
    running = 0.0
    for rank, i in enumerate(ok[np.argsort(p[ok], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


def _mean_sd(values: Sequence[float], scale: float = 1.0, digits: int = 3) -> str:
    v = np.asarray(values, dtype=float) * scale
    if v.size == 0:
        return "–"
    if v.size == 1:
        return f"{v[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


def _p(v) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3g}"


def format_table_md(
    rows: Sequence[dict], stats: Sequence[dict], encodings: Sequence[str], meta: dict
) -> str:
    """The paper's table layout (methods x encodings, accuracy and % active), then the tests."""
    runs = sorted({r["run"] for r in rows})
    seeds = sorted({r["seed"] for r in rows})
    lines = _table_intro(meta, runs, seeds)
    lines += _method_table(rows, encodings)
    lines += _stats_table(stats)
    lines += ["", "## What these tests can and cannot show", ""]
    lines += _caveats(len(runs), len(stats), meta)
    return "\n".join(lines) + "\n"


def _table_intro(meta: dict, runs: list, seeds: list) -> list[str]:
    lines = [f"# EvoPruneDeepTL against the baselines on {meta['dataset']}", ""]
    if meta.get("n_test"):
        lines.append(
            f"{meta['n_train']} training / {meta['n_test']} held-out test images "
            f"({meta['test_set']}); {meta['settings']}."
        )
    if meta.get("leaked"):
        lines.append(
            "**LEAKED: fitness (the search's and best fixed's choice) was measured on "
            "the test set, as in the paper; these accuracies are optimistic.**"
        )
    elif meta.get("n_test"):
        lines.append("The search and every baseline's choices saw only the training images.")
    lines.append(
        f"{len(runs)} run(s) per encoding (seeds {', '.join(map(str, seeds))}). Cells: "
        "held-out test accuracy and % active (genes, or weights for weight pruning and "
        "polynomial decay), mean ± standard deviation over runs; best accuracy per "
        "encoding in bold."
    )
    lines.append("")
    return lines


def _method_table(rows: Sequence[dict], encodings: Sequence[str]) -> list[str]:
    """Methods x encodings: accuracy (the best per encoding in bold) and % active."""
    header = "| method | " + " | ".join(f"{e} accuracy | {e} % active" for e in encodings) + " |"
    lines = [header, "|---|" + "---:|---:|" * len(encodings)]
    cells: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        cells.setdefault((r["method"], r["encoding"]), []).append(r)
    best = {}
    for e in encodings:
        means = {
            m: np.mean([float(r["test_accuracy"]) for r in cells[(m, e)]])
            for m in METHOD_LABELS
            if cells.get((m, e))
        }
        best[e] = max(means.values()) if means else None
    for m, label in METHOD_LABELS.items():
        if not any(cells.get((m, e)) for e in encodings):
            continue  # a ranking for other encodings
        parts = []
        for e in encodings:
            parts += _method_cells(cells.get((m, e), []), best[e])
        lines.append(f"| {label} | " + " | ".join(parts) + " |")
    return lines


def _method_cells(rs: list[dict], top: Any) -> list[str]:
    """One method's accuracy (bold when it is the encoding's best) and % active cells."""
    accs = [float(r["test_accuracy"]) for r in rs]
    text = _mean_sd(accs)
    if rs and top is not None and np.isclose(np.mean(accs), top):
        text = f"**{text}**"
    return [text, _mean_sd([float(r["active_fraction"]) for r in rs], 100.0, 1)]


def _stats_table(stats: Sequence[dict]) -> list[str]:
    lines = [
        "",
        "## Paired comparison: evoprune minus each baseline",
        "",
        "Differences in test accuracy (points = hundredths), runs paired by seed. "
        "W/T/L: runs where evoprune was better / equal / worse.",
        "",
        "| encoding | baseline | mean difference | 95% CI (t) | W/T/L | Wilcoxon p | "
        "Holm-adjusted | smallest possible | paired t p |",
        "|---|---|---:|---:|:---:|---:|---:|---:|---:|",
    ]
    for s in stats:
        ci = (
            "–"
            if math.isnan(s["ci95_low"])
            else f"[{100 * s['ci95_low']:+.2f}, {100 * s['ci95_high']:+.2f}]"
        )
        lines.append(
            f"| {s['encoding']} | {METHOD_LABELS[s['baseline']]} | "
            f"{100 * s['mean_diff']:+.2f} | {ci} | {s['wins']}/{s['ties']}/{s['losses']}"
            f" | {_p(s['wilcoxon_p'])} | {_p(s['wilcoxon_p_holm'])} | "
            f"{_p(s['min_possible_wilcoxon_p'])} | {_p(s['ttest_p'])} |"
        )
    return lines


def _caveats(n_runs: int, n_tests: int, meta: dict) -> list[str]:
    out = [
        f"- Wilcoxon signed-rank, two-sided, exact: with n paired runs that differ the smallest "
        f"p it can give is 2/2^n ({_p(2 / 2**n_runs)} for {n_runs} runs"
        f"{'' if n_runs in (5, 6) else '; 0.0625 for 5'}{'' if n_runs == 6 else ', 0.031 for 6'})"
        ". With 5 runs or fewer it can never reach 0.05, whatever the data: a p at its "
        "smallest possible value means every run went the same way, nothing more. Runs with "
        "equal accuracy are dropped, so ties lower n further.",
        "- The paired t-test can give small p with few runs, but it assumes the differences are "
        "normally distributed, which a handful of values cannot check; read it as a rough guide "
        "beside the confidence interval.",
        "- The runs differ in their seeds (fitness split, search, weight initialisation), not in "
        "the test images: every run is scored on the same held-out set. A small p says the "
        "difference repeats across seeds on these images, not that it would hold on new images.",
    ]
    if meta.get("n_test"):
        se = 100 * math.sqrt(0.25 / meta["n_test"])
        out.append(
            f"- One accuracy on {meta['n_test']} test images has a sampling standard "
            f"error of up to {se:.1f} points (binomial, p = 0.5), so differences smaller "
            "than that are within what another test set could reverse."
        )
    out += [
        f"- {n_tests} tests in this table: at 0.05, about one in twenty comparisons would look "
        "significant by chance alone; the Holm column corrects for that (family-wise).",
        "- A large p does not show that two methods are equal; it shows that these runs cannot "
        "tell them apart.",
        "- Sizes: weight pruning, neuron pruning and polynomial decay are set to the evolved "
        "head's fraction of active genes in each of its runs; not pruned keeps everything; best "
        "fixed keeps the density its fitness picked, so its % active differs. The rankings (mutual "
        "information, ANOVA F, L1 logistic regression, weight norm and activation variance, "
        "each retrained) keep exactly as many units per layer as the evolved head, chosen from "
        "the training images only.",
    ]
    return out


@styled
def plot_convergence_runs(
    curves: Sequence[tuple[int, int, tuple[list[int], list[float]]]], path: Path, title: str = ""
) -> Path:
    """Every run's best fitness so far against evaluations, one line per run."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for run, seed, (x, y) in curves:
        ax.step(x, y, where="post", lw=1.5, label=f"run {run} (seed {seed})")
    ax.set_xlabel("evaluations")
    ax.set_ylabel("best fitness so far (accuracy)")
    if curves:
        legend_outside(ax)
    return save_figure(fig, ax, path, title)


def method_family(method: str) -> str:
    """The family a comparison method is drawn in (accuracy_vs_active.png): five families,
    not one colour per method (the per-method numbers are in table.md)."""
    from evoprune.compare.rankings import RANKINGS

    if method in ("evoprune", "not_pruned", "best_fixed"):
        return method
    # units chosen, then trained from scratch: the rankings and the narrower head
    return "ranking" if method in RANKINGS or method == "narrow" else "pruning"


#: (label, colour) of each family, in legend order.
FAMILIES = {
    "evoprune": ("EvoPruneDeepTL", COLORS["evolved"]),
    "not_pruned": ("not pruned", COLORS["reference"]),
    "best_fixed": ("best fixed mask", COLORS["fitness"]),
    "pruning": ("pruning baselines\n(weight, neuron,\npolynomial decay)", COLORS["green"]),
    "ranking": (
        "rankings, retrained\n(MI, ANOVA F, L1, RFE,\nmRMR, ReliefF, LassoNet,\n"
        "weight norm, act. var.;\nnarrower head)",
        COLORS["heldout"],
    ),
}


@styled
def plot_accuracy_vs_active(rows: Sequence[dict], path: Path, title: str = "") -> Path:
    """Held-out accuracy against % active, one panel per encoding, one colour per family of
    methods (EvoPruneDeepTL, not pruned, best fixed, pruning baselines, rankings), the legend
    outside the panels."""
    plt = pyplot()
    from matplotlib.lines import Line2D

    encodings = list(dict.fromkeys(r["encoding"] for r in rows)) or [""]
    n = len(encodings)
    cols = min(n, 2)  # two panels a row: readable where a page shows the figure
    nrows = -(-n // cols)
    fig, axes = plt.subplots(
        nrows, cols, figsize=(4.2 * cols + 2.4, 3.3 * nrows), sharey=True, squeeze=False
    )
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    order = list(FAMILIES)
    for ax, enc in zip(axes.flat, encodings):
        mine = [r for r in rows if r["encoding"] == enc]
        # EvoPruneDeepTL drawn last, on top
        mine.sort(key=lambda r: -order.index(method_family(r["method"])))
        for r in mine:
            family = method_family(r["method"])
            ax.scatter(
                100 * float(r["active_fraction"]),
                float(r["test_accuracy"]),
                s=34 if family == "evoprune" else 22,
                color=FAMILIES[family][1],
                alpha=0.9 if family == "evoprune" else 0.7,
                edgecolor="white",
                linewidth=0.4,
                zorder=3 if family == "evoprune" else 2,
            )
        ax.set_title(enc)
        ax.set_xlim(0, 104)
        ax.set_xlabel("% active")
    for row in axes:
        row[0].set_ylabel("held-out test accuracy")
    present = {method_family(r["method"]) for r in rows}
    handles = [
        Line2D([], [], ls="", marker="o", color=color, label=label)
        for family, (label, color) in FAMILIES.items()
        if family in present
    ]
    legend_outside(axes[0, cols - 1], handles)
    if title:
        fig.suptitle(title)
    fig.text(
        0.01,
        -0.02,
        "% active: genes, or weights for weight pruning and polynomial decay; "
        "each method's numbers are in table.md",
        fontsize=7,
        color="0.35",
    )
    return save_figure(fig, axes[0, 0], path)
