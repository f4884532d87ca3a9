"""Issue 20.7: figures a reader understands at a glance. Every figure type is rendered from
made-up data; no legend may cover a data point, every figure is drawn in the one style, and
each figure the issue names is checked for what it misled about."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from evoprune.search import EvaluationRecord

rng = np.random.default_rng(0)


@pytest.fixture
def figures(monkeypatch):
    """The figures the plotting functions make, kept open (pyplot's close records them)."""
    import matplotlib.pyplot as plt

    kept = []
    monkeypatch.setattr(plt, "close", lambda fig=None: kept.append(fig))
    yield kept
    for fig in kept:
        if fig is not None:
            plt.figure(fig.number)
            monkeypatch.undo()
            plt.close(fig)


def _history(n=120, genes=200, population=30):
    recs, best = [], None
    for i in range(n):
        active = int(rng.integers(10, genes))
        fit = float(0.6 + 0.3 * (active / genes) ** 0.3 + rng.normal(0, 0.01))
        if best is None or fit > best[0]:
            best = (fit, active)
        chrom = np.zeros(genes, np.uint8)
        chrom[:active] = 1
        recs.append(
            EvaluationRecord(
                index=i + 1,
                iteration=0 if i < population else i - population + 1,
                fitness=fit,
                active_genes=active,
                active_fraction=active / genes,
                best_fitness=best[0],
                best_active_fraction=best[1] / genes,
                chromosome=chrom,
                hypervolume=0.3 + 0.4 * (1 - np.exp(-i / 30)),
            )
        )
    return recs


def _front(history):
    from evoprune.pareto import non_dominated

    F = np.array([[1 - r.fitness, r.active_fraction] for r in history])
    idx = sorted(np.flatnonzero(non_dominated(F)), key=lambda i: history[i].active_genes)
    return [
        SimpleNamespace(
            active_fraction=history[i].active_fraction,
            fitness=history[i].fitness,
            fitness_auroc=None,
            test_accuracy=history[i].fitness + rng.normal(0, 0.02),
            test_auroc=None,
            selected=k == len(idx) // 2,
        )
        for k, i in enumerate(idx)
    ]


def _points(ax) -> np.ndarray:
    """Display coordinates of every data point of ``ax``: scatter offsets and line vertices."""
    pts = []
    for coll in ax.collections:
        offsets = np.asarray(coll.get_offsets())
        if len(offsets) and offsets.ndim == 2:
            pts.append(coll.get_offset_transform().transform(offsets))
    for line in ax.lines:
        xy = np.asarray(line.get_xydata(), dtype=float)
        xy = xy[np.isfinite(xy).all(axis=1)]
        if len(xy):
            pts.append(line.get_transform().transform(xy))
    return np.concatenate(pts) if pts else np.zeros((0, 2))


def legend_collisions(fig) -> list[str]:
    """Data points (and bars) under any legend of ``fig``, described."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    legends += list(fig.legends)
    found = []
    for legend in legends:
        box = legend.get_window_extent(renderer)
        for ax in fig.axes:
            for x, y in _points(ax):
                if box.x0 <= x <= box.x1 and box.y0 <= y <= box.y1:
                    found.append(f"point ({x:.0f}, {y:.0f}) under a legend of {ax.get_title()!r}")
            for patch in ax.patches:
                if patch.get_window_extent(renderer).overlaps(box):
                    found.append(f"bar under a legend of {ax.get_title()!r}")
    return found


def _render_all(tmp_path):
    """Every figure type, from made-up data: {name: path}."""
    from evoprune.analysis.channels import ChannelFrequency
    from evoprune.compare.baselines import METHOD_LABELS
    from evoprune.compare.curves import CURVE_LABELS, plot_curves
    from evoprune.compare.tables import plot_accuracy_vs_active, plot_convergence_runs
    from evoprune.plots.analysis import (
        plot_added,
        plot_channels,
        plot_cka,
        plot_heatmaps,
        plot_removed,
    )
    from evoprune.plots.run import plot_confusion, plot_convergence, plot_front, plot_hypervolume

    history = _history()
    front = _front(history)
    out = {}
    out["convergence"] = plot_convergence(history, tmp_path / "convergence.png", title="t")
    out["pareto"] = plot_front(history, front, 0.85, tmp_path / "pareto.png", title="t")
    out["hypervolume"] = plot_hypervolume(
        history, tmp_path / "hypervolume.png", title="t", population=30
    )
    out["confusion"] = plot_confusion(
        {"evolved": [[30, 5], [4, 25]], "not pruned": [[31, 4], [6, 23]]},
        ["a", "b"],
        tmp_path / "confusion.png",
    )
    rows = [
        {
            "encoding": enc,
            "method": m,
            "run": k,
            "test_accuracy": float(0.75 + rng.normal(0, 0.015)),
            "active_fraction": 1.0 if m == "not_pruned" else float(rng.uniform(0.05, 0.9)),
        }
        for enc in ("fs", "fc1", "fc2", "both")
        for m in ["evoprune", *METHOD_LABELS]
        for k in range(5)
    ]
    out["accuracy_vs_active"] = plot_accuracy_vs_active(rows, tmp_path / "avsa.png", "t")
    curves = [
        (k, k, ([r.index for r in history], [r.best_fitness - 0.01 * k for r in history]))
        for k in range(5)
    ]
    out["convergence_runs"] = plot_convergence_runs(curves, tmp_path / "conv_runs.png", "t")
    crows = [
        {
            "encoding": enc,
            "method": m,
            "density": d,
            "active_fraction": d,
            "test_accuracy": 0.7 + 0.1 * d + 0.01 * k,
        }
        for enc in ("fs", "fc1")
        for m in CURVE_LABELS
        for d in (0.05, 0.1, 0.25, 0.5, 1.0)
        for k in range(2)
    ]
    evolved = [
        {"encoding": "fs", "kind": "ssga", "active_fraction": 0.3, "test_accuracy": 0.79},
        {"encoding": "fc1", "kind": "ssga", "active_fraction": 0.4, "test_accuracy": 0.78},
    ]
    out["curves"] = plot_curves(crows, evolved, tmp_path / "curves.png", ["fs", "fc1"], "t")
    cka = [
        SimpleNamespace(measure=m, layer=layer, against=a, hamming=3, cka=float(rng.uniform()))
        for m in ("kernel_rbf_weights", "linear_activations")
        for layer in ("fc", "out")
        for a in ("nearest", "not_pruned")
    ]
    out["cka"] = plot_cka(cka, tmp_path / "cka.png", "t")
    removed = [
        SimpleNamespace(
            variant=v, test_accuracy=0.8, reference_test_accuracy=0.82, active_fraction=0.3
        )
        for v in ("all classes", "without a", "without b", "without c")
    ]
    out["removed"] = plot_removed(removed, tmp_path / "removed.png", "t")
    added = [
        SimpleNamespace(
            fraction=f,
            test_accuracy=0.7 + 0.1 * f,
            reference_test_accuracy=0.72 + 0.1 * f,
            class_recall=f,
            active_fraction=0.3,
            class_name="a",
        )
        for f in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    ]
    out["added"] = plot_added(added, tmp_path / "added.png", "t")
    pictures = rng.uniform(size=(3, 32, 32, 3))
    cams = {"evolved": rng.uniform(size=(3, 7, 7)), "not pruned": rng.uniform(size=(3, 7, 7))}
    hrows = [SimpleNamespace(true_class="a", evolved_prediction="a", not_pruned_prediction="b")] * 3
    out["heatmaps"] = plot_heatmaps(pictures, cams, hrows, tmp_path / "heatmaps.png", "t")
    masks = (rng.uniform(size=(3, 300)) < 0.6).astype(int)
    masks[:, :120] = 1  # 120 channels every run keeps: agreement beyond chance
    freq = ChannelFrequency(["r0", "r1", "r2"], masks.sum(axis=0), masks.mean(axis=1))
    out["channels"] = plot_channels(freq, tmp_path / "channels.png", "t")
    return out


def test_every_figure_keeps_its_legends_off_the_data_in_one_style(tmp_path, figures):
    paths = _render_all(tmp_path)
    assert all(p.stat().st_size > 5000 for p in paths.values())
    assert len(figures) == len(paths)
    for name, fig in zip(paths, figures):
        assert legend_collisions(fig) == [], name
        ax = fig.axes[0]
        assert not ax.spines["top"].get_visible(), f"{name} is not drawn in the one style"


def test_every_plotting_function_runs_in_the_style():
    import evoprune.compare.curves as c
    import evoprune.compare.tables as cr
    import evoprune.plots.analysis as a
    import evoprune.plots.run as r

    functions = [getattr(m, n) for m in (a, c, cr, r) for n in dir(m) if n.startswith("plot_")]
    assert len(functions) >= 12
    assert all(getattr(f, "evoprune_styled", False) for f in functions)


def test_the_check_catches_a_legend_over_points():
    from evoprune.plots import pyplot

    plt = pyplot()
    fig, ax = plt.subplots()
    ax.scatter(np.linspace(0, 1, 50), np.linspace(0, 1, 50), label="points")
    ax.scatter([0.95], [0.05], label="another")
    ax.legend(loc="center")
    try:
        assert legend_collisions(fig)
    finally:
        plt.close(fig)


def test_convergence_of_a_two_objective_search_follows_the_selected_head(figures, tmp_path):
    """The old figure followed the most accurate head while another was shipped."""
    from evoprune import EvoPruneClassifier
    from evoprune.plots.run import plot_convergence
    from evoprune.runs.front import pareto_front, selection_path

    X = rng.normal(size=(150, 24)).astype(np.float32)
    y = (X[:, :3].sum(axis=1) > 0).astype(int)
    # the paper's start and operators: this search's shipped head is not its most accurate
    clf = EvoPruneClassifier(
        hidden_size=8,
        population=6,
        evaluations=30,
        objectives=("accuracy", "size"),
        init="random",
        variation="paper",
    ).fit(X, y)
    search = clf.search_
    from evoprune.runs.evolve import Evolved

    n_score = int(round(0.2 * len(y)))  # the validation split
    evolved = SimpleNamespace(
        result=search, problem=SimpleNamespace(folds=[SimpleNamespace(y_score=[0] * n_score)])
    )
    rule = "smallest-within:10"
    idx, pick = pareto_front(evolved, rule)
    path = selection_path(search.history, ("accuracy", "size"), rule, n_score)
    assert path[-1] == idx[pick]  # at the end it is the head the run ships
    last, shipped = search.history[-1], search.history[path[-1]]
    # the old line (best fitness so far) ends elsewhere
    assert (shipped.fitness, shipped.active_fraction) != (
        last.best_fitness,
        last.best_active_fraction,
    )
    plot_convergence(
        search.history, tmp_path / "c.png", followed=path, followed_label="selected so far"
    )
    (line,) = [ln for ln in figures[-1].axes[0].lines if ln.get_label() == "selected so far"]
    assert list(line.get_ydata()) == [search.history[j].fitness for j in path]
    assert Evolved  # the real type the runs use


def test_pareto_keeps_held_out_accuracy_off_the_fitness_axis_and_unjoined(figures, tmp_path):
    from evoprune.plots.run import plot_front

    history = _history()
    front = _front(history)
    plot_front(history, front, 0.85, tmp_path / "p.png")
    fig = figures[-1]
    fit_ax, test_ax = fig.axes[:2]
    held_out = {round(m.test_accuracy, 9) for m in front}
    on_fit = {round(float(v), 9) for c in fit_ax.collections for _, v in c.get_offsets()}
    assert not held_out & on_fit  # not on the fitness axis
    for line in test_ax.lines:  # no line through the held-out points (only the reference)
        assert len(set(line.get_ydata())) == 1
    assert "held-out" in test_ax.get_ylabel() and "fitness" in fit_ax.get_ylabel()
    (step,) = [ln for ln in fit_ax.lines if ln.get_drawstyle().startswith("steps")]
    assert list(step.get_ydata()) == [m.fitness for m in front]


def test_hypervolume_marks_the_first_population(figures, tmp_path):
    from evoprune.plots.run import plot_hypervolume

    plot_hypervolume(_history(), tmp_path / "h.png", population=30)
    ax = figures[-1].axes[0]
    (span,) = [p for p in ax.patches if "first population" in p.get_label()]
    x0, x1 = span.get_x(), span.get_x() + span.get_width()
    assert (x0, x1) == (0.5, 30.5)


def test_accuracy_vs_active_uses_few_colours_one_marker_one_panel_per_encoding(figures, tmp_path):
    from evoprune.compare.baselines import METHOD_LABELS
    from evoprune.compare.tables import plot_accuracy_vs_active

    rows = [
        {"encoding": e, "method": m, "test_accuracy": 0.8, "active_fraction": 0.5}
        for e in ("fs", "fc1", "fc2")
        for m in ["evoprune", *METHOD_LABELS]
    ]
    plot_accuracy_vs_active(rows, tmp_path / "a.png")
    fig = figures[-1]
    panels = [ax for ax in fig.axes if ax.collections]
    assert [ax.get_title() for ax in panels] == ["fs", "fc1", "fc2"]
    colours = {
        tuple(np.round(c.get_facecolor()[0][:3], 3)) for ax in panels for c in ax.collections
    }
    assert len(colours) <= 5
    paths = {c.get_paths()[0].vertices.tobytes() for ax in panels for c in ax.collections}
    assert len(paths) == 1  # one marker


def test_channels_right_panel_is_not_every_bar_at_the_maximum(figures, tmp_path):
    from evoprune.analysis.channels import ChannelFrequency
    from evoprune.plots.analysis import plot_channels

    masks = (rng.uniform(size=(3, 400)) < 0.5).astype(int)
    masks[:, :100] = 1
    freq = ChannelFrequency(["a", "b", "c"], masks.sum(axis=0), masks.mean(axis=1))
    plot_channels(freq, tmp_path / "ch.png")
    right = figures[-1].axes[1]
    heights = [p.get_height() for p in right.patches if p.get_label() != "chance"]
    heights = [h for h in heights if h is not None]
    expected = freq.observed() - freq.expected()
    assert np.allclose(sorted(heights)[-len(expected) :], sorted(expected)) or np.allclose(
        [p.get_height() for p in right.containers[0]], expected
    )
    assert len({round(h, 6) for h in heights}) > 1
