"""The paper's comparison methods, scored on the held-out test set that the search never saw.

- ``not_pruned``: every gene on, trained like any candidate (the run's reference head, reused).
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

Then the rankings of :mod:`evoprune.compare.rankings` that apply to the encoding (mutual
information, ANOVA F, L1 logistic regression, weight norm, RFE on a linear probe, mRMR,
ReliefF, LassoNet's path, activation variance): the top-ranked units, as many per layer as the
evolved head keeps, retrained (:func:`run_rankings`). Last, for the neuron encodings, ``narrow``:
a narrower head (d -> k -> C, k the evolved head's neurons) trained from scratch.

Every method is one entry of :data:`COMPARISON_METHODS` (name, label, the encodings it applies
to, how it builds its head from the run's :class:`MethodContext`); :func:`run_baselines` runs
those that apply, in that order.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from evoprune._views import RegistryNames
from evoprune.compare.rankings import (
    RANKINGS,
    Ranker,
    Ranking,
    prunes_units,
    ranking_available,
    rankings_for,
    unit_norms,
)
from evoprune.encodings import Encoding, HeadMasks, PruneTarget
from evoprune.errors import ConfigError
from evoprune.model.head import (
    CompactHead,
    TrainerConfig,
    TrainingHooks,
    accuracy,
    fit_head,
    get_trainer,
    nonzero_params,
)
from evoprune.runs.context import RunContext

log = logging.getLogger(__name__)

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


def kept_units(encoding: Encoding, mask: np.ndarray) -> dict[int, int]:
    """Units the evolved ``mask`` keeps in each layer the encoding prunes (layer index ->
    count): input features, hidden neurons, or connections (the ``edges`` encodings)."""
    masks = encoding.decode(mask)

    def kept(t: PruneTarget) -> int:
        if t.units == "inputs":
            return int(masks.features.sum())
        if t.units == "weights":
            return int(np.count_nonzero(masks.connections[t.layer]))
        return int(masks.hidden[t.layer].sum())

    return {t.layer: kept(t) for t in encoding.prune_targets}


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
            w = pruned.linears[i].weight
            w.mul_(_magnitude_mask(w, w.numel() - _n_keep(w.numel(), keep_fraction)))
    return pruned


def _magnitude_mask(
    w: torch.Tensor, n_zero: int, already: torch.Tensor | None = None
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


def neuron_prune(
    head: CompactHead, targets: tuple[PruneTarget, ...], keep: dict[int, int]
) -> CompactHead:
    """A physically smaller copy of ``head`` keeping, in each target layer, the ``keep[layer]``
    units with the largest weight norms (norms taken on the trained head; no fine-tuning)."""
    feature_keep = np.arange(head.linears[0].in_features)
    hidden_keep = [np.arange(layer.out_features) for layer in head.linears[:-1]]
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


def remove_units(
    head: CompactHead, feature_keep: np.ndarray, hidden_keep: list[np.ndarray]
) -> CompactHead:
    """A new compact head holding only the given positions of ``head``'s inputs and hidden
    neurons, with their trained weights."""
    n_classes = head.linears[-1].out_features
    fk = torch.as_tensor(np.asarray(feature_keep, dtype=np.int64))
    keeps = [fk] + [torch.as_tensor(np.asarray(h, dtype=np.int64)) for h in hidden_keep]
    keeps.append(torch.arange(n_classes))
    new = CompactHead(
        head.n_inputs, head.feature_index[fk].numpy(), tuple(len(h) for h in hidden_keep), n_classes
    )
    with torch.no_grad():
        new.shift.copy_(head.shift[fk])
        new.scale.copy_(head.scale[fk])
        for i, (old, layer) in enumerate(zip(head.linears, new.linears)):
            layer.weight.copy_(old.weight[keeps[i + 1]][:, keeps[i]])
            layer.bias.copy_(old.bias[keeps[i + 1]])
    return new.eval()


def polynomial_schedule(
    final_sparsity: float, initial_sparsity: float = 0.1, epochs: int = 25, frequency: int = 5
) -> list[tuple[int, float]]:
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


class _PolynomialPruning(TrainingHooks):
    """Prunes ``layers`` by magnitude at the schedule's epochs and keeps pruned weights at zero
    (their gradients and values are masked around every optimiser step)."""

    def __init__(
        self, head: CompactHead, layers: tuple[int, ...], schedule: list[tuple[int, float]]
    ) -> None:
        self.steps = dict(schedule)
        self.masks = {i: torch.ones_like(head.linears[i].weight) for i in layers}
        self.record: list[dict] = []

    def on_epoch_start(self, head: CompactHead, epoch: int) -> None:
        if epoch not in self.steps:
            return
        achieved = {}
        with torch.no_grad():
            for i in self.masks:
                w = head.linears[i].weight
                n_zero = int(round(self.steps[epoch] * w.numel()))
                self.masks[i] = _magnitude_mask(w, n_zero, self.masks[i])
                w.mul_(self.masks[i])
                achieved[str(i)] = float((w == 0).sum()) / w.numel()
        self.record.append(
            {"epoch": epoch, "target_sparsity": self.steps[epoch], "achieved_sparsity": achieved}
        )

    def after_backward(self, head: CompactHead) -> None:
        for i, mask in self.masks.items():
            grad = head.linears[i].weight.grad
            if grad is not None:  # None only for a layer that took no part in the loss
                grad.mul_(mask)

    def after_step(self, head: CompactHead) -> None:
        with torch.no_grad():
            for i, mask in self.masks.items():
                head.linears[i].weight.mul_(mask)


def polynomial_decay(
    head: CompactHead,
    layers: tuple[int, ...],
    keep_fraction: float,
    X: np.ndarray,
    y: np.ndarray,
    trainer: str | TrainerConfig = "fast",
    seed: int = 0,
    initial_sparsity: float = 0.1,
    epochs: int = 25,
    frequency: int = 5,
) -> tuple[CompactHead, list[dict]]:
    """Fine-tune a copy of the trained ``head`` on (X, y) for ``epochs`` epochs with the run's
    optimiser at its initial learning rate (no decay, no early stopping, no weight averaging),
    pruning ``layers`` by magnitude on :func:`polynomial_schedule`.

    Masks stay fixed between steps (gradients and weights of pruned positions are zeroed), so
    pruned weights stay zero. Returns the head and the schedule as carried out: per step the
    epoch, target and achieved sparsity of each layer.
    """
    cfg = get_trainer(trainer)
    schedule = polynomial_schedule(1.0 - float(keep_fraction), initial_sparsity, epochs, frequency)
    tuned = copy.deepcopy(head)
    pruning = _PolynomialPruning(tuned, layers, schedule)
    # the last weights, exactly as pruned (no mean of earlier epochs' weights)
    fine_tune = dataclasses.replace(cfg, max_epochs=int(epochs), lr_decay=0.0, average_from=0)
    fit_head(
        tuned,
        X,
        y,
        fine_tune,
        torch.Generator().manual_seed(int(seed) + 2),
        early_stopping=False,
        hooks=pruning,
    )
    return tuned, pruning.record


def sparsity_of(head: CompactHead, layers: tuple[int, ...]) -> float:
    """Fraction of zero weights over ``layers``."""
    zeros = sum(int((head.linears[i].weight == 0).sum()) for i in layers)
    return zeros / sum(head.linears[i].weight.numel() for i in layers)


def fixed_density_masks(
    n_genes: int, seed: int, densities: tuple[float, ...] = FIXED_DENSITIES
) -> list[np.ndarray]:
    """One seeded random chromosome per density with exactly round(d * n_genes) genes on."""
    rng = np.random.default_rng([int(seed), 1729])
    out = []
    for d in densities:
        k = min(n_genes, max(1, _n_keep(n_genes, d)))
        chrom = np.zeros(n_genes, dtype=np.uint8)
        chrom[rng.choice(n_genes, size=k, replace=False)] = 1
        out.append(chrom)
    return out


def best_fixed(
    ranker: Ranker,
    X_test: np.ndarray,
    y_test: np.ndarray,
    densities: tuple[float, ...] = FIXED_DENSITIES,
) -> tuple[BaselineResult, CompactHead]:
    """The best of random fixed-density masks, chosen by the search's own fitness (the run's
    folds, trainer and seed, as ``ranker`` holds them), then retrained on all of the ranker's
    training data and scored on the test set. Equal fitness goes to the lower density, as in
    the search."""
    t0 = time.perf_counter()
    encoding = ranker.encoding
    chroms = fixed_density_masks(encoding.n_genes, ranker.seed, densities)
    fitness = [float(f) for f in ranker.problem.accuracy(np.stack(chroms))]
    best = max(range(len(chroms)), key=lambda i: (fitness[i], -int(chroms[i].sum())))
    chrom = chroms[best]
    head = ranker.retrain(chrom)
    result = BaselineResult(
        "best_fixed",
        accuracy(head, X_test, y_test),
        float(chrom.mean()),
        head.n_params() if prunes_units(encoding) else nonzero_params(head),
        time.perf_counter() - t0,
        {
            "density": float(densities[best]),
            "active_genes": int(chrom.sum()),
            "fitness": fitness[best],
            "fitness_by_density": dict(zip(map(str, densities), fitness)),
            "leaked_test_set": ranker.leaked_test_set,
        },
    )
    return result, head


@dataclass(frozen=True)
class PolySchedule:
    """The polynomial decay baseline's schedule: the sparsity it starts from, the epochs of
    fine-tuning and how often (in epochs) the weights are pruned again."""

    initial_sparsity: float = 0.1
    epochs: int = 25
    frequency: int = 5


@dataclass
class MethodContext:
    """What every comparison method of one run is built from: its :class:`Ranker` (the run's
    context: encoding, training and held-out data, fitness folds, trainer and seed), its evolved
    mask (the size to match), its trained not-pruned head (and the seconds that took) and the
    polynomial decay's schedule."""

    ranker: Ranker
    evolved_mask: np.ndarray
    reference: CompactHead
    reference_seconds: float = 0.0
    schedule: PolySchedule = field(default_factory=PolySchedule)

    @property
    def encoding(self) -> Encoding:
        return self.ranker.encoding

    @property
    def X_train(self) -> np.ndarray:
        return self.ranker.context.X_train

    @property
    def y_train(self) -> np.ndarray:
        return self.ranker.context.y_train

    @property
    def X_test(self) -> np.ndarray:
        return self.ranker.context.held_out[0]

    @property
    def y_test(self) -> np.ndarray:
        return self.ranker.context.held_out[1]

    @property
    def layers(self) -> tuple[int, ...]:
        """The layers the encoding's genes act on."""
        return tuple(t.layer for t in self.encoding.prune_targets)

    @property
    def keep_fraction(self) -> float:
        """The evolved head's fraction of active genes."""
        return float(self.evolved_mask.mean())

    @property
    def keep(self) -> dict[int, int]:
        """Units the evolved head keeps per pruned layer (:func:`kept_units`)."""
        return kept_units(self.encoding, self.evolved_mask)


