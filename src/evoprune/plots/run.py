"""A run's figures: convergence, the front, its hypervolume, confusion matrices."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from evoprune.io import atomic_write
from evoprune.plots import COLORS, legend_outside, pyplot, save_figure, styled
from evoprune.search import EvaluationRecord


@styled
def plot_convergence(
    history: Sequence[EvaluationRecord],
    path: str | Path,
    title: str = "",
    *,
    followed: Sequence[int] | None = None,
    followed_label: str = "best so far",
    shipped: int | None = None,
) -> Path:
    """Each evaluation's fitness and the followed head's against evaluations, with the
    followed head's active fraction on a second axis (like the paper's convergence figures).

    ``followed[i]`` is the history position of the head followed after evaluation ``i``
    (default: the best by fitness so far); a multi-objective run follows the head its
    selection rule picks from the front so far, the head it ships. ``shipped`` (a history
    position) is marked with a star."""
    plt = pyplot()
    idx = [r.index for r in history]
    if followed is None:
        fit = [r.best_fitness for r in history]
        act = [r.best_active_fraction for r in history]
    else:
        fit = [history[j].fitness for j in followed]
        act = [history[j].active_fraction for j in followed]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.scatter(
        idx,
        [r.fitness for r in history],
        s=8,
        alpha=0.6,
        color=COLORS["evaluated"],
        label="each evaluation's fitness",
    )
    ax.step(idx, fit, where="post", color=COLORS["evolved"], lw=2, label=followed_label)
    if shipped is not None:
        r = history[shipped]
        ax.scatter(
            [r.index],
            [r.fitness],
            marker="*",
            s=180,
            color=COLORS["evolved"],
            edgecolor="black",
            linewidth=0.6,
            zorder=5,
            label="shipped head",
        )
    ax.set_xlabel("evaluations")
    ax.set_ylabel("fitness (accuracy on the fitness split)")
    _active_fraction_axis(ax, idx, act)
    return save_figure(fig, ax, path, title)


def _active_fraction_axis(ax, idx: list, act: list) -> None:
    """The followed head's active fraction (dashed) on a second axis; one legend for both."""
    ax2 = ax.twinx()
    ax2.spines["right"].set_visible(True)
    ax2.grid(False)
    ax2.step(
        idx, act, where="post", color=COLORS["fitness"], lw=1, ls="--", label="its active fraction"
    )
    ax2.set_ylabel("active fraction (dashed)")
    ax2.set_ylim(0, 1.02)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    legend_outside(ax, h1 + h2, l1 + l2, where="below", ncol=2)


@styled
def plot_front(
    history: Sequence[EvaluationRecord],
    front: Sequence,
    reference_accuracy: float,
    path: str | Path,
    title: str = "",
) -> Path:
    """Two panels against % active, one per set of images: on the fitness split every
    evaluated head and the front's fitness as a step line (the best fitness reachable at each
    size); on held-out test images each front head's accuracy as a separate marker (they are
    no front there, so they are not joined), the selected head and the not-pruned head. With
    OOD AUROC measured, a third panel shows each front head's held-out AUROC."""
    plt = pyplot()
    with_ood = any(m.test_auroc is not None for m in front)
    n = 3 if with_ood else 2
    fig, axes = plt.subplots(n, 1, figsize=(7.5, 2.9 * n + 0.4), sharex=True, squeeze=False)
    fit_ax, test_ax = axes[0, 0], axes[1, 0]
    _fitness_panel(fit_ax, history, front)
    _test_panel(test_ax, front, reference_accuracy)
    if with_ood:
        ood_ax = axes[2, 0]
        _front_markers(ood_ax, front, "test_auroc", zorder=None)
        ood_ax.set_ylabel("OOD AUROC\n(held-out)")
        legend_outside(ood_ax)
    axes[-1, 0].set_xlabel("% active genes")
    axes[-1, 0].set_xlim(0, 100)
    if title:
        fig.suptitle(title)
    return save_figure(fig, fit_ax, path)


def _fitness_panel(ax, history: Sequence[EvaluationRecord], front: Sequence) -> None:
    """Every evaluated head, the front (a step line where it is one) and the selected head on
    the fitness split."""
    xs = [100 * m.active_fraction for m in front]
    ax.scatter(
        [100 * r.active_fraction for r in history],
        [r.fitness for r in history],
        s=9,
        color=COLORS["evaluated"],
        alpha=0.7,
        label="evaluated heads",
    )
    # a front over three objectives is no curve in two of them: its points only
    if all(m.fitness_auroc is None for m in front):
        ax.step(xs, [m.fitness for m in front], where="post", color=COLORS["fitness"])
    ax.scatter(
        xs, [m.fitness for m in front], s=22, color=COLORS["fitness"], zorder=4, label="front"
    )
    _star(ax, front, "fitness")
    ax.set_ylabel("fitness\n(fitness split)")
    ax.set_title("on the fitness split (what the search saw)", loc="left", fontsize=9)
    legend_outside(ax)


