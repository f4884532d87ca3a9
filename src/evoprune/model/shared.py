"""One head that scores many masks without retraining (the ``shared`` fidelity).

The encoding's dense head is trained once on a fold's training part with its units randomly
masked, each training sample under its own mask at a density drawn log-uniformly from one unit
to all of them (the densities the search explores). A mask is then scored by one forward pass of
that head with the mask applied: milliseconds instead of a training. This is the "one network
trained on random masks" of FIR (Wojtas & Chen, NeurIPS 2020), for the units the search switches.

A masked unit outputs zero. For input features the head standardises first, so a masked feature
is its training mean (the compact head without it is the same function). With ``rescale`` the
kept units of a layer are multiplied by (units / kept units), as inverted dropout does, so the
next layer sees inputs of about the same size at every density. ``benchmarks/fidelity.py``
measures which recipe ranks masks most like full training does (Kendall's tau).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from evoprune.encodings import Encoding, PruneTarget
from evoprune.errors import ConfigError
from evoprune.model.head import CompactHead, build_head, feature_stats


@dataclass(frozen=True)
class SharedRecipe:
    """How the shared head is trained (Adam, fixed epochs, tail-averaged weights).

    ``per_sample``: each training sample gets its own mask (else one mask per mini-batch);
    ``full_fraction``: the share of samples trained with every unit on; ``rescale``: kept units
    are scaled by units / kept (in training and in scoring alike); ``density``: the law of the
    training masks' densities; ``score``: what a mask scores, ``probability`` (the mean
    probability the masked head gives the true class: the expected accuracy of a prediction
    drawn from its softmax, smoother than) or ``accuracy`` (its argmax accuracy).

    The default is the recipe that ranked 200 ELPV fs masks most like full training
    (benchmarks/fidelity.json): no rescaling (a masked standardised feature is its training
    mean, as in the compact head the full training builds; rescaling by up to L / k moved
    sparse masks' inputs far from what the head saw, and their scores with it), half of the
    samples with every unit on (the head also learns what the units do together), and the
    probability score (accuracy on a few hundred images moves in steps of one image).
    """

    epochs: int = 40
    lr: float = 2e-3
    weight_decay: float = 1e-2
    batch_size: int = 128
    min_batches: int = 8
    average_from: int = 30
    per_sample: bool = True
    full_fraction: float = 0.5
    rescale: bool = False
    density: str = "log-uniform"  # or "uniform" (in [1/L, 1]) or "mixed" (half each)
    score: str = "probability"  # or "accuracy"

    def describe(self) -> dict:
        return dict(self.__dict__)


#: The recipe a run uses (chosen by benchmarks/fidelity.py's rank agreement on ELPV).
DEFAULT_RECIPE = SharedRecipe()


def check_shared_encoding(encoding: Encoding) -> None:
    """ConfigError unless the shared head can score ``encoding``'s masks (each gene one
    whole unit, :attr:`~evoprune.encodings.EncodingSpec.switches_units`)."""
    if not encoding.spec.switches_units:
        raise ConfigError(
            f"--fidelity shared/multi scores masks of whole units; encoding {encoding.name!r} "
            "does not switch whole units: use --fidelity full with it"
        )


def _targets(encoding: Encoding) -> list[tuple[PruneTarget, int, int]]:
    """(target, first gene, gene count) of each unit layer the genes switch, in gene order."""
    out, start = [], 0
    for t in encoding.prune_targets:
        size = t.size(encoding.n_features, encoding.hidden)
        out.append((t, start, size))
        start += size
    return out


def _layer_masks(
    encoding: Encoding, genes: torch.Tensor, rescale: bool
) -> tuple[torch.Tensor | None, dict[int, torch.Tensor]]:
    """Float multipliers (B, units) from a (B, L) 0/1 gene matrix: the input features' (None
    when the genes do not switch them) and each switched hidden layer's, with the rescaling."""
    inputs = None
    hidden: dict[int, torch.Tensor] = {}
    for t, start, size in _targets(encoding):
        m = genes[:, start : start + size].to(torch.float32)
        if rescale:
            m = m * (size / m.sum(dim=1, keepdim=True).clamp(min=1.0))
        if t.units == "inputs":
            inputs = m
        else:
            hidden[t.layer] = m
    return inputs, hidden


