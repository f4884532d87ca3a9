"""Plots and tables of runs, written atomically; matplotlib without a display."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from evoprune.io import atomic_write
from evoprune.search import EvaluationRecord


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, ax, path: str | Path, title: str = "") -> Path:
    """Title ``ax``, write ``fig`` as a PNG at ``path`` atomically, and free it."""
    import matplotlib.pyplot as plt

    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        plt.close(fig)


def plot_convergence(
    history: Sequence[EvaluationRecord], path: str | Path, title: str = ""
) -> Path:
    """Each evaluation's fitness and the best so far against evaluations, with the active
    fraction of the best on a second axis (like the paper's convergence figures)."""
    plt = _pyplot()
    idx = [r.index for r in history]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    ax.scatter(
        idx,
        [r.fitness for r in history],
        s=8,
        alpha=0.45,
        color="tab:blue",
        label="evaluation fitness",
    )
    ax.step(
        idx,
        [r.best_fitness for r in history],
        where="post",
        color="tab:red",
        lw=2,
        label="best so far",
    )
    ax.set_xlabel("evaluations")
    ax.set_ylabel("fitness (accuracy)")
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    ax2.plot(
        idx,
        [r.best_active_fraction for r in history],
        color="tab:green",
        lw=1,
        ls="--",
        label="active fraction of best",
    )
    ax2.set_ylabel("active fraction of best")
    ax2.set_ylim(0, 1.02)
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="lower right", fontsize=8)
    return save_figure(fig, ax, path, title)


def plot_front(
    history: Sequence[EvaluationRecord],
    front: Sequence,
    reference_accuracy: float,
    path: str | Path,
    title: str = "",
) -> Path:
    """Accuracy against % active: every evaluated head and the front on the fitness split, the
    front's heads retrained and scored on held-out images, the selected head and the
    not-pruned head. With OOD AUROC measured, a second panel shows it against % active."""
    plt = _pyplot()
    with_ood = any(m.test_auroc is not None for m in front)
    fig, axes = plt.subplots(
        1, 2 if with_ood else 1, figsize=(11 if with_ood else 7, 4.5), dpi=120, squeeze=False
    )
    ax = axes[0, 0]
    ax.scatter(
        [100 * r.active_fraction for r in history],
        [r.fitness for r in history],
        s=9,
        color="0.65",
        alpha=0.6,
        label="evaluated heads (fitness split)",
    )
    xs = [100 * m.active_fraction for m in front]
    # a front over three objectives is no curve in two of them: points only
    style = "-" if all(m.fitness_auroc is None for m in front) else ""
    ax.plot(
        xs,
        [m.fitness for m in front],
        "o" + style,
        color="tab:blue",
        ms=4,
        label="front (fitness split)",
    )
    ax.plot(
        xs,
        [m.test_accuracy for m in front],
        "s" + style.replace("-", "--"),
        color="tab:orange",
        ms=4,
        label="front (held-out test)",
    )
    chosen = [m for m in front if m.selected]
    ax.scatter(
        [100 * m.active_fraction for m in chosen],
        [m.test_accuracy for m in chosen],
        marker="*",
        s=220,
        color="tab:red",
        zorder=5,
        label="selected (held-out)",
    )
    ax.axhline(
        reference_accuracy,
        color="k",
        ls=":",
        lw=1.2,
        label=f"not pruned (held-out) {reference_accuracy:.3f}",
    )
    ax.set_xlabel("% active genes")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    if with_ood:
        ax2 = axes[0, 1]
        ax2.scatter(
            [100 * r.active_fraction for r in history if r.auroc is not None],
            [r.auroc for r in history if r.auroc is not None],
            s=9,
            color="0.65",
            alpha=0.6,
            label="evaluated heads (fitness split)",
        )
        ax2.plot(
            xs,
            [m.test_auroc for m in front],
            "s" + style.replace("-", "--"),
            color="tab:orange",
            ms=4,
            label="front (held-out)",
        )
        ax2.scatter(
            [100 * m.active_fraction for m in chosen],
            [m.test_auroc for m in chosen],
            marker="*",
            s=220,
            color="tab:red",
            zorder=5,
            label="selected",
        )
        ax2.set_xlabel("% active genes")
        ax2.set_ylabel("OOD AUROC")
        ax2.set_xlim(0, 100)
        ax2.grid(alpha=0.3)
        ax2.legend(fontsize=7, loc="lower right")
    return save_figure(fig, ax, path, title)


def plot_hypervolume(
    history: Sequence[EvaluationRecord], path: str | Path, title: str = ""
) -> Path:
    """Hypervolume of every head evaluated so far against evaluations."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    ax.plot([r.index for r in history], [r.hypervolume for r in history], color="tab:purple")
    ax.set_xlabel("evaluations")
    ax.set_ylabel("hypervolume (reference point 1)")
    ax.grid(alpha=0.3)
    return save_figure(fig, ax, path, title)


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

    plt = _pyplot()
    shown = {name: np.asarray(m, dtype=float) for name, m in matrices.items() if m is not None}
    n = len(classes)
    side = max(3.2, 0.55 * n + 1.6)
    fig, axes = plt.subplots(
        1,
        len(shown),
        figsize=(side * len(shown) + 1.2, side + 0.6),
        dpi=120,
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
        ax.set_xticks(range(n), [str(c) for c in classes], rotation=45, ha="right", fontsize=font)
        ax.set_yticks(range(n), [str(c) for c in classes] if panel == 0 else [], fontsize=font)
        ax.set_xlabel("predicted class")
        if panel == 0:
            ax.set_ylabel("true class")
    if image is not None:
        fig.colorbar(image, ax=list(axes[0]), shrink=0.8, label="share of the true class")
    if title:
        fig.suptitle(title, fontsize=10)
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", bbox_inches="tight"))
    finally:
        plt.close(fig)
