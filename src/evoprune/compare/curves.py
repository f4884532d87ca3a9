"""Accuracy against size: every ranking and random masks at a list of densities, retrained and
scored on the held-out test set, drawn under the evolved heads (``evoprune compare --curves``).

Files in the comparison folder::

    DIR/curves/<encoding>_run<k>.json   the points of one run's seed (kept to resume)
    DIR/curves.csv                      one row per (encoding, run, method, density)
    DIR/curves.png                      one panel per encoding: mean over runs, evolved heads
                                        and the multi-objective front on top

A density d keeps max(1, round(d * n)) units of each pruned layer of n units (random masks:
of all genes). The curves of a run depend on its encoding and seed only, so the paper's GA and
the multi-objective search of the same run share them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from evoprune.compare.baselines import (
    COMPARISON_METHODS,
    MethodLabels,
    SizedHead,
    fixed_density_masks,
    sized_methods_for,
)
from evoprune.compare.layout import finished_context, run_dir, split_variant
from evoprune.compare.rankings import Ranker
from evoprune.encodings import Encoding
from evoprune.errors import ConfigError
from evoprune.model.head import accuracy
from evoprune.plots import styled
from evoprune.runs.store import CURVES_FILE, curves_file, save_with, saved_with, write_table
from evoprune.search.algorithms import ALGORITHMS

CURVE_FIELDS = [
    "encoding",
    "run",
    "seed",
    "method",
    "density",
    "active_genes",
    "active_fraction",
    "test_accuracy",
]
#: Every curve: the comparison methods that can be trained at any size (the rankings, the
#: narrower head), then random masks.
CURVE_LABELS = MethodLabels(last={"random": "Random"}, sized=True)


def check_densities(densities: Sequence[float | str], where: str = "--curves") -> tuple[float, ...]:
    """``densities`` as floats, each in (0, 1] and given once; ConfigError naming ``where``."""
    try:
        values = tuple(float(d) for d in densities)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {densities!r} are not numbers") from None
    bad = [d for d in values if not (0.0 < d <= 1.0) or math.isnan(d)]
    if bad or not values or len(set(values)) != len(values):
        raise ConfigError(
            f"{where} {','.join(map(str, values))}: give densities in (0, 1], each once, "
            "e.g. 0.02,0.05,0.1,0.2,0.5,1"
        )
    return values


def density_keep(encoding: Encoding, density: float) -> dict[int, int]:
    """Units kept at ``density`` in each pruned layer (layer index -> count, at least 1)."""
    return {
        t.layer: max(1, int(round(density * t.size(encoding.n_features, encoding.hidden))))
        for t in encoding.prune_targets
    }


def curve_points(
    ranker: Ranker,
    X_test: np.ndarray,
    y_test: np.ndarray,
    densities: Sequence[float],
    *,
    methods: Sequence[str] | None = None,
    progress: bool = False,
) -> list[dict]:
    """Held-out accuracy on (X_test, y_test) of each method that can be trained at any size
    (``methods``; by default those that apply to the ranker's encoding, then ``random``) at each
    density, trained from scratch on all of the ranker's training data, which alone gives the
    scores. A head met twice (every ranking at density 1) is trained once."""
    from tqdm.auto import tqdm

    encoding = ranker.encoding
    names = tuple(methods) if methods is not None else curve_methods(encoding)
    densities = check_densities(densities, "densities")
    randoms = fixed_density_masks(encoding.n_genes, ranker.seed, densities)
    scored: dict[bytes, float] = {}
    points = []
    jobs = [(d, r, m) for d, r in zip(densities, randoms) for m in names]
    for density, random_mask, method in tqdm(
        jobs, desc="curves", unit="head", disable=not progress, dynamic_ncols=True, leave=False
    ):
        sized = _sized(ranker, method, density, random_mask)
        key = b"|".join(m.tobytes() for m in (sized.masks.features, *sized.masks.hidden))
        if key not in scored:
            scored[key] = accuracy(ranker.train(sized.masks), X_test, y_test)
        points.append(
            {
                "method": method,
                "density": float(density),
                "active_genes": sized.active_genes,
                "active_fraction": sized.active_fraction,
                "test_accuracy": scored[key],
            }
        )
    return points


def curve_methods(encoding: Encoding) -> tuple[str, ...]:
    """The curves of ``encoding``: every method that applies and can be trained at any size,
    then ``random``."""
    return sized_methods_for(encoding) + ("random",)


def _sized(ranker: Ranker, method: str, density: float, random_mask: np.ndarray) -> SizedHead:
    if method == "random":
        mask = ranker.encoding.decode(random_mask)
        return SizedHead(mask, int(random_mask.sum()), float(random_mask.mean()))
    at_size = COMPARISON_METHODS[method].at_size if method in COMPARISON_METHODS else None
    if at_size is None:
        raise ConfigError(
            f"{method!r} has no accuracy-size curve; choose from "
            f"{', '.join(curve_methods(ranker.encoding))}"
        )
    return at_size(ranker, density_keep(ranker.encoding, density))


def run_curves(
    cc,
    out: Path,
    data: Callable,
    results: dict[tuple[str, int], dict | None],
    *,
    progress: bool = True,
) -> list[dict]:
    """The curves of every (encoding, run) of the comparison ``cc`` with a finished run (its
    reference head reused), computed unless saved with the same settings; then curves.csv and
    curves.png. ``data()`` gives the prepared data; ``results`` the finished runs' results by
    (variant, run)."""
    rows = []
    for enc in cc.encodings:
        for k in range(int(cc.runs)):
            variants = [v for v in cc.variants if split_variant(v)[0] == enc]
            done = [v for v in variants if results.get((v, k)) is not None]
            if not done:
                continue
            cfg = cc.run_config(enc, k)
            # the settings that change a result: another --workers reuses the saved points
            settings = {"run": cfg.result_dict(), "densities": list(cc.curves)}
            path = curves_file(out, enc, k)
            saved = saved_with(path, settings)
            if saved is None:
                points = _run_points(cc, out, data(), done[0], k, progress)
                save_with(path, settings, points=points)
                saved = {"points": points}
            rows += [{"encoding": enc, "run": k, "seed": cfg.seed, **p} for p in saved["points"]]
    write_table(Path(out) / CURVES_FILE, CURVE_FIELDS, rows)
    title = f"{Path(cc.base.data).name or cc.base.data}: held-out accuracy against size"
    plot_curves(rows, _evolved(cc, results), Path(out) / "curves.png", cc.encodings, title)
    return rows


def _run_points(cc, out: Path, data, variant: str, k: int, progress: bool) -> list[dict]:
    context = finished_context(cc.run_config(variant, k), data, run_dir(out, variant, k))
    ranker = Ranker(context, context.reference)
    return curve_points(ranker, data.X_test, data.y_test, cc.curves, progress=progress)


def _evolved(cc, results: dict[tuple[str, int], dict | None]) -> list[dict]:
    """Points of the evolved heads: each run's shipped head, and every front member of the
    multi-objective runs."""
    points = []
    for (variant, _run), r in results.items():
        if r is None:
            continue
        enc, algorithm = split_variant(variant)
        points.append(
            {
                "encoding": enc,
                "kind": algorithm,
                "selected": True,
                "active_fraction": float(r["active_fraction"]),
                "test_accuracy": float(r["test_accuracy"]),
            }
        )
        if ALGORITHMS[algorithm].several_objectives:
            points += [
                {
                    "encoding": enc,
                    "kind": "front",
                    "selected": False,
                    "active_fraction": float(m["active_fraction"]),
                    "test_accuracy": float(m["test_accuracy"]),
                }
                for m in r.get("front") or []
            ]
    return points


@styled
def plot_curves(
    rows: Sequence[dict],
    evolved: Sequence[dict],
    path: Path,
    encodings: Sequence[str],
    title: str = "",
) -> Path:
    """One panel per encoding: each curve's mean held-out accuracy over runs against % active
    (log scale, bars: min to max over runs), the evolved heads and front members on top."""
    from evoprune.plots import legend_outside, pyplot, save_figure

    plt = pyplot()
    n = max(1, len(encodings))
    cols = min(n, 2)  # two panels a row: readable where a page shows the figure
    rows_ = math.ceil(n / cols)
    fig, axes = plt.subplots(
        rows_, cols, figsize=(5.6 * cols, 4.4 * rows_), squeeze=False, sharey=True
    )
    palette = [*plt.get_cmap("tab10").colors, *plt.get_cmap("Dark2").colors]
    colors = {m: palette[i % len(palette)] for i, m in enumerate(CURVE_LABELS)}
    colors["random"] = (0.45, 0.45, 0.45, 1.0)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for ax, enc in zip(axes.flat, encodings):
        _draw_curves(ax, [r for r in rows if r["encoding"] == enc], colors)
        _draw_evolved(ax, [e for e in evolved if e["encoding"] == enc])
        ax.set_xscale("log")
        ticks = sorted({round(100 * float(r["density"]), 6) for r in rows})
        if ticks:  # the densities asked for, as plain percentages
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
            ax.minorticks_off()
        ax.set_xlabel("% active genes (log scale)")
        ax.set_title(enc, fontsize=10)
        ax.grid(alpha=0.3, which="both")
    seen: dict = {}
    for ax in axes.flat[:n]:
        for h, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, h)
    legend_outside(axes.flat[min(n, cols) - 1], list(seen.values()), list(seen))
    for row in axes:
        row[0].set_ylabel("held-out test accuracy")
    if title:
        fig.suptitle(title)
    return save_figure(fig, axes[0][0], path)


def _draw_curves(ax, rows: Sequence[dict], colors: dict) -> None:
    for method, label in CURVE_LABELS.items():
        mine = [r for r in rows if r["method"] == method]
        if not mine:
            continue
        xs = sorted({float(r["density"]) for r in mine})
        accs = [[float(r["test_accuracy"]) for r in mine if r["density"] == x] for x in xs]
        mean = np.array([np.mean(a) for a in accs])
        low = mean - np.array([min(a) for a in accs])
        high = np.array([max(a) for a in accs]) - mean
        active = [
            100 * np.mean([r["active_fraction"] for r in mine if r["density"] == x]) for x in xs
        ]
        ax.errorbar(
            active,
            mean,
            yerr=[low, high],
            color=colors[method],
            marker="o",
            ms=3.5,
            lw=1.3,
            capsize=2,
            ls="--" if method == "random" else "-",
            label=label,
        )


def _draw_evolved(ax, points: Sequence[dict]) -> None:
    styles = {
        "front": dict(marker="o", s=18, facecolors="none", edgecolors="black", lw=0.8),
        "nsga2": dict(marker="D", s=36, color="black"),
        "ssga": dict(marker="*", s=90, color="crimson", edgecolors="black", lw=0.5),
    }
    labels = {
        "front": "front members (NSGA-II)",
        "nsga2": "selected head (NSGA-II)",
        "ssga": "evolved head (GA)",
    }
    kinds = dict.fromkeys(p["kind"] for p in points if p["kind"] != "front")
    for kind in kinds:
        if kind not in styles:  # another registered algorithm: drawn under its description
            spec = ALGORITHMS[kind]
            styles[kind] = dict(marker="P", s=48, edgecolors="black", lw=0.5)
            which = "selected" if spec.several_objectives else "evolved"
            labels[kind] = f"{which} head ({spec.description})"
    if {k for k in kinds if ALGORITHMS[k].several_objectives} - {"nsga2"}:
        labels["front"] = "front members"  # of more than one search
    for kind, style in styles.items():
        mine = [p for p in points if p["kind"] == kind]
        if mine:
            ax.scatter(
                [100 * p["active_fraction"] for p in mine],
                [p["test_accuracy"] for p in mine],
                zorder=5,
                label=labels[kind],
                **style,
            )