@dataclass(frozen=True)
class SizedHead:
    """What a method trains at a given number of kept units per pruned layer: the units of
    ``masks`` (the encoding's decoded chromosome, or another architecture), built and trained
    from scratch with the run's trainer and seed (:meth:`Ranker.train`)."""

    masks: HeadMasks
    active_genes: int
    active_fraction: float
    details: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ComparisonMethod:
    """One comparison method: its name (in result files), its label (in tables and plots),
    which encodings it applies to, and how it builds and scores its head for a run.

    ``at_size(ranker, keep)``, for a method that can be trained at any size, gives its head
    keeping ``keep[layer]`` units of each pruned layer: such a method is also drawn by the
    accuracy-size curves (``--curves``).
    """

    name: str
    label: str
    applies: Callable[[Encoding], bool]
    build: Callable[[MethodContext], BaselineResult]
    at_size: Callable[[Ranker, dict[int, int]], SizedHead] | None = None


def _not_pruned(ctx: MethodContext) -> BaselineResult:
    ref = ctx.reference
    result = BaselineResult(
        "not_pruned",
        accuracy(ref, ctx.X_test, ctx.y_test),
        1.0,
        ref.n_params(),
        float(ctx.reference_seconds),
    )
    log.debug("not pruned: %.4f", result.test_accuracy)
    return result


