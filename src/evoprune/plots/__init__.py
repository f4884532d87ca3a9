"""Every figure evoprune draws, in one style, and the one way to get matplotlib.

:func:`pyplot` (matplotlib without a display), :func:`styled` (the one style every figure
function runs in), :data:`COLORS` (colours by role), :func:`legend_outside` and
:func:`save_figure` (written atomically, then freed) are public here;
:mod:`evoprune.plots.run` draws a run's figures and :mod:`evoprune.plots.analysis` the
analyses'; the comparison's figures (``compare``) use the same helpers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

from evoprune.io import atomic_write

F = TypeVar("F", bound=Callable[..., Any])


#: The one visual style of evoprune's figures: every plotting function runs inside it
#: (:func:`styled`), so fonts, grid, frame and colours match from figure to figure.
STYLE = {
    "figure.dpi": 120,
    "savefig.dpi": 120,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.6,
}

#: Colours by role (Okabe-Ito, readable by colour-blind readers), the same in every figure.
COLORS = {
    "evolved": "#D55E00",  # the evolved / shipped head
    "reference": "#222222",  # the not-pruned head
    "fitness": "#0072B2",  # values on the fitness split
    "heldout": "#E69F00",  # values on held-out images
    "evaluated": "#B0B0B0",  # every evaluated head
    "green": "#009E73",
    "purple": "#CC79A7",
    "sky": "#56B4E9",
}


def pyplot():
    """matplotlib's pyplot without a display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _style() -> dict:
    from cycler import cycler

    order = ("fitness", "evolved", "green", "heldout", "purple", "sky", "reference")
    return {**STYLE, "axes.prop_cycle": cycler(color=[COLORS[k] for k in order])}


def styled(plot: F) -> F:
    """Run the figure function ``plot`` in :data:`STYLE` (matplotlib's settings are restored
    after it, so a user's own figures are left alone)."""

    @functools.wraps(plot)
    def wrapper(*args, **kwargs):
        with pyplot().rc_context(_style()):
            return plot(*args, **kwargs)

    wrapper.evoprune_styled = True  # type: ignore[attr-defined]
    return cast(F, wrapper)


def legend_outside(ax, handles=None, labels=None, where: str = "right", **kwargs):
    """The legend of ``ax`` outside its data area: to the right of the axes (``where="right"``)
    or under its x-axis label (``"below"``), so no point is ever hidden under it."""
    if handles is None:
        handles, labels = ax.get_legend_handles_labels()
    if where == "below":
        place = dict(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=kwargs.pop("ncol", 3))
    else:
        place = dict(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    if labels is None:
        return ax.legend(handles=handles, **place, **kwargs)
    return ax.legend(handles, labels, **place, **kwargs)


def save_figure(fig, ax, path: str | Path, title: str = "") -> Path:
    """Title ``ax``, write ``fig`` as a PNG at ``path`` atomically (legends outside the axes
    included), and free it."""
    import matplotlib.pyplot as plt

    if title:
        ax.set_title(title)
    fig.tight_layout()
    try:
        return atomic_write(
            path, lambda tmp: fig.savefig(tmp, format="png", bbox_inches="tight", pad_inches=0.1)
        )
    finally:
        plt.close(fig)
