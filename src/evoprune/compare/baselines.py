"""The paper's comparison methods, scored on the held-out test set that the search never saw.

- ``not_pruned``: every gene on, trained like any candidate.
- ``best_fixed``: random masks at densities 10 %..90 %, the best density chosen by the *same*
  fitness split as the search, retrained on all training data.
- ``weight``: one-shot magnitude pruning of the trained not-pruned head (Han et al. 2015).
- ``neuron``: the units with the smallest weight norms removed from the trained not-pruned head
  (Srinivas & Babu 2015), physically, without fine-tuning.
- ``polynomial_decay``: gradual magnitude pruning while fine-tuning the not-pruned head, on the
  cubic schedule of Zhu & Gupta (2017).

The last three are set to the evolved head's size: weight pruning and polynomial decay keep the
evolved head's fraction of active genes of the weights of every layer the encoding's genes act
on; neuron pruning keeps exactly as many units in each such layer as the evolved head.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from evoprune.encodings import Encoding
from evoprune.errors import ConfigError
from evoprune.problem import HeadProblem, make_folds
from evoprune.model.head import (CompactHead, TrainerConfig, accuracy, feature_stats, get_trainer,
                   make_optimizer, train_head, training_tensors)

log = logging.getLogger(__name__)

METHODS = ("not_pruned", "best_fixed", "weight", "neuron", "polynomial_decay")
FIXED_DENSITIES = tuple(round(0.1 * i, 1) for i in range(1, 10))


@dataclass
class BaselineResult:
    """One method's head scored on the test set.

    ``active_fraction`` is the fraction of genes on (not pruned, best fixed, neuron pruning) or of
    non-zero weights in the pruned layers (weight pruning, polynomial decay). ``head_params``
    counts the compact head's parameters, or the non-zero ones where zeros are stored densely.
    ``seconds`` is the method's own time, without training the not-pruned head it starts from.
    """

    method: str
    test_accuracy: float
    active_fraction: float
    head_params: int
    seconds: float
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PruneTarget:
    """A layer the encoding's genes act on: ``head.layers[layer]``'s inputs or output neurons."""

    layer: int
    units: str  # "inputs" (feature selection) or "neurons"


def prune_targets(encoding: Encoding) -> tuple[PruneTarget, ...]:
    """fs: the first layer's inputs; fc/fc1: the first hidden layer; fc2: the second; both: both."""
    if encoding.name == "fs":
        return (PruneTarget(0, "inputs"),)
    if encoding.name in ("fc", "fc1"):
        return (PruneTarget(0, "neurons"),)
    if encoding.name == "fc2":
        return (PruneTarget(1, "neurons"),)
    if encoding.name == "both":
        return (PruneTarget(0, "neurons"), PruneTarget(1, "neurons"))
    raise ConfigError(f"encoding={encoding.name!r} has no pruning baselines")


def kept_units(encoding: Encoding, mask: np.ndarray) -> dict[int, int]:
    """Units the evolved ``mask`` keeps in each pruned layer (layer index -> count)."""
    masks = encoding.decode(mask)
    out = {}
    for t in prune_targets(encoding):
        out[t.layer] = int(masks.features.sum()) if t.units == "inputs" else int(
            masks.hidden[t.layer].sum())
    return out


def _n_keep(n: int, fraction: float) -> int:
    return int(round(float(fraction) * n))


def weight_prune(head: CompactHead, layers: tuple[int, ...], keep_fraction: float) -> CompactHead:
    """A copy of ``head`` with the smallest |w| of each of ``layers`` set to zero, keeping
    exactly round(keep_fraction * n) weights per layer (biases untouched, no fine-tuning)."""
    if not 0.0 <= keep_fraction <= 1.0:
        raise ConfigError(f"keep_fraction={keep_fraction} must be within [0, 1]")
    pruned = copy.deepcopy(head)
    with torch.no_grad():
        for i in layers:
            w = pruned.layers[i].weight
            w.mul_(_magnitude_mask(w, w.numel() - _n_keep(w.numel(), keep_fraction)))
    return pruned


