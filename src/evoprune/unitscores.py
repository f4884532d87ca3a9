"""Per-unit scores: how much each input feature or hidden neuron seems worth keeping.

The one owner of the score computations that the rankings (:mod:`evoprune.compare.rankings`)
and the guided search (:mod:`evoprune.search.guided`, through :func:`search_rankings`) use:

- input features: the ANOVA F statistic, mutual information with the class, the size of the
  L1-regularised logistic regression's coefficients, the weight norm of a trained head
  (and, for the comparison's rankings only, ReliefF's weights);
- hidden neurons: the weight norm of a trained head and the variance of each neuron's
  activation.

A score is higher for a unit kept first. Whoever calls decides which data a score sees: the
search gives the fitness split's training part only (never its scoring part, never the held-out
images).
"""

from __future__ import annotations

import logging
import time
import warnings

import numpy as np
import torch

from evoprune.encodings import Encoding, PruneTarget
from evoprune.errors import ConfigError
from evoprune.model.head import CompactHead, TrainerConfig, feature_stats, train_head
from evoprune.search.guided import percentile_ranks, top_k

log = logging.getLogger(__name__)

#: The scores the search starts from and guides its variation by, per kind of unit. ReliefF is
#: not one: with it the benchmark of the search against the rankings (5 seeds x 4 datasets x
#: 4 sizes) won the same 5 cells of 16, -0.09 points on average instead of -0.05, its worst cell
#: -0.50 instead of -0.78, for 0.91 paper evaluations of search time instead of 0.80 (digits
#: 1.12), since the final check computes it again in each of its folds
#: (benchmarks/search_vs_rankings-relieff-rerank.json). Nor is mutual information: it costs
#: 5-7 s a check fold on ELPV's training features (ANOVA F 0.1 s, L1 logistic 0.6 s), and its
#: top-k was the check's honest choice in none of 52 picks (digits, ELPV and textures, 2-20 %).
SEARCH_SCORES = {
    "inputs": ("anova_f", "l1_logistic", "norm_retrained"),
    "neurons": ("norm_retrained", "activation_variance"),
}
#: The L1 logistic regression's inverse strength for the search's scores (features
#: standardised); the comparison's ranking chooses its own on the fitness split.
SEARCH_L1_STRENGTH = 0.1
#: ReliefF's nearest hits and misses per row (fewer when a class has fewer rows).
RELIEFF_NEIGHBORS = 10
#: Rows of the distance matrix ReliefF holds at once (memory: this many x all rows).
RELIEFF_CHUNK = 512

__all__ = [
    "SEARCH_SCORES",
    "activation_variance",
    "filter_scores",
    "fit_l1",
    "gene_per_unit",
    "l1_importance",
    "l1_support",
    "prunes_units",
    "relieff_scores",
    "search_rankings",
    "top_k",
    "unit_norms",
]


def prunes_units(encoding: Encoding) -> bool:
    """Whether the genes switch whole units (features, neurons), which neuron pruning and the
    rankings remove; not connections (the ``edges`` encodings)."""
    return all(t.units != "weights" for t in encoding.prune_targets)


def gene_per_unit(encoding: Encoding) -> bool:
    """Whether ``encoding`` prunes units with one gene per unit, in target order (the layout
    that unit scores and top-k masks are written in)."""
    targets = encoding.prune_targets
    return prunes_units(encoding) and (
        sum(t.size(encoding.n_features, encoding.hidden) for t in targets) == encoding.n_genes
    )


def unit_norms(head: CompactHead, target: PruneTarget) -> torch.Tensor:
    """L2 norm of each unit's weights: an input's outgoing weights in the first layer, or a
    neuron's incoming weights."""
    w = head.linears[target.layer].weight.detach()
    return w.norm(dim=0) if target.units == "inputs" else w.norm(dim=1)


@torch.no_grad()
def activation_variance(head: CompactHead, X: np.ndarray, layer: int) -> np.ndarray:
    """Variance over the rows of ``X`` of each neuron's output (after ReLU) in hidden ``layer``."""
    x = torch.as_tensor(np.asarray(X, dtype=np.float32)).index_select(1, head.feature_index)
    x = (x - head.shift) * head.scale
    for lin in head.linears[: int(layer) + 1]:
        x = torch.relu(lin(x))
    return x.var(dim=0).numpy()


def filter_scores(method: str, X: np.ndarray, y: np.ndarray, seed: int = 0) -> np.ndarray:
    """One score per column of ``X`` (higher: more related to ``y``); constant columns score
    NaN for ANOVA F (ranked last)."""
    from sklearn.feature_selection import f_classif, mutual_info_classif

    if method == "mutual_info":
        return mutual_info_classif(X, y, random_state=int(seed))
    if method == "anova_f":
        with warnings.catch_warnings():  # constant features: 0/0, ranked last
            warnings.simplefilter("ignore")
            return f_classif(X, y)[0]
    raise ConfigError(f"{method!r} is not a filter ranking; use mutual_info or anova_f")


