"""The analyses' figures (matplotlib without a display, written atomically)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from evoprune.plots import COLORS, legend_outside, pyplot, save_figure, styled


@styled
def plot_cka(rows: Sequence, path: Path, title: str = "") -> Path:
    """Bars of CKA per layer and measure: the best head against its nearest evaluated
    neighbour and against the not-pruned head."""
    plt = pyplot()
    labels = sorted(
        {(r.measure, r.layer) for r in rows}, key=lambda m: (m[0] != "kernel_rbf_weights", m[1])
    )
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(1.3 * len(labels) + 3, 3.8))
    for k, (against, color) in enumerate(
        (("nearest", COLORS["evolved"]), ("not_pruned", COLORS["reference"]))
    ):
        values = {(r.measure, r.layer): r.cka for r in rows if r.against == against}
        hamming = next((r.hamming for r in rows if r.against == against), 0)
        bars = ax.bar(
            x + (k - 0.5) * 0.38,
            [values.get(m, np.nan) for m in labels],
            width=0.38,
            color=color,
            label=f"{against.replace('_', ' ')} ({hamming} genes away)",
        )
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    names = {
        "kernel_rbf_weights": "weights, RBF",
        "kernel_rbf_weights_common_inputs": "weights of\ncommon inputs",
        "linear_activations": "activations, linear",
    }
    ax.set_xticks(x, [f"{layer}\n{names.get(m, m)}" for m, layer in labels], fontsize=8)
    ax.set_ylim(0, 1.3)
    ax.set_ylabel("CKA with the best head")
    legend_outside(ax, where="below", ncol=2)
    ax.grid(axis="x", visible=False)
    return save_figure(fig, ax, path, title)


@styled
def plot_removed(rows: Sequence, path: Path, title: str = "") -> Path:
    """Held-out accuracy (evolved and not pruned) and % active with each class removed."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(1.2 * len(rows) + 3, 3.8))
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r.test_accuracy for r in rows], 0.4, label="evolved", color=COLORS["evolved"])
    ax.bar(
        x + 0.2,
        [r.reference_test_accuracy for r in rows],
        0.4,
        label="not pruned",
        color=COLORS["reference"],
    )
    ax.set_xticks(x, [r.variant.replace("without ", "without\n") for r in rows], fontsize=8)
    ax.set_ylabel("held-out accuracy")
    ax.set_ylim(0, 1.05)
    right = ax.twinx()
    right.plot(
        x, [100 * r.active_fraction for r in rows], "o-", color=COLORS["fitness"], label="% active"
    )
    right.set_ylabel("% active genes (evolved)")
    right.set_ylim(0, 105)
    right.grid(False)
    right.spines["right"].set_visible(True)
    lines = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    legend_outside(ax, lines, [h.get_label() for h in lines], where="below", ncol=3)
    return save_figure(fig, ax, path, title)