def _best_fixed(ctx: MethodContext) -> BaselineResult:
    return best_fixed(ctx.ranker, ctx.X_test, ctx.y_test)[0]


def _weight(ctx: MethodContext) -> BaselineResult:
    t0 = time.perf_counter()
    head = weight_prune(ctx.reference, ctx.layers, ctx.keep_fraction)
    return BaselineResult(
        "weight",
        accuracy(head, ctx.X_test, ctx.y_test),
        1.0 - sparsity_of(head, ctx.layers),
        nonzero_params(head),
        time.perf_counter() - t0,
        {"layers": list(ctx.layers)},
    )


def _neuron(ctx: MethodContext) -> BaselineResult:
    t0 = time.perf_counter()
    targets = ctx.encoding.prune_targets
    keep = ctx.keep
    head = neuron_prune(ctx.reference, targets, keep)
    total = sum(unit_norms(ctx.reference, t).numel() for t in targets)
    return BaselineResult(
        "neuron",
        accuracy(head, ctx.X_test, ctx.y_test),
        sum(keep.values()) / total,
        head.n_params(),
        time.perf_counter() - t0,
        {"kept_units": {str(k): v for k, v in keep.items()}, "sizes": list(head.sizes)},
    )


def _polynomial_decay(ctx: MethodContext) -> BaselineResult:
    t0 = time.perf_counter()
    head, schedule = polynomial_decay(
        ctx.reference,
        ctx.layers,
        ctx.keep_fraction,
        ctx.X_train,
        ctx.y_train,
        ctx.ranker.trainer,
        seed=ctx.ranker.seed,
        initial_sparsity=ctx.schedule.initial_sparsity,
        epochs=ctx.schedule.epochs,
        frequency=ctx.schedule.frequency,
    )
    return BaselineResult(
        "polynomial_decay",
        accuracy(head, ctx.X_test, ctx.y_test),
        1.0 - sparsity_of(head, ctx.layers),
        nonzero_params(head),
        time.perf_counter() - t0,
        {
            "layers": list(ctx.layers),
            "epochs": ctx.schedule.epochs,
            "frequency": ctx.schedule.frequency,
            "initial_sparsity": ctx.schedule.initial_sparsity,
            "schedule": schedule,
        },
    )


