"""Centered kernel alignment (CKA): how alike two networks are, as the paper measures robustness.

Two measures, both between 0 (unrelated) and 1 (the same up to the measure's invariances):

- **Kernel CKA of the trained weights** (the paper): an RBF kernel whose width sigma is the
  median distance between the rows, over each layer's weight matrix. Weight matrices of
  pruned heads have different shapes, so each is first put back into the not-pruned shape,
  pruned units' weights zero: exactly the masked dense layer the paper trained (its sparse
  Keras layer multiplies a full kernel by the mask) and that evoprune's compact head equals.
  Rows are the layer's inputs and columns its outputs (Keras' kernel layout, as the paper), so
  the two matrices have the same rows and the kernel compares them row by row. Units line up
  across heads because every head draws its initial weights for the full layer from the run's
  seed and keeps its units' slices (:func:`~evoprune.model.head.build_head`). Rows of units
  that one head pruned are zero there, which weighs on the value; so the same measure is also
  given over the rows both heads keep (``kernel_rbf_weights_common_inputs``): how alike the
  shared units' learned weights are.
- **Linear CKA of the hidden activations** on the held-out images (Kornblith et al., ICML
  2019): compares what the networks compute rather than their weights; it needs no alignment
  of units (invariant to orthogonal transforms and isotropic scaling), so the compact layers
  are compared as they are.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from evoprune.analysis.context import AnalysisContext
from evoprune.encodings import HeadMasks
from evoprune.errors import EvoPruneError
from evoprune.model.head import CompactHead, accuracy
from evoprune.runs.store import write_records
from evoprune.search import EvaluationRecord

log = logging.getLogger(__name__)

CKA_FILE = "cka.csv"
CKA_PLOT = "cka.png"


def _centered_gram(K: np.ndarray) -> np.ndarray:
    """H K H with H = I - 11^T / n (rows and columns centred)."""
    K = K - K.mean(axis=0, keepdims=True)
    return K - K.mean(axis=1, keepdims=True)


def _cka_of_grams(K: np.ndarray, L: np.ndarray) -> float:
    """<HKH, HLH> / (||HKH|| ||HLH||): HSIC normalised; NaN when either Gram is constant."""
    Kc, Lc = _centered_gram(K), _centered_gram(L)
    denominator = np.linalg.norm(Kc) * np.linalg.norm(Lc)
    if denominator <= 1e-12:
        return float("nan")
    return float(np.sum(Kc * Lc) / denominator)


def _as_samples(X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    X, Y = np.asarray(X, np.float64), np.asarray(Y, np.float64)
    if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != Y.shape[0] or X.shape[0] < 2:
        raise EvoPruneError(
            f"CKA compares two matrices with the same rows (samples), at least 2; got shapes "
            f"{X.shape} and {Y.shape}"
        )
    return X, Y


def linear_cka(X: np.ndarray, Y: np.ndarray) -> float:
    """Linear CKA of (n, p) and (n, q) representations of the same n samples:
    ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F) over column-centred X and Y."""
    X, Y = _as_samples(X, Y)
    X = X - X.mean(axis=0)
    Y = Y - Y.mean(axis=0)
    denominator = np.linalg.norm(X.T @ X) * np.linalg.norm(Y.T @ Y)
    if denominator <= 1e-12:
        return float("nan")
    return float(np.linalg.norm(Y.T @ X) ** 2 / denominator)


def _squared_distances(X: np.ndarray) -> np.ndarray:
    sq = np.sum(X * X, axis=1)
    return np.maximum(sq[:, None] + sq[None, :] - 2.0 * X @ X.T, 0.0)


def median_distance(X: np.ndarray) -> float:
    """The median Euclidean distance between distinct rows of ``X`` (pairs at distance 0, such
    as repeated zero rows of pruned units, left out); 0 when all rows are equal."""
    d2 = _squared_distances(np.asarray(X, np.float64))
    upper = d2[np.triu_indices(len(d2), k=1)]
    upper = upper[upper > 1e-12]
    return float(np.sqrt(np.median(upper))) if upper.size else 0.0


def _rbf_gram(X: np.ndarray, sigma: float | None) -> np.ndarray | None:
    sigma = median_distance(X) if sigma is None else float(sigma)
    if sigma <= 0:
        return None
    return np.exp(-_squared_distances(X) / (2.0 * sigma**2))


def rbf_cka(X: np.ndarray, Y: np.ndarray, sigma: float | None = None) -> float:
    """Kernel CKA with RBF kernels exp(-||a - b||^2 / (2 sigma^2)); by default each matrix's
    sigma is its median pairwise distance (:func:`median_distance`). NaN when a matrix has
    all rows equal."""
    X, Y = _as_samples(X, Y)
    K, L = _rbf_gram(X, sigma), _rbf_gram(Y, sigma)
    if K is None or L is None:
        return float("nan")
    return _cka_of_grams(K, L)


def dense_weights(head: CompactHead, masks: HeadMasks) -> list[np.ndarray]:
    """Each layer's weights in the not-pruned shape, (inputs, outputs) as a Keras kernel, with
    zeros where ``masks`` pruned a unit (the masked dense layer the compact head equals)."""
    keep = [np.flatnonzero(masks.features)] + [np.flatnonzero(m) for m in masks.hidden]
    n_classes = head.sizes[-1]
    full = [m.size for m in (masks.features, *masks.hidden)] + [n_classes]
    keep.append(np.arange(n_classes))
    out = []
    for i, layer in enumerate(head.linears):
        W = np.zeros((full[i], full[i + 1]))
        W[np.ix_(keep[i], keep[i + 1])] = layer.weight.detach().numpy().T
        out.append(W)
    return out


def kept_inputs(masks: HeadMasks) -> list[np.ndarray]:
    """For each layer of the head, which of its inputs (rows of :func:`dense_weights`) exist."""
    return [np.asarray(m, dtype=bool) for m in (masks.features, *masks.hidden)]


@torch.no_grad()
def hidden_activations(head: CompactHead, X: np.ndarray) -> list[np.ndarray]:
    """The output of each hidden layer (after ReLU) for full backbone feature vectors ``X``."""
    x = torch.as_tensor(np.asarray(X, np.float32)).index_select(1, head.feature_index)
    x = (x - head.shift) * head.scale
    outputs = []
    for layer in head.layers[:-1]:
        x = torch.relu(layer(x))
        outputs.append(x.numpy().copy())
    return outputs


def nearest_evaluated(history: Sequence[EvaluationRecord], mask: np.ndarray) -> EvaluationRecord:
    """The evaluated mask closest to ``mask`` in Hamming distance, other than ``mask`` itself;
    ties go to the higher fitness, then the earlier evaluation."""
    mask = np.asarray(mask, dtype=np.uint8)
    others = [r for r in history if not np.array_equal(r.mask(), mask)]
    if not others:
        raise EvoPruneError(
            "the search evaluated no mask other than the best one, so it has no neighbour "
            "to compare with; run a search with a larger budget"
        )
    return min(others, key=lambda r: (int(np.sum(r.mask() != mask)), -r.fitness, r.index))


@dataclass
class CKARow:
    """One CKA value: the best head against ``against`` on one layer and measure."""

    against: str  # "nearest" or "not_pruned"
    layer: str
    measure: str  # "kernel_rbf_weights", "..._common_inputs" or "linear_activations"
    cka: float
    hamming: int
    against_test_accuracy: float


def _layer_names(n_layers: int) -> list[str]:
    return [f"fc{i + 1}" for i in range(n_layers - 1)] + ["out"]


def compare_heads(
    best: tuple[CompactHead, HeadMasks],
    other: tuple[CompactHead, HeadMasks],
    X_test: np.ndarray,
) -> list[tuple[str, str, float]]:
    """(layer, measure, CKA) of two trained heads: kernel CKA of each layer's weights and
    linear CKA of each hidden layer's activations on ``X_test``."""
    names = _layer_names(len(best[0].linears))
    rows = []
    common = [a & b for a, b in zip(kept_inputs(best[1]), kept_inputs(other[1]))]
    for name, a, b, both in zip(names, dense_weights(*best), dense_weights(*other), common):
        rows.append((name, "kernel_rbf_weights", rbf_cka(a, b)))
        if not both.all() and both.sum() >= 2:  # the rows both heads keep, zero rows left out
            rows.append((name, "kernel_rbf_weights_common_inputs", rbf_cka(a[both], b[both])))
    acts = zip(names, hidden_activations(best[0], X_test), hidden_activations(other[0], X_test))
    rows += [(name, "linear_activations", linear_cka(a, b)) for name, a, b in acts]
    return rows