def masked_forward(
    head: CompactHead,
    x: torch.Tensor,
    inputs: torch.Tensor | None,
    hidden: dict[int, torch.Tensor],
    *,
    per_mask: bool,
) -> torch.Tensor:
    """Logits of the dense ``head`` on standardised inputs ``x`` (n, F) with unit multipliers
    applied: with ``per_mask`` the multipliers are (B, units), B masks each applied to every
    sample, giving (B, n, classes); else they are (n, units), one mask per sample."""

    def apply(v: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return v * (m.unsqueeze(1) if per_mask else m)

    if inputs is not None:
        x = apply(x.unsqueeze(0) if per_mask else x, inputs)
    elif per_mask:
        B = next(iter(hidden.values())).shape[0]
        x = x.unsqueeze(0).expand(B, *x.shape)
    layers = head.linears
    for i, layer in enumerate(layers[:-1]):
        x = torch.relu(layer(x))
        if i in hidden:
            x = apply(x, hidden[i])
    return layers[-1](x)


def draw_genes(
    gen: torch.Generator, n: int, n_genes: int, min_density: float, law: str = "log-uniform"
) -> torch.Tensor:
    """(n, L) 0/1 genes: each row a density d in [min_density, 1], log-uniform (``law``
    ``log-uniform``), uniform, or either with probability 1/2 (``mixed``); each gene on with
    probability d (at least one gene on)."""
    low = math.log(min_density)
    d = torch.exp(low + (0.0 - low) * torch.rand(n, 1, generator=gen))
    if law != "log-uniform":
        flat = min_density + (1.0 - min_density) * torch.rand(n, 1, generator=gen)
        pick = torch.ones(n, 1, dtype=torch.bool)
        if law == "mixed":
            pick = torch.rand(n, 1, generator=gen) < 0.5
        d = torch.where(pick, flat, d)
    genes = (torch.rand(n, n_genes, generator=gen) < d).to(torch.uint8)
    empty = genes.sum(dim=1) == 0
    if bool(empty.any()):
        pick = torch.randint(n_genes, (int(empty.sum()),), generator=gen)
        genes[empty.nonzero().squeeze(1), pick] = 1
    return genes


def train_shared_head(
    X: np.ndarray,
    y: np.ndarray,
    encoding: Encoding,
    n_classes: int,
    *,
    seed: int = 0,
    stats: tuple[np.ndarray, np.ndarray] | None = None,
    recipe: SharedRecipe = DEFAULT_RECIPE,
) -> CompactHead:
    """The encoding's dense head trained on (X, y) under random masks (see the module)."""
    check_shared_encoding(encoding)
    mean, std = stats if stats is not None else feature_stats(X)
    head = build_head(encoding.decode(encoding.full()), n_classes, mean=mean, std=std, seed=seed)
    head.train()
    gen = torch.Generator().manual_seed(int(seed) + 2)
    Xs = (torch.as_tensor(np.asarray(X, dtype=np.float32)) - head.shift) * head.scale
    ys = torch.as_tensor(np.asarray(y, dtype=np.int64))
    n, L = Xs.shape[0], encoding.n_genes
    bs = max(1, min(recipe.batch_size, n, math.ceil(n / max(1, recipe.min_batches))))
    params = list(head.parameters())
    opt = torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    tail = [torch.zeros_like(p) for p in params]
    n_tail = 0
    for epoch in range(1, recipe.epochs + 1):
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, bs):
            idx = order[start : start + bs]
            rows = idx.numel() if recipe.per_sample else 1
            genes = draw_genes(gen, rows, L, 1.0 / L, recipe.density)
            if recipe.full_fraction > 0:
                full = torch.rand(rows, generator=gen) < recipe.full_fraction
                genes[full] = 1
            if not recipe.per_sample:
                genes = genes.expand(idx.numel(), L)
            inputs, hidden = _layer_masks(encoding, genes, recipe.rescale)
            loss = loss_fn(masked_forward(head, Xs[idx], inputs, hidden, per_mask=False), ys[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if epoch >= recipe.average_from:
            for t, p in zip(tail, params):
                t.add_(p.detach())
            n_tail += 1
    if n_tail:
        with torch.no_grad():
            for p, t in zip(params, tail):
                p.copy_(t / n_tail)
    return head.eval()


def _mask_inputs(encoding: Encoding) -> list[tuple[int, int, int]]:
    """(layer whose inputs a target masks, first gene, gene count) per target: input
    features mask the inputs of layer 0, hidden layer i's neurons those of layer i + 1."""
    return [
        (0 if t.units == "inputs" else t.layer + 1, start, size)
        for t, start, size in _targets(encoding)
    ]


@torch.no_grad()
def shared_logits(
    head: CompactHead,
    encoding: Encoding,
    chromosomes: np.ndarray,
    X: np.ndarray,
    *,
    rescale: bool = DEFAULT_RECIPE.rescale,
) -> np.ndarray:
    """(B, n, classes) logits of the shared ``head`` on features ``X`` under each row of
    ``chromosomes``.

    Each mask's pass keeps only its units (the compact head's arithmetic: a layer reads the
    kept columns of its weights), so its cost follows its density; the layers before the
    first masked one are computed once for all masks."""
    x0 = (torch.as_tensor(np.asarray(X, dtype=np.float32)) - head.shift) * head.scale
    layers = head.linears
    masked = {j: (start, size) for j, start, size in _mask_inputs(encoding)}
    first = min(masked)
    for layer in layers[:first]:
        x0 = torch.relu(layer(x0))
    genes = np.atleast_2d(np.asarray(chromosomes)).astype(bool)
    out = np.empty((genes.shape[0], x0.shape[0], layers[-1].out_features), dtype=np.float32)
    last = len(layers) - 1
    for row, g in enumerate(genes):
        x = x0
        for j in range(first, len(layers)):
            w, b = layers[j].weight, layers[j].bias
            if j in masked:
                start, size = masked[j]
                keep = torch.as_tensor(np.flatnonzero(g[start : start + size]))
                x, w = x.index_select(1, keep), w.index_select(1, keep)
                if rescale and keep.numel():
                    w = w * (size / keep.numel())
            x = torch.addmm(b, x, w.t())
            if j < last:
                x = torch.relu(x)
        out[row] = x.numpy()
    return out


def shared_scores(
    head: CompactHead,
    encoding: Encoding,
    chromosomes: np.ndarray,
    X: np.ndarray,
    y: np.ndarray,
    recipe: SharedRecipe = DEFAULT_RECIPE,
    logits: np.ndarray | None = None,
) -> np.ndarray:
    """(B,) scores on (X, y) of the shared head under each mask: the recipe's ``score``
    (mean true-class probability, or accuracy). ``logits`` (B, n, classes): already
    computed by :func:`shared_logits`."""
    if logits is None:
        logits = shared_logits(head, encoding, chromosomes, X, rescale=recipe.rescale)
    y = np.asarray(y)
    if recipe.score == "accuracy":
        return (logits.argmax(axis=2) == y[None, :]).mean(axis=1)
    z = logits - logits.max(axis=2, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=2, keepdims=True)
    return p[:, np.arange(len(y)), y].mean(axis=1)