@styled
def plot_added(rows: Sequence, path: Path, title: str = "") -> Path:
    """Accuracy, the added class's recall and % active against the share of its images."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    share = [100 * r.fraction for r in rows]
    ax.plot(
        share,
        [r.test_accuracy for r in rows],
        "o-",
        color=COLORS["evolved"],
        label="held-out accuracy (evolved)",
    )
    ax.plot(
        share,
        [r.reference_test_accuracy for r in rows],
        "s--",
        color=COLORS["reference"],
        label="held-out accuracy (not pruned)",
    )
    ax.plot(
        share,
        [r.class_recall for r in rows],
        "^-",
        color=COLORS["green"],
        label=f"recall of {rows[0].class_name} (evolved)",
    )
    ax.set_xlabel(f"% of {rows[0].class_name}'s training images (0: class left out)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.05)
    right = ax.twinx()
    right.plot(
        share,
        [100 * r.active_fraction for r in rows],
        "o:",
        color=COLORS["fitness"],
        label="% active (right axis)",
    )
    right.set_ylabel("% active genes (evolved)")
    right.set_ylim(0, 105)
    right.grid(False)
    right.spines["right"].set_visible(True)
    lines = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    legend_outside(ax, lines, [h.get_label() for h in lines], where="below", ncol=2)
    return save_figure(fig, ax, path, title)


def _overlay(ax, picture: np.ndarray, cam: np.ndarray) -> None:
    """The picture with the map (upsampled, scaled to its own maximum) over it."""
    import torch

    size = picture.shape[:2]
    up = torch.nn.functional.interpolate(
        torch.as_tensor(cam)[None, None], size=size, mode="bilinear", align_corners=False
    )[0, 0].numpy()
    top = up.max()
    ax.imshow(picture)
    ax.imshow(up / top if top > 0 else up, cmap="jet", alpha=0.45, vmin=0, vmax=1)


@styled
def plot_heatmaps(
    pictures: np.ndarray,
    cams: Mapping[str, np.ndarray],
    rows: Sequence,
    path: Path,
    title: str = "",
) -> Path:
    """One column per image: the image, then each head's Grad-CAM over it."""
    plt = pyplot()
    n = len(pictures)
    fig, axes = plt.subplots(1 + len(cams), n, figsize=(1.7 * n, 1.8 * (1 + len(cams))))
    axes = np.asarray(axes).reshape(1 + len(cams), n)
    for k, row in enumerate(rows):
        axes[0, k].imshow(pictures[k])
        axes[0, k].set_title(row.true_class, fontsize=8)
        predicted = {"evolved": row.evolved_prediction, "not pruned": row.not_pruned_prediction}
        for j, (name, cam) in enumerate(cams.items(), start=1):
            _overlay(axes[j, k], pictures[k], cam[k])
            mark = "ok" if predicted[name] == row.true_class else f"-> {predicted[name]}"
            axes[j, k].set_title(mark, fontsize=7)
    for j, name in enumerate(["image", *cams]):
        axes[j, 0].set_ylabel(name, fontsize=9)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title)
    return save_figure(fig, axes[0, 0], path)


@styled
def plot_channels(freq, path: Path, title: str = "", top: int = 40) -> Path:
    """Left: channels kept in k of R runs, observed against independent draws. Right: how far
    the observed counts are from independent draws (observed minus expected, with the band of
    two standard deviations that chance alone gives): bars outside the band are agreement (or
    disagreement) between runs beyond chance. (The channels kept most often are listed in
    channels.csv: with few runs, many tie at every run and a bar chart of them says nothing.)"""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    R = len(freq.runs)
    k = np.arange(R + 1)
    observed, expected = freq.observed(), freq.expected()
    left.bar(k - 0.2, observed, 0.4, label="observed", color=COLORS["evolved"])
    left.bar(k + 0.2, expected, 0.4, label="independent runs", color=COLORS["evaluated"])
    left.set_xlabel(f"kept in k of {R} fs runs")
    left.set_ylabel("channels")
    left.set_xticks(k)
    legend_outside(left, where="below", ncol=2)
    n = len(freq.kept)
    sd = np.sqrt(expected * np.clip(1 - expected / max(n, 1), 0, 1))
    right.fill_between(
        np.r_[k[0] - 0.5, k, k[-1] + 0.5],
        -2 * np.r_[sd[0], sd, sd[-1]],
        2 * np.r_[sd[0], sd, sd[-1]],
        step="mid",
        color=COLORS["evaluated"],
        alpha=0.45,
        lw=0,
        label="chance (±2 SD of independent runs)",
    )
    diff = observed - expected
    right.bar(
        k,
        diff,
        0.5,
        color=[COLORS["evolved"] if abs(d) > 2 * s_ else COLORS["sky"] for d, s_ in zip(diff, sd)],
        label="observed minus independent",
    )
    right.axhline(0, color=COLORS["reference"], lw=0.8)
    right.set_xticks(k)
    right.set_xlabel(f"kept in k of {R} fs runs")
    right.set_ylabel("channels, observed − expected")
    legend_outside(right, where="below", ncol=2)
    fig.suptitle(title)
    return save_figure(fig, left, path)