def robustness(ctx: AnalysisContext) -> list[CKARow]:
    """The paper's robustness analysis: the best head against (a) the evaluated head nearest
    in Hamming distance, retrained from its mask as the run trained its heads, and (b) the
    not-pruned head. Writes ``analysis/cka.csv`` and ``analysis/cka.png``."""
    data, enc = ctx.data, ctx.encoding
    best_mask = ctx.best_mask
    best = (ctx.run.head(), enc.decode(best_mask))
    near = nearest_evaluated(ctx.history(), best_mask)
    log.info(
        "CKA: nearest evaluated mask is evaluation %d, %d genes away (fitness %.4f)",
        near.index,
        int(np.sum(near.mask() != best_mask)),
        near.fitness,
    )
    others = {
        "nearest": (ctx.train(near.mask()), near.mask()),
        "not_pruned": (ctx.run.head(reference=True), enc.full()),
    }
    rows = []
    for against, (head, mask) in others.items():
        hamming = int(np.sum(mask != best_mask))
        acc = accuracy(head, data.X_test, data.y_test)
        for layer, measure, value in compare_heads(best, (head, enc.decode(mask)), data.X_test):
            rows.append(CKARow(against, layer, measure, value, hamming, acc))
    write_cka(ctx, rows)
    return rows


def write_cka(ctx: AnalysisContext, rows: list[CKARow]) -> None:
    """cka.csv and a bar chart of it."""
    write_records(ctx.out / CKA_FILE, rows)
    from evoprune.plots.analysis import plot_cka

    r = ctx.run.result
    plot_cka(rows, ctx.out / CKA_PLOT, title=f"{r.dataset} · {r.encoding} · seed {r.seed}")