def _magnitude_mask(w: torch.Tensor, n_zero: int, already: torch.Tensor | None = None
                    ) -> torch.Tensor:
    """A 0/1 mask shaped like ``w`` with exactly ``n_zero`` zeros at the smallest |w|.

    Positions already zero in ``already`` are pruned first, so earlier pruning is never undone.
    """
    score = w.detach().abs().flatten().clone()
    if already is not None:
        score[already.flatten() == 0] = -1.0
    mask = torch.ones_like(score)
    if n_zero > 0:
        mask[torch.argsort(score, stable=True)[:n_zero]] = 0.0
    return mask.reshape(w.shape)


def unit_norms(head: CompactHead, target: PruneTarget) -> torch.Tensor:
    """L2 norm of each unit's weights: an input's outgoing weights in the first layer, or a
    neuron's incoming weights."""
    w = head.layers[target.layer].weight.detach()
    return w.norm(dim=0) if target.units == "inputs" else w.norm(dim=1)


def neuron_prune(head: CompactHead, targets: tuple[PruneTarget, ...],
                 keep: dict[int, int]) -> CompactHead:
    """A physically smaller copy of ``head`` keeping, in each target layer, the ``keep[layer]``
    units with the largest weight norms (norms taken on the trained head; no fine-tuning)."""
    feature_keep = np.arange(head.layers[0].in_features)
    hidden_keep = [np.arange(layer.out_features) for layer in head.layers[:-1]]
    for t in targets:
        norms = unit_norms(head, t)
        k = int(keep[t.layer])
        if not 0 <= k <= norms.numel():
            raise ConfigError(f"cannot keep {k} of {norms.numel()} units of layer {t.layer}")
        chosen = np.sort(torch.argsort(norms, descending=True, stable=True)[:k].numpy())
        if t.units == "inputs":
            feature_keep = chosen
        else:
            hidden_keep[t.layer] = chosen
    return remove_units(head, feature_keep, hidden_keep)


def remove_units(head: CompactHead, feature_keep: np.ndarray,
                 hidden_keep: list[np.ndarray]) -> CompactHead:
    """A new compact head holding only the given positions of ``head``'s inputs and hidden
    neurons, with their trained weights."""
    n_classes = head.layers[-1].out_features
    fk = torch.as_tensor(np.asarray(feature_keep, dtype=np.int64))
    keeps = [fk] + [torch.as_tensor(np.asarray(h, dtype=np.int64)) for h in hidden_keep]
    keeps.append(torch.arange(n_classes))
    new = CompactHead(head.n_inputs, head.feature_index[fk].numpy(),
                      tuple(len(h) for h in hidden_keep), n_classes)
    with torch.no_grad():
        new.shift.copy_(head.shift[fk])
        new.scale.copy_(head.scale[fk])
        for i, (old, layer) in enumerate(zip(head.layers, new.layers)):
            layer.weight.copy_(old.weight[keeps[i + 1]][:, keeps[i]])
            layer.bias.copy_(old.bias[keeps[i + 1]])
    return new.eval()