def relieff_scores(
    X: np.ndarray, y: np.ndarray, n_neighbors: int = RELIEFF_NEIGHBORS
) -> np.ndarray:
    """ReliefF weights (Kononenko 1994; scikit-rebate's, for two classes or balanced ones): how
    much more a feature differs between a row and its nearest misses than its nearest hits.

    Features are scaled to [0, 1] by their range; neighbours are the ``n_neighbors`` nearest
    rows of each class by Manhattan distance on the scaled features (at most the smallest
    class's size less one; the row itself excluded, ties to the lower index). A feature's
    weight is the mean over rows of its summed difference to the misses of each other class c,
    weighted P(c) / (1 - P(row's class)), less its summed difference to the hits, divided by
    the number of neighbours taken per class. It sees features that matter only together (an
    XOR of two signs), which a filter scoring one feature at a time cannot. Vectorised (torch's
    Manhattan distances, in float64, then one neighbour a row at a time): ELPV's 2,099 x 1,280
    features take 2-3 s on 2 cores, where scikit-rebate's Python loop takes minutes."""
    X = np.asarray(X, dtype=np.float64)
    _, yi, counts = np.unique(np.asarray(y), return_inverse=True, return_counts=True)
    n = len(yi)
    k = max(1, min(int(n_neighbors), int(counts.min()) - 1))
    lo, span = X.min(axis=0), np.ptp(X, axis=0)
    Z = torch.from_numpy((X - lo) / np.where(span > 0, span, 1.0))
    prior = counts / n
    members = [np.flatnonzero(yi == c) for c in range(len(counts))]
    weights = torch.zeros(X.shape[1], dtype=torch.float64)
    for start in range(0, n, RELIEFF_CHUNK):
        rows = np.arange(start, min(n, start + RELIEFF_CHUNK))
        dist = torch.cdist(Z[rows], Z, p=1).numpy()  # Manhattan, in float64 like scipy's
        dist[np.arange(len(rows)), rows] = np.inf  # never a row's own neighbour
        own = yi[rows]
        near, sign = [], []  # each row's neighbours of every class, and their signed weight
        for c, idx in enumerate(members):
            near.append(idx[np.argsort(dist[:, idx], axis=1, kind="stable")[:, :k]])
            s = np.where(own == c, -1.0, prior[c] / np.maximum(1.0 - prior[own], 1e-12))
            sign.append(np.repeat(s[:, None], k, axis=1))
        neighbours = torch.from_numpy(np.concatenate(near, axis=1))
        signs = torch.from_numpy(np.concatenate(sign, axis=1))
        Zr = Z[rows]
        for j in range(neighbours.shape[1]):  # one neighbour a row at a time: little memory
            weights += signs[:, j] @ (Zr - Z[neighbours[:, j]]).abs()
    return (weights / (n * k)).numpy()


def l1_importance(estimator) -> np.ndarray:
    """Sum over the one-vs-rest models of |coefficient|, per feature."""
    return np.abs(np.vstack([m.coef_ for m in estimator.estimators_])).sum(axis=0)


def fit_l1(X: np.ndarray, y: np.ndarray, C: float, seed: int = 0):
    """One-vs-rest L1 logistic regression (liblinear) on standardised ``X``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    mean, std = feature_stats(X)
    model = LogisticRegression(
        l1_ratio=1.0, C=float(C), solver="liblinear", random_state=int(seed), max_iter=1000
    )
    with warnings.catch_warnings():  # convergence warnings at the weakest strengths
        warnings.simplefilter("ignore")
        return OneVsRestClassifier(model).fit((X - mean) / std, y)


def l1_support(estimator, k: int) -> np.ndarray:
    """The ``k`` features a fitted :func:`fit_l1` model weighs most (SelectFromModel)."""
    from sklearn.feature_selection import SelectFromModel

    select = SelectFromModel(
        estimator,
        prefit=True,
        threshold=-np.inf,
        max_features=int(k),
        importance_getter=l1_importance,
    )
    return select.get_support()


def search_rankings(
    encoding: Encoding,
    X_fit: np.ndarray,
    y_fit: np.ndarray,
    n_classes: int,
    *,
    trainer: str | TrainerConfig = "fast",
    seed: int = 0,
    device: str = "cpu",
) -> dict[str, np.ndarray]:
    """Gene scores for the search, one array of ``encoding.n_genes`` per ranking that applies
    to every layer the encoding prunes (:data:`SEARCH_SCORES`), computed on (``X_fit``,
    ``y_fit``) alone: pass the fitness split's training part, never the data fitness is
    measured on. Each layer's scores are percentile ranks within the layer (gene order), so a
    top-k over the chromosome takes each layer's best units alike. The weight norms and
    activation variances come from a not-pruned head trained on (``X_fit``, ``y_fit``) with
    ``trainer`` and ``seed``. Empty for encodings without one gene per unit."""
    if not gene_per_unit(encoding):
        return {}
    X = np.asarray(X_fit, dtype=np.float32)
    y = np.asarray(y_fit)
    targets = encoding.prune_targets
    kinds = {t.units for t in targets}
    every = SEARCH_SCORES["inputs"] + SEARCH_SCORES["neurons"]
    names = list(dict.fromkeys(m for m in every if all(m in SEARCH_SCORES[k] for k in kinds)))
    t0 = time.perf_counter()
    head: CompactHead | None = None
    if {"norm_retrained", "activation_variance"} & set(names):
        full = encoding.decode(encoding.full())
        head = train_head(
            X, y, full, n_classes, trainer, seed=seed, stats=feature_stats(X), device=device
        ).head
    out: dict[str, np.ndarray] = {}
    for name in names:
        parts = []
        for t in targets:
            if name in ("anova_f", "mutual_info"):
                s = filter_scores(name, X, y, seed)
            elif name == "l1_logistic":
                s = l1_importance(fit_l1(X, y, SEARCH_L1_STRENGTH, seed))
            elif name == "norm_retrained":
                assert head is not None
                s = unit_norms(head, t).numpy()
            else:
                assert head is not None
                s = activation_variance(head, X, t.layer)
            parts.append(percentile_ranks(s))
        out[name] = np.concatenate(parts)
    log.info(
        "unit scores (%s) on %d training rows in %.1f s",
        ", ".join(out),
        len(y),
        time.perf_counter() - t0,
    )
    return out