def _ranking_method(name: str) -> ComparisonMethod:
    """The comparison method of the ranking ``name`` (compare/rankings.py): its top-ranked
    units, as many per layer as the evolved head keeps, retrained."""

    def build(ctx: MethodContext) -> BaselineResult:
        return ranking_result(ctx.ranker, name, ctx.keep, ctx.X_test, ctx.y_test)

    def at_size(ranker: Ranker, keep: dict[int, int]) -> SizedHead:
        chrom, chosen = ranker.chromosome(name, keep)
        return SizedHead(
            ranker.encoding.decode(chrom), int(chrom.sum()), float(chrom.mean()), chosen
        )

    return ComparisonMethod(
        name,
        RANKINGS[name].label,
        lambda encoding: name in rankings_for(encoding),
        build,
        at_size,
    )


def narrow_masks(encoding: Encoding, keep: dict[int, int]) -> HeadMasks:
    """Every unit of a head whose pruned hidden layers have only ``keep[layer]`` neurons:
    d -> k -> C for ``fc``, d -> k -> h -> C for ``fc1`` (the other layers at full size)."""
    sizes = [int(keep.get(i, h)) for i, h in enumerate(encoding.hidden)]
    return HeadMasks(
        np.ones(encoding.n_features, dtype=bool), tuple(np.ones(s, dtype=bool) for s in sizes)
    )


def _narrow_applies(encoding: Encoding) -> bool:
    """Encodings whose genes are exactly the neurons of hidden layers."""
    targets = encoding.prune_targets
    if not targets or any(t.units != "neurons" for t in targets):
        return False
    return sum(t.size(encoding.n_features, encoding.hidden) for t in targets) == encoding.n_genes


def _narrow_at_size(ranker: Ranker, keep: dict[int, int]) -> SizedHead:
    masks = narrow_masks(ranker.encoding, keep)
    kept = sum(int(keep[t.layer]) for t in ranker.encoding.prune_targets)
    return SizedHead(
        masks,
        kept,
        kept / ranker.encoding.n_genes,
        {"sizes": list(masks.sizes), "seed": ranker.seed},
    )


def _narrow(ctx: MethodContext) -> BaselineResult:
    """A narrower head (the evolved head's neurons per pruned layer, every unit on) trained
    from scratch on all training data with the run's trainer and seed: no pruning at all."""
    t0 = time.perf_counter()
    sized = _narrow_at_size(ctx.ranker, ctx.keep)
    head = ctx.ranker.train(sized.masks)
    return BaselineResult(
        "narrow",
        accuracy(head, ctx.X_test, ctx.y_test),
        sized.active_fraction,
        head.n_params(),
        time.perf_counter() - t0,
        {"kept_units": {str(k): v for k, v in ctx.keep.items()}, **sized.details},
    )


