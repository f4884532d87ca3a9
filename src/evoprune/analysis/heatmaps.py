"""What the kept features look at: Grad-CAM through the frozen backbone's last feature map and
the compact head, for a few held-out images per class, evolved head next to not-pruned.

Grad-CAM weighs each channel k of the last feature map A (C x h x w) by the mean over the map
of the gradient of the class score, and keeps the positive part of the weighted sum. The
features are the spatial mean of A, so that gradient is the same at every position: the
weight of channel k is (1 / hw) * d score / d feature_k, the head's gradient at the image's
feature vector. A channel that feature selection dropped has weight 0, so an fs head's map
shows only what its kept channels respond to. One CNN pass per image serves both heads.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from evoprune.analysis.context import AnalysisContext
from evoprune.model.head import CompactHead
from evoprune.runs.store import write_records

log = logging.getLogger(__name__)

HEATMAP_PLOT = "heatmaps.png"
HEATMAP_FILE = "heatmaps.csv"


def grad_cam(maps: torch.Tensor, head: CompactHead, target: torch.Tensor) -> np.ndarray:
    """(N, h, w) Grad-CAM maps of class ``target`` (N class indices) for feature maps ``maps``
    (N, C, h, w) whose spatial mean is the head's input; not normalised."""
    maps = maps.detach().float()
    features = maps.mean(dim=(2, 3)).requires_grad_(True)
    with torch.enable_grad():
        scores = head(features).gather(1, target.view(-1, 1)).sum()
        (grad,) = torch.autograd.grad(scores, features)
    weights = grad / (maps.shape[2] * maps.shape[3])  # the gradient's mean over the map
    return torch.relu(torch.einsum("nc,nchw->nhw", weights, maps)).numpy()


def pick_images(labels: np.ndarray, test_idx: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Up to ``per_class`` held-out images of each class (drawn with ``seed``), class by class."""
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(labels):
        own = test_idx[labels[test_idx] == c]
        picked.extend(sorted(rng.choice(own, size=min(per_class, len(own)), replace=False)))
    return np.asarray(picked, dtype=np.int64)


@dataclass
class HeatmapRow:
    """One image: its class, each head's prediction and how alike the two maps are."""

    image: str
    true_class: str
    evolved_prediction: str
    not_pruned_prediction: str
    map_correlation: float  # Pearson correlation of the two heads' maps over the positions


def _inputs(ctx: AnalysisContext, idx: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
    """The images' network inputs and their pictures (H, W, 3 in [0, 1]) for display."""
    from evoprune.backbones import get_backbone
    from evoprune.data import open_rgb

    prep = get_backbone(ctx.cfg.backbone).preprocessing
    batch = np.stack([prep(open_rgb(ctx.data.paths[i])) for i in idx])
    pictures = batch.transpose(0, 2, 3, 1) * np.asarray(prep.std) + np.asarray(prep.mean)
    if prep.channels == "BGR":
        pictures = pictures[..., ::-1]
    return torch.as_tensor(batch), np.clip(pictures, 0.0, 1.0)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    denominator = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denominator) if denominator > 0 else float("nan")


def heatmap_grid(ctx: AnalysisContext, per_class: int = 2) -> list[HeatmapRow]:
    """Grad-CAM of ``per_class`` held-out images per class for the evolved and the not-pruned
    head (of each image's true class), as one grid: ``analysis/heatmaps.png`` (rows: image,
    evolved, not pruned) and ``analysis/heatmaps.csv``."""
    from evoprune.backbones import get_backbone
    from evoprune.plots.analysis import plot_heatmaps

    data = ctx.data
    idx = pick_images(data.labels, data.test_idx, per_class, ctx.cfg.seed)
    batch, pictures = _inputs(ctx, idx)
    body = get_backbone(ctx.cfg.backbone).feature_maps()
    with torch.inference_mode():
        maps = torch.cat([body(batch[i : i + 4]) for i in range(0, len(batch), 4)])
    maps = maps.clone()  # a normal tensor again, for autograd through the heads
    target = torch.as_tensor(data.labels[idx], dtype=torch.int64)
    heads = {"evolved": ctx.run.head(), "not pruned": ctx.run.head(reference=True)}
    cams, predictions = {}, {}
    for name, head in heads.items():
        cams[name] = grad_cam(maps, head, target)
        with torch.no_grad():
            predictions[name] = head(maps.mean(dim=(2, 3))).argmax(dim=1).numpy()
    rows = [
        HeatmapRow(
            image=Path(data.paths[i]).name,
            true_class=data.classes[data.labels[i]],
            evolved_prediction=data.classes[predictions["evolved"][k]],
            not_pruned_prediction=data.classes[predictions["not pruned"][k]],
            map_correlation=_correlation(cams["evolved"][k], cams["not pruned"][k]),
        )
        for k, i in enumerate(idx)
    ]
    _write_rows(ctx, rows)
    r = ctx.run.result
    plot_heatmaps(
        pictures,
        cams,
        rows,
        ctx.out / HEATMAP_PLOT,
        title=f"{r.dataset} · {r.encoding} · {r.backbone} · Grad-CAM of the true class",
    )
    return rows


def _write_rows(ctx: AnalysisContext, rows: list[HeatmapRow]) -> None:
    write_records(ctx.out / HEATMAP_FILE, rows)