def _test_panel(ax, front: Sequence, reference_accuracy: float) -> None:
    """Each front head retrained and scored on held-out images, and the not-pruned head."""
    _front_markers(ax, front, "test_accuracy", zorder=4)
    ax.axhline(
        reference_accuracy,
        color=COLORS["reference"],
        ls=":",
        lw=1.2,
        label=f"not pruned\n({reference_accuracy:.3f})",
    )
    ax.set_ylabel("accuracy\n(held-out test)")
    ax.set_title("retrained, on held-out test images (not seen)", loc="left", fontsize=9)
    legend_outside(ax)


def _front_markers(ax, front: Sequence, value: str, zorder: int | None) -> None:
    """The front heads' held-out ``value`` as separate squares, then the selected head."""
    ax.scatter(
        [100 * m.active_fraction for m in front],
        [getattr(m, value) for m in front],
        s=26,
        marker="s",
        color=COLORS["heldout"],
        **({} if zorder is None else {"zorder": zorder}),
        label="front heads",
    )
    _star(ax, front, value)


def _star(ax, front: Sequence, value: str) -> None:
    """The selected head's ``value``, as a star over the other points."""
    chosen = [m for m in front if m.selected]
    ax.scatter(
        [100 * m.active_fraction for m in chosen],
        [getattr(m, value) for m in chosen],
        marker="*",
        s=200,
        color=COLORS["evolved"],
        edgecolor="black",
        linewidth=0.6,
        zorder=5,
        label="selected",
    )


@styled
def plot_hypervolume(
    history: Sequence[EvaluationRecord],
    path: str | Path,
    title: str = "",
    population: int | None = None,
) -> Path:
    """Hypervolume of every head evaluated so far against evaluations; the first
    ``population`` evaluations (the random first population) shaded."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    if population:
        ax.axvspan(
            0.5,
            population + 0.5,
            color=COLORS["evaluated"],
            alpha=0.35,
            lw=0,
            label=f"first population ({population} random heads)",
        )
    ax.plot(
        [r.index for r in history],
        [r.hypervolume for r in history],
        color=COLORS["purple"],
        label="hypervolume so far",
    )
    ax.set_xlabel("evaluations")
    ax.set_ylabel("hypervolume (reference point 1)")
    legend_outside(ax, where="below", ncol=2)
    return save_figure(fig, ax, path, title)


@styled
def plot_confusion(
    matrices: Mapping[str, Sequence[Sequence[int]] | None],
    classes: Sequence[str],
    path: str | Path,
    title: str = "",
) -> Path:
    """Confusion matrices side by side (one panel per entry of ``matrices``, e.g. the evolved
    and the not-pruned head), true classes as rows: each cell is coloured by its share of the
    true class and shows that share with the count below it."""
    import numpy as np

    plt = pyplot()
    shown = {name: np.asarray(m, dtype=float) for name, m in matrices.items() if m is not None}
    n = len(classes)
    side = max(3.2, 0.55 * n + 1.6)
    fig, axes = plt.subplots(
        1,
        len(shown),
        figsize=(side * len(shown) + 1.2, side + 0.6),
        squeeze=False,
        layout="constrained",
    )
    font = max(6, 10 - n // 3)
    image = None
    for panel, (ax, (name, counts)) in enumerate(zip(axes[0], shown.items())):
        share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for i, j in np.ndindex(share.shape):
            ax.text(
                j,
                i,
                f"{share[i, j]:.2f}\n({int(counts[i, j])})",
                ha="center",
                va="center",
                fontsize=font,
                color="white" if share[i, j] > 0.6 else "black",
            )
        accuracy = np.trace(counts) / max(counts.sum(), 1)
        ax.set_title(f"{name} (accuracy {accuracy:.3f})", fontsize=9)
        ax.grid(False)
        ax.set_xticks(range(n), [str(c) for c in classes], rotation=45, ha="right", fontsize=font)
        ax.set_yticks(range(n), [str(c) for c in classes] if panel == 0 else [], fontsize=font)
        ax.set_xlabel("predicted class")
        if panel == 0:
            ax.set_ylabel("true class")
    if image is not None:
        fig.colorbar(image, ax=list(axes[0]), shrink=0.8, label="share of the true class")
    if title:
        fig.suptitle(title)
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", bbox_inches="tight"))
    finally:
        plt.close(fig)