def _always(_encoding: Encoding) -> bool:
    return True


class _MethodRegistry(MutableMapping[str, ComparisonMethod]):
    """name -> comparison method, in the order they run and are reported: the methods set
    here, with one method per ranking of :data:`~evoprune.compare.rankings.RANKINGS` (always
    current) where the rankings' place is. A method set later goes last."""

    def __init__(self, methods: Iterable[ComparisonMethod | None]) -> None:
        self._own: dict[str, ComparisonMethod | None] = {}  # None: the rankings' place
        self._rankings: dict[str, tuple[Ranking, ComparisonMethod]] = {}
        for m in methods:
            self._own[_RANKINGS_PLACE if m is None else m.name] = m

    def _ranking(self, name: str) -> ComparisonMethod:
        ranking = RANKINGS[name]
        made = self._rankings.get(name)
        if made is None or made[0] is not ranking:
            made = self._rankings[name] = (ranking, _ranking_method(name))
        return made[1]

    def _all(self) -> dict[str, ComparisonMethod]:
        out: dict[str, ComparisonMethod] = {}
        for name, m in self._own.items():
            if m is not None:
                out[name] = m
                continue
            for ranking in RANKINGS:
                if ranking not in self._own:
                    out[ranking] = self._ranking(ranking)
        return out

    def __getitem__(self, name: str) -> ComparisonMethod:
        return self._all()[name]

    def __setitem__(self, name: str, method: ComparisonMethod) -> None:
        if not isinstance(method, ComparisonMethod) or method.name != name:
            raise ConfigError(
                f"COMPARISON_METHODS[{name!r}] must be a ComparisonMethod named {name!r}"
            )
        self._own[name] = method

    def __delitem__(self, name: str) -> None:
        if name not in self._own or name == _RANKINGS_PLACE:
            raise KeyError(
                f"{name!r} is not a comparison method of its own (a ranking's method goes "
                "with its entry in RANKINGS)"
            )
        del self._own[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def __repr__(self) -> str:
        return f"COMPARISON_METHODS({list(self)})"


_RANKINGS_PLACE = "<rankings>"

#: Every comparison method, in the order it runs and is reported. A new baseline is one entry
#: here, or :func:`register_comparison_method` (a new ranking: one entry in
#: ``compare.rankings.RANKINGS``, which also puts it here and on the accuracy-size curves).
COMPARISON_METHODS: MutableMapping[str, ComparisonMethod] = _MethodRegistry(
    (
        ComparisonMethod("not_pruned", "Not pruned", _always, _not_pruned),
        ComparisonMethod("best_fixed", "Best fixed", _always, _best_fixed),
        ComparisonMethod("weight", "Weight pruning", _always, _weight),
        # connections have no unit to remove
        ComparisonMethod("neuron", "Neuron pruning", prunes_units, _neuron),
        ComparisonMethod("polynomial_decay", "Polynomial decay", _always, _polynomial_decay),
        None,  # the rankings, one method each
        ComparisonMethod(
            "narrow", "Narrower head, from scratch", _narrow_applies, _narrow, _narrow_at_size
        ),
    )
)


def register_comparison_method(method: ComparisonMethod, *, replace: bool = False) -> None:
    """Add ``method`` after the others (``replace``: overwrite one of the same name, in its
    place). Raises ConfigError if the name is taken."""
    if method.name in COMPARISON_METHODS and not replace:
        raise ConfigError(
            f"comparison method {method.name!r} exists already; pick another name or pass "
            "replace=True"
        )
    COMPARISON_METHODS[method.name] = method


class MethodLabels(Mapping[str, str]):
    """Each method's label in tables and plots, read from :data:`COMPARISON_METHODS` when
    asked: ``first`` and ``last`` labels around them, only methods that can be trained at any
    size with ``sized``."""

    def __init__(
        self,
        first: Mapping[str, str] | None = None,
        last: Mapping[str, str] | None = None,
        sized: bool = False,
    ) -> None:
        self.first, self.last, self.sized = dict(first or {}), dict(last or {}), sized

    def _all(self) -> dict[str, str]:
        own = {
            name: m.label
            for name, m in COMPARISON_METHODS.items()
            if not self.sized or m.at_size is not None
        }
        return {**self.first, **own, **self.last}

    def __getitem__(self, name: str) -> str:
        return self._all()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


#: The method names, in order (a view of :data:`COMPARISON_METHODS`).
METHODS: Sequence[str] = RegistryNames(COMPARISON_METHODS)
#: Each method's label in tables and plots (a view of :data:`COMPARISON_METHODS`).
METHOD_LABELS: Mapping[str, str] = MethodLabels()


def available_methods() -> tuple[str, ...]:
    """:data:`METHODS` less the rankings whose optional library is not installed."""
    return tuple(m for m in METHODS if m not in RANKINGS or ranking_available(m))


def methods_for(encoding: Encoding) -> tuple[str, ...]:
    """The comparison methods that apply to ``encoding``, in :data:`METHODS` order."""
    return tuple(name for name, m in COMPARISON_METHODS.items() if m.applies(encoding))


def sized_methods_for(encoding: Encoding) -> tuple[str, ...]:
    """The methods that apply to ``encoding`` and can be trained at any size (the curves')."""
    return tuple(m for m in methods_for(encoding) if COMPARISON_METHODS[m].at_size is not None)


def run_baselines(
    context: RunContext,
    evolved_mask: np.ndarray,
    *,
    schedule: PolySchedule | None = None,
    methods: tuple[str, ...] | None = None,
) -> dict[str, BaselineResult]:
    """The comparison methods of :data:`COMPARISON_METHODS` that apply to the run's encoding
    (or ``methods``, in that order), for the run of ``context`` (its data, trainer, seed,
    fitness folds and held-out images), sized like its ``evolved_mask``.

    The pruning baselines start from the context's not-pruned head
    (:attr:`~evoprune.runs.context.RunContext.reference`): the one the run trained, when the
    context reuses it (:meth:`~evoprune.runs.context.RunContext.reuse_reference`), else trained
    once there. ``schedule``: the polynomial decay's (default :class:`PolySchedule`).
    """
    names = _chosen_methods(context.encoding, methods)
    reference = context.reference
    ctx = MethodContext(
        Ranker(context, reference),
        np.asarray(evolved_mask, dtype=np.uint8),
        reference,
        context.reference_seconds,
        schedule or PolySchedule(),
    )
    return {name: COMPARISON_METHODS[name].build(ctx) for name in names}


def _chosen_methods(encoding: Encoding, methods: tuple[str, ...] | None) -> tuple[str, ...]:
    """``methods`` (default: every one that applies to ``encoding``), checked."""
    applies = methods_for(encoding)
    if methods is None:
        return applies
    wrong = [m for m in methods if m not in applies]
    if wrong:
        raise ConfigError(
            f"comparison method(s) {', '.join(wrong)} do not apply to encoding "
            f"{encoding.name!r}; choose from {', '.join(applies)}"
        )
    return tuple(methods)


def run_rankings(
    ranker: Ranker,
    evolved_mask: np.ndarray,
    X_test: np.ndarray,
    y_test: np.ndarray,
    methods: tuple[str, ...] | None = None,
) -> dict[str, BaselineResult]:
    """Each ranking of ``ranker`` (or ``methods``), keeping the top-ranked units, as many per
    layer as ``evolved_mask`` keeps, retrained on all of the ranker's training data and scored on
    (X_test, y_test), which no score sees."""
    keep = kept_units(ranker.encoding, np.asarray(evolved_mask, dtype=np.uint8))
    return {
        method: ranking_result(ranker, method, keep, X_test, y_test)
        for method in (methods if methods is not None else ranker.methods)
    }


def ranking_result(
    ranker: Ranker, method: str, keep: dict[int, int], X_test: np.ndarray, y_test: np.ndarray
) -> BaselineResult:
    """The ranking ``method``'s top ``keep[layer]`` units of each pruned layer, retrained on
    all of the ranker's training data and scored on (X_test, y_test)."""
    from evoprune.runs.store import mask_to_hex

    t0 = time.perf_counter()
    chrom, chosen = ranker.chromosome(method, keep)
    head = ranker.retrain(chrom)
    return BaselineResult(
        method,
        accuracy(head, X_test, y_test),
        float(chrom.mean()),
        head.n_params(),
        time.perf_counter() - t0,
        {
            "seed": ranker.seed,
            "kept_units": {str(k): v for k, v in keep.items()},
            "mask": mask_to_hex(chrom),
            "scored_on": f"{len(ranker.y)} training images",
            "leaked_test_set": ranker.leaked_test_set and RANKINGS[method].uses_fitness_split,
            **chosen,
        },
    )