def polynomial_schedule(final_sparsity: float, initial_sparsity: float = 0.1, epochs: int = 25,
                        frequency: int = 5) -> list[tuple[int, float]]:
    """(epoch, target sparsity) of each pruning step of Zhu & Gupta's cubic schedule.

    Steps at epochs 0, f, 2f, ... up to the last multiple of ``frequency`` before ``epochs``
    (so the final sparsity is reached with fine-tuning epochs left):
    s_t = s_f + (s_i - s_f) (1 - t / T)^3. When the target is below ``initial_sparsity`` the
    schedule starts at the target (pruned weights are never restored).
    """
    if not 0.0 <= final_sparsity <= 1.0:
        raise ConfigError(f"final_sparsity={final_sparsity} must be within [0, 1]")
    if int(epochs) < 1 or int(frequency) < 1:
        raise ConfigError(f"epochs={epochs} and frequency={frequency} must be at least 1")
    s_i = min(float(initial_sparsity), float(final_sparsity))
    end = frequency * ((int(epochs) - 1) // int(frequency))
    steps = []
    for t in range(0, end + 1, int(frequency)):
        p = t / end if end else 1.0
        steps.append((t, final_sparsity + (s_i - final_sparsity) * (1.0 - p) ** 3))
    return steps


def polynomial_decay(head: CompactHead, layers: tuple[int, ...], keep_fraction: float,
                     X: np.ndarray, y: np.ndarray, trainer: str | TrainerConfig = "fast",
                     seed: int = 0, initial_sparsity: float = 0.1, epochs: int = 25,
                     frequency: int = 5) -> tuple[CompactHead, list[dict]]:
    """Fine-tune a copy of the trained ``head`` on (X, y) for ``epochs`` epochs with the run's
    optimiser settings, pruning ``layers`` by magnitude on :func:`polynomial_schedule`.

    Masks stay fixed between steps (gradients and weights of pruned positions are zeroed), so
    pruned weights stay zero. Returns the head and the schedule as carried out: per step the
    epoch, target and achieved sparsity of each layer.
    """
    cfg = get_trainer(trainer)
    final = 1.0 - float(keep_fraction)
    schedule = polynomial_schedule(final, initial_sparsity, epochs, frequency)
    tuned = copy.deepcopy(head).train()
    Xs, ys = training_tensors(tuned, X, y)
    params = list(tuned.parameters())
    opt = make_optimizer(params, cfg)
    weights = {i: tuned.layers[i].weight for i in layers}
    masks = {i: torch.ones_like(w) for i, w in weights.items()}
    gen = torch.Generator().manual_seed(int(seed) + 2)
    n = Xs.shape[0]
    bs = min(cfg.batch_size, n)
    loss_fn = nn.CrossEntropyLoss()
    record = []
    steps = dict(schedule)
    for epoch in range(int(epochs) + 1):
        if epoch in steps:
            achieved = {}
            with torch.no_grad():
                for i, w in weights.items():
                    n_zero = int(round(steps[epoch] * w.numel()))
                    masks[i] = _magnitude_mask(w, n_zero, masks[i])
                    w.mul_(masks[i])
                    achieved[str(i)] = float((w == 0).sum()) / w.numel()
            record.append({"epoch": epoch, "target_sparsity": steps[epoch],
                           "achieved_sparsity": achieved})
        if epoch == int(epochs):
            break
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, bs):
            idx = order[start:start + bs]
            loss = loss_fn(tuned.mlp(Xs[idx]), ys[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            for i, w in weights.items():
                w.grad.mul_(masks[i])
            opt.step()
            with torch.no_grad():
                for i, w in weights.items():
                    w.mul_(masks[i])
    return tuned.eval(), record


def nonzero_params(head: CompactHead) -> int:
    return int(sum(int(torch.count_nonzero(p)) for p in head.parameters()))


def sparsity_of(head: CompactHead, layers: tuple[int, ...]) -> float:
    """Fraction of zero weights over ``layers``."""
    zeros = sum(int((head.layers[i].weight == 0).sum()) for i in layers)
    return zeros / sum(head.layers[i].weight.numel() for i in layers)


def fixed_density_masks(n_genes: int, seed: int,
                        densities: tuple[float, ...] = FIXED_DENSITIES) -> list[np.ndarray]:
    """One seeded random chromosome per density with exactly round(d * n_genes) genes on."""
    rng = np.random.default_rng([int(seed), 1729])
    out = []
    for d in densities:
        k = min(n_genes, max(1, _n_keep(n_genes, d)))
        chrom = np.zeros(n_genes, dtype=np.uint8)
        chrom[rng.choice(n_genes, size=k, replace=False)] = 1
        out.append(chrom)
    return out


def best_fixed(encoding: Encoding, X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray,
               y_test: np.ndarray, n_classes: int, *, trainer: str | TrainerConfig = "fast",
               seed: int = 0, fitness_split: str = "validation", val_fraction: float = 0.2,
               cv_folds: int = 5, densities: tuple[float, ...] = FIXED_DENSITIES
               ) -> tuple[BaselineResult, CompactHead]:
    """The best of random fixed-density masks, chosen by the search's own fitness (the same
    folds, trainer and seed), then retrained on all training data and scored on the test set.
    Equal fitness goes to the lower density, as in the search."""
    t0 = time.perf_counter()
    eval_set = (X_test, y_test) if fitness_split == "test" else None
    folds = make_folds(X_train, y_train, fitness_split, seed=seed, val_fraction=val_fraction,
                       cv_folds=cv_folds, eval_set=eval_set)
    problem = HeadProblem(encoding, n_classes, folds, trainer, seed)
    chroms = fixed_density_masks(encoding.n_genes, seed, densities)
    fitness = [float(f) for f in problem.accuracy(np.stack(chroms))]
    best = max(range(len(chroms)), key=lambda i: (fitness[i], -int(chroms[i].sum())))
    chrom = chroms[best]
    head = train_head(X_train, y_train, encoding.decode(chrom), n_classes, trainer, seed=seed,
                      stats=feature_stats(X_train)).head
    result = BaselineResult(
        "best_fixed", accuracy(head, X_test, y_test), float(chrom.mean()), head.n_params(),
        time.perf_counter() - t0,
        {"density": float(densities[best]), "active_genes": int(chrom.sum()),
         "fitness": fitness[best], "fitness_by_density": dict(zip(map(str, densities), fitness)),
         "leaked_test_set": fitness_split == "test"})
    return result, head


def run_baselines(encoding: Encoding, evolved_mask: np.ndarray, X_train: np.ndarray,
                  y_train: np.ndarray, X_test: np.ndarray, y_test: np.ndarray, n_classes: int, *,
                  trainer: str | TrainerConfig = "fast", seed: int = 0,
                  fitness_split: str = "validation", val_fraction: float = 0.2,
                  cv_folds: int = 5, initial_sparsity: float = 0.1, poly_epochs: int = 25,
                  poly_frequency: int = 5) -> dict[str, BaselineResult]:
    """Every method of :data:`METHODS` for one run, sized like its ``evolved_mask``."""
    evolved_mask = np.asarray(evolved_mask, dtype=np.uint8)
    targets = prune_targets(encoding)
    layers = tuple(t.layer for t in targets)
    keep_fraction = float(evolved_mask.mean())
    results: dict[str, BaselineResult] = {}

    t0 = time.perf_counter()
    ref = train_head(X_train, y_train, encoding.decode(encoding.full()), n_classes, trainer,
                     seed=seed, stats=feature_stats(X_train)).head
    results["not_pruned"] = BaselineResult("not_pruned", accuracy(ref, X_test, y_test), 1.0,
                                           ref.n_params(), time.perf_counter() - t0)
    log.debug("not pruned: %.4f", results["not_pruned"].test_accuracy)

    results["best_fixed"], _ = best_fixed(
        encoding, X_train, y_train, X_test, y_test, n_classes, trainer=trainer, seed=seed,
        fitness_split=fitness_split, val_fraction=val_fraction, cv_folds=cv_folds)

    t0 = time.perf_counter()
    w_head = weight_prune(ref, layers, keep_fraction)
    results["weight"] = BaselineResult(
        "weight", accuracy(w_head, X_test, y_test), 1.0 - sparsity_of(w_head, layers),
        nonzero_params(w_head), time.perf_counter() - t0, {"layers": list(layers)})

    t0 = time.perf_counter()
    keep = kept_units(encoding, evolved_mask)
    n_head = neuron_prune(ref, targets, keep)
    total = sum(unit_norms(ref, t).numel() for t in targets)
    results["neuron"] = BaselineResult(
        "neuron", accuracy(n_head, X_test, y_test), sum(keep.values()) / total,
        n_head.n_params(), time.perf_counter() - t0,
        {"kept_units": {str(k): v for k, v in keep.items()}, "sizes": list(n_head.sizes)})

    t0 = time.perf_counter()
    p_head, schedule = polynomial_decay(ref, layers, keep_fraction, X_train, y_train, trainer,
                                        seed=seed, initial_sparsity=initial_sparsity,
                                        epochs=poly_epochs, frequency=poly_frequency)
    results["polynomial_decay"] = BaselineResult(
        "polynomial_decay", accuracy(p_head, X_test, y_test), 1.0 - sparsity_of(p_head, layers),
        nonzero_params(p_head), time.perf_counter() - t0,
        {"layers": list(layers), "epochs": poly_epochs, "frequency": poly_frequency,
         "initial_sparsity": initial_sparsity, "schedule": schedule})
    return results
