"""Plots and tables of runs, written atomically; matplotlib without a display."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .io import atomic_write
from .search import EvaluationRecord


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


def plot_convergence(history: Sequence[EvaluationRecord], path: str | Path,
                     title: str = "") -> Path:
    """Each evaluation's fitness and the best so far against evaluations, with the active
    fraction of the best on a second axis (like the paper's convergence figures)."""
    plt = _pyplot()
    idx = [r.index for r in history]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    ax.scatter(idx, [r.fitness for r in history], s=8, alpha=0.45, color="tab:blue",
               label="evaluation fitness")
    ax.step(idx, [r.best_fitness for r in history], where="post", color="tab:red", lw=2,
            label="best so far")
    ax.set_xlabel("evaluations")
    ax.set_ylabel("fitness (accuracy)")
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    ax2.plot(idx, [r.best_active_fraction for r in history], color="tab:green", lw=1,
             ls="--", label="active fraction of best")
    ax2.set_ylabel("active fraction of best")
    ax2.set_ylim(0, 1.02)
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="lower right", fontsize=8)
    return save_figure(fig, ax, path, title)
