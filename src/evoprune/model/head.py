"""The classifier head for one mask: built physically small, trained from scratch, scored.

Pruned neurons and unselected features are removed from the weight matrices, so the trained
network is the smaller dense one that the paper's masked network is equivalent to, and its cost
follows its density. Two trainers: ``paper`` (the paper's exact settings) and ``fast`` (the
default, designed for CPUs; see :data:`TRAINERS`).
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
from torch import nn

from evoprune.devices import resolve_device
from evoprune.encodings import HeadMasks
from evoprune.errors import ConfigError

#: (field, lowest, highest) of a trainer's numbers; the whole numbers among them.
_TRAINER_BOUNDS = (
    ("lr", 0.0, 10.0),
    ("batch_size", 1, 1_000_000),
    ("max_epochs", 1, 100_000),
    ("early_stop_patience", 0, 100_000),
    ("min_delta", 0.0, 1.0),
    ("momentum", 0.0, 1.0),
    ("lr_decay", 0.0, 1.0),
    ("weight_decay", 0.0, 1.0),
    ("average_from", 0, 100_000),
    ("min_batches", 1, 1_000_000),
)
_TRAINER_INTS = {
    "batch_size",
    "max_epochs",
    "early_stop_patience",
    "average_from",
    "min_batches",
}


@dataclass(frozen=True)
class TrainerConfig:
    """How a head is trained. ``early_stop_patience`` counts epochs without training-loss gain."""

    name: str
    optimizer: str  # "sgd" (Nesterov momentum, Keras-style time decay) or "adam"
    lr: float
    batch_size: int
    max_epochs: int
    early_stop_patience: int
    min_delta: float
    standardize: bool
    momentum: float = 0.9
    lr_decay: float = 0.0
    weight_decay: float = 0.0
    # > 0: the head keeps the mean of the weights at the ends of epochs average_from, ... (1-based)
    # up to the last epoch run, instead of the best epoch's (tail averaging, as in SWA)
    average_from: int = 0
    # at least this many mini-batches an epoch: small training sets get smaller batches, so
    # that a few hundred samples still get enough optimiser steps (1: batch_size as it is)
    min_batches: int = 1

    def batch_size_for(self, n: int) -> int:
        """The mini-batch size for ``n`` training samples."""
        return max(1, min(self.batch_size, n, math.ceil(n / max(1, int(self.min_batches)))))

    def __post_init__(self) -> None:
        # every value typed and bounded (a saved config.json may have been edited: 1e9 epochs
        # and patience made analyses run without end)
        for name, low, high in _TRAINER_BOUNDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(
                    f"trainer {self.name!r}: {name}={value!r} must be a number in [{low}, {high:,}]"
                )
            if not (math.isfinite(value) and low <= value <= high) or (
                name in _TRAINER_INTS and value != int(value)
            ):
                raise ConfigError(
                    f"trainer {self.name!r}: {name}={value!r} must be "
                    f"{'a whole number' if name in _TRAINER_INTS else 'a number'} in "
                    f"[{low}, {high:,}] (more epochs or patience could not finish in a day)"
                )
        if int(self.average_from) < 0:
            raise ConfigError(
                f"trainer {self.name!r}: average_from={self.average_from} must be 0 (off) or "
                "the first epoch (1-based) whose weights are averaged"
            )

    def describe(self) -> dict:
        return dict(self.__dict__)


TRAINERS: dict[str, TrainerConfig] = {
    # The paper: SGD 1e-3, momentum 0.9, Nesterov, decay 1e-6, batch 32, <= 600 epochs, early
    # stopping after 10 epochs without training-loss improvement (min delta 1e-5), best weights.
    "paper": TrainerConfig(
        name="paper",
        optimizer="sgd",
        lr=1e-3,
        lr_decay=1e-6,
        batch_size=32,
        max_epochs=600,
        early_stop_patience=10,
        min_delta=1e-5,
        standardize=False,
    ),
    # Fast: standardised inputs and Adam with large batches converge in a few epochs; the
    # same kind of early stopping on the training loss, so nothing outside the training data
    # is used; L2 weight decay 1e-2 and the mean of the weights of epochs 10-15 (tail
    # averaging) make the result steadier. Measured on ELPV (12 masks, validation split):
    # within 0.2 points of the paper trainer's accuracy, about 90 times faster
    # (benchmarks/trainer.py).
    "fast": TrainerConfig(
        name="fast",
        optimizer="adam",
        lr=2e-3,
        batch_size=256,
        max_epochs=15,
        early_stop_patience=3,
        min_delta=1e-4,
        standardize=True,
        weight_decay=1e-2,
        average_from=10,
        min_batches=4,
    ),
}


def get_trainer(trainer: str | TrainerConfig) -> TrainerConfig:
    """The trainer called ``trainer`` (or ``trainer`` itself when it is a config already)."""
    if isinstance(trainer, TrainerConfig):
        return trainer
    if trainer not in TRAINERS:
        raise ConfigError(f"trainer={trainer!r} is unknown; choose one of {', '.join(TRAINERS)}")
    return TRAINERS[trainer]


class CompactHead(nn.Module):
    """features -> [select, standardise] -> (Linear, ReLU) x k -> Linear logits.

    ``feature_index`` holds the positions of the selected input features, so the module takes
    the backbone's full feature vector and is self-contained for export.
    """

    # buffers, declared for type checkers (nn.Module.__getattr__ is typed Tensor | Module)
    feature_index: torch.Tensor
    shift: torch.Tensor
    scale: torch.Tensor

    def __init__(
        self,
        n_inputs: int,
        feature_index: np.ndarray,
        hidden_sizes: tuple[int, ...],
        n_classes: int,
        mean: np.ndarray | None = None,
        std: np.ndarray | None = None,
    ):
        super().__init__()
        self.n_inputs = int(n_inputs)
        index = torch.as_tensor(np.asarray(feature_index, dtype=np.int64))
        self.register_buffer("feature_index", index)
        k = index.numel()
        shift = torch.zeros(k) if mean is None else torch.as_tensor(mean, dtype=torch.float32)
        scale = torch.ones(k) if std is None else torch.as_tensor(1.0 / std, dtype=torch.float32)
        self.register_buffer("shift", shift.reshape(k))
        self.register_buffer("scale", scale.reshape(k))
        sizes = (k,) + tuple(int(h) for h in hidden_sizes) + (int(n_classes),)
        # Uninitialised: build_head() draws the weights, loading fills them from a file. A
        # layer with no inputs left (every feature pruned) is legal: it outputs its bias.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
            self.layers = nn.ModuleList(
                nn.utils.skip_init(nn.Linear, a, b) for a, b in zip(sizes[:-1], sizes[1:])
            )

    @classmethod
    def from_state_dict(
        cls, state: dict[str, torch.Tensor], n_inputs: int | None = None
    ) -> CompactHead:
        """A head rebuilt from a saved state dict, its layer sizes read from the weight shapes.

        ``n_inputs`` is the backbone's feature size (not stored in the state dict); by default
        the smallest size that holds every selected feature.
        """
        n_layers = sum(1 for k in state if k.startswith("layers.") and k.endswith(".weight"))
        try:
            index = state["feature_index"]
            weights = [state[f"layers.{i}.weight"] for i in range(n_layers)]
        except KeyError as exc:
            raise ConfigError(f"not a CompactHead state dict: {exc} is missing") from None
        if not weights:
            raise ConfigError("not a CompactHead state dict: it has no layers")
        if n_inputs is None:
            n_inputs = int(index.max()) + 1 if index.numel() else 0
        elif index.numel() and int(index.max()) >= n_inputs:
            raise ConfigError(
                f"the head selects feature {int(index.max())} but the features "
                f"have only {n_inputs} values"
            )
        head = cls(
            n_inputs, index.numpy(), tuple(w.shape[0] for w in weights[:-1]), weights[-1].shape[0]
        )
        try:
            head.load_state_dict(state)
        except RuntimeError as exc:
            raise ConfigError(f"inconsistent CompactHead state dict: {exc}") from None
        return head.eval()

    @property
    def linears(self) -> list[nn.Linear]:
        """``layers`` as what they are: a ModuleList is typed as holding plain Modules."""
        return [cast(nn.Linear, layer) for layer in self.layers]

    @property
    def sizes(self) -> tuple[int, ...]:
        return (self.linears[0].in_features,) + tuple(layer.out_features for layer in self.linears)

    def mlp(self, x: torch.Tensor) -> torch.Tensor:
        """Logits from inputs already selected and standardised (the training path)."""
        for layer in self.layers[:-1]:
            x = torch.relu(layer(x))
        return self.layers[-1](x)

    def forward_selected(self, x: torch.Tensor) -> torch.Tensor:
        """Logits from inputs already restricted to the selected features (unstandardised)."""
        return self.mlp((x - self.shift) * self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_selected(x.index_select(1, self.feature_index))

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def n_macs(self) -> int:
        """Multiply-adds for one input vector."""
        return sum(layer.in_features * layer.out_features for layer in self.linears)


def dense_sizes(n_features: int, hidden: tuple[int, ...], n_classes: int) -> tuple[int, int]:
    """(parameters, multiply-adds) of the unpruned head."""
    sizes = (n_features,) + tuple(hidden) + (n_classes,)
    params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    macs = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    return params, macs


def _glorot(fan_out: int, fan_in: int, gen: torch.Generator) -> torch.Tensor:
    """Keras' default initialisation of a (fan_out, fan_in) weight: Glorot-uniform."""
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return torch.empty(fan_out, fan_in).uniform_(-bound, bound, generator=gen)


def build_head(
    masks: HeadMasks,
    n_classes: int,
    *,
    mean: np.ndarray | None = None,
    std: np.ndarray | None = None,
    seed: int = 0,
) -> CompactHead:
    """An initialised compact head with only the units that ``masks`` keep.

    Weights are drawn for the *full* layers from ``seed`` and then sliced, so a unit keeps the
    same initial weights whatever else is pruned (a compact head equals the masked dense one).
    """
    gen = torch.Generator().manual_seed(int(seed))
    full_sizes = (masks.features.size,) + tuple(m.size for m in masks.hidden) + (n_classes,)
    keep = [np.flatnonzero(masks.features)] + [np.flatnonzero(m) for m in masks.hidden]
    keep.append(np.arange(n_classes))
    feature_index = keep[0]
    sel_mean = None if mean is None else np.asarray(mean)[feature_index]
    sel_std = None if std is None else np.asarray(std)[feature_index]
    head = CompactHead(
        full_sizes[0],
        feature_index,
        tuple(len(k) for k in keep[1:-1]),
        n_classes,
        sel_mean,
        sel_std,
    )
    for i, layer in enumerate(head.linears):
        full = _glorot(full_sizes[i + 1], full_sizes[i], gen)
        rows, cols = torch.as_tensor(keep[i + 1]), torch.as_tensor(keep[i])
        with torch.no_grad():
            layer.weight.copy_(full[rows][:, cols])
            layer.bias.zero_()
    _prune_connections(head, masks, keep)
    return head


def _prune_connections(head: CompactHead, masks: HeadMasks, keep: list[np.ndarray]) -> None:
    """Zero the weights of the connections ``masks`` switch off (the ``edges`` encodings) and
    keep them zero in training: their gradients are masked, so the optimiser's step (SGD with
    momentum, Adam, weight decay) leaves them at exactly 0 without any step in the loop."""
    for i, full in masks.connections.items():
        weight = head.linears[i].weight
        kept = np.ascontiguousarray(np.asarray(full, dtype=bool)[np.ix_(keep[i + 1], keep[i])])
        mask = torch.as_tensor(kept, dtype=weight.dtype)
        with torch.no_grad():
            weight.mul_(mask)
        weight.register_hook(functools.partial(_masked_gradient, mask))


def _masked_gradient(mask: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    return grad * mask.to(grad.device)


def nonzero_params(head: CompactHead) -> int:
    """Parameters that are not zero: what a head with pruned connections really holds."""
    return int(sum(int(torch.count_nonzero(p)) for p in head.parameters()))


def feature_stats(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and standard deviation (1 where a feature is constant)."""
    X = np.asarray(X, dtype=np.float64)
    mean = X.mean(axis=0)
    std = X.std(axis=0)
    std[std < 1e-8] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def training_tensors(
    head: CompactHead, X: np.ndarray, y: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs selected and standardised for ``head``, labels) as tensors, computed once."""
    Xs = torch.as_tensor(
        np.ascontiguousarray(np.asarray(X, dtype=np.float32)[:, head.feature_index.numpy()])
    )
    Xs, ys = Xs.to(head.shift.device), torch.as_tensor(np.asarray(y, dtype=np.int64))
    return (Xs - head.shift) * head.scale, ys.to(head.shift.device)


def make_optimizer(params: list, cfg: TrainerConfig) -> torch.optim.Optimizer:
    """The trainer's optimiser: SGD with Nesterov momentum, or Adam."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, nesterov=True, weight_decay=cfg.weight_decay
        )
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


@dataclass
class TrainedHead:
    head: CompactHead
    epochs: int
    final_loss: float


class TrainingHooks:
    """Steps a caller adds to :func:`fit_head`'s loop (skorch-style callback object); each
    default does nothing. Polynomial decay prunes with them while fine-tuning."""

    def on_epoch_start(self, head: CompactHead, epoch: int) -> None:
        """Before the batches of ``epoch`` (0-based)."""

    def after_backward(self, head: CompactHead) -> None:
        """Gradients computed, before the optimiser's step."""

    def after_step(self, head: CompactHead) -> None:
        """After the optimiser's step."""


def fit_head(
    head: CompactHead,
    X: np.ndarray,
    y: np.ndarray,
    cfg: TrainerConfig,
    generator: torch.Generator,
    *,
    early_stopping: bool = True,
    hooks: TrainingHooks | None = None,
) -> TrainedHead:
    """The one training loop: ``cfg.max_epochs`` epochs of shuffled mini-batches over (X, y),
    updating ``head`` in place; returns it in eval mode.

    With ``early_stopping`` it stops after ``cfg.early_stop_patience`` epochs without a
    training-loss gain of ``cfg.min_delta`` and keeps the weights of the best epoch; without, it
    runs every epoch and keeps the last weights. With ``cfg.average_from`` it keeps instead the
    mean of the weights at the ends of the epochs from that one on (when training got there).
    ``generator`` draws the batch orders.
    """
    hooks = hooks if hooks is not None else TrainingHooks()
    head.train()
    Xs, ys = training_tensors(head, X, y)
    params = list(head.parameters())
    opt = make_optimizer(params, cfg)
    n = Xs.shape[0]
    bs = cfg.batch_size_for(n)
    best_loss = math.inf
    best_state = None
    stale = 0
    step = 0
    epoch = 0
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    tail = [torch.zeros_like(p) for p in params] if cfg.average_from else []
    n_tail = 0
    for epoch in range(1, cfg.max_epochs + 1):
        hooks.on_epoch_start(head, epoch - 1)
        order = torch.randperm(n, generator=generator)
        total, step = _epoch(head, Xs, ys, order, bs, opt, cfg, step, loss_fn, hooks)
        epoch_loss = total / n
        if tail and epoch >= cfg.average_from:
            for t, p in zip(tail, params):
                t.add_(p.detach())
            n_tail += 1
        if epoch_loss < best_loss - cfg.min_delta:
            best_loss = epoch_loss
            if early_stopping:
                best_state = [p.detach().clone() for p in params]
            stale = 0
        else:
            stale += 1
            if early_stopping and stale >= cfg.early_stop_patience:
                break
    if n_tail:
        best_state = [t / n_tail for t in tail]
    if best_state is not None:
        with torch.no_grad():
            for p, saved in zip(params, best_state):
                p.copy_(saved)
    head.eval()
    return TrainedHead(head=head, epochs=epoch, final_loss=best_loss)


def _epoch(head, Xs, ys, order, bs: int, opt, cfg: TrainerConfig, step: int, loss_fn, hooks):
    """One pass of mini-batches in ``order``: (summed loss, optimiser steps so far)."""
    total = 0.0
    for start in range(0, Xs.shape[0], bs):
        idx = order[start : start + bs]
        if cfg.lr_decay:
            for group in opt.param_groups:
                group["lr"] = cfg.lr / (1.0 + cfg.lr_decay * step)
        logits = head.mlp(Xs[idx])
        loss = loss_fn(logits, ys[idx])
        opt.zero_grad(set_to_none=True)
        (loss / idx.numel()).backward()
        hooks.after_backward(head)
        opt.step()
        hooks.after_step(head)
        total += float(loss.detach())
        step += 1
    return total, step


def train_head(
    X: np.ndarray,
    y: np.ndarray,
    masks: HeadMasks,
    n_classes: int,
    trainer: str | TrainerConfig = "fast",
    seed: int = 0,
    stats: tuple[np.ndarray, np.ndarray] | None = None,
    device: str | torch.device = "cpu",
) -> TrainedHead:
    """Train a compact head for ``masks`` from scratch on (X, y); deterministic for a seed.

    ``stats`` are the (mean, std) of the training features, used by trainers that standardise;
    computed from ``X`` when not given. The head trains on ``device`` (``auto``, ``cpu``,
    ``cuda``; see :func:`evoprune.devices.resolve_device`) and comes back on the CPU.
    """
    cfg = get_trainer(trainer)
    mean = std = None
    if cfg.standardize:
        mean, std = stats if stats is not None else feature_stats(X)
    head = build_head(masks, n_classes, mean=mean, std=std, seed=seed)
    dev = resolve_device(device)
    if dev.type == "cpu":  # exactly the CPU path of before
        return fit_head(head, X, y, cfg, torch.Generator().manual_seed(int(seed) + 1))
    trained = fit_head(head.to(dev), X, y, cfg, torch.Generator().manual_seed(int(seed) + 1))
    trained.head.cpu()
    return trained


@torch.no_grad()
def logits(head: CompactHead, X: np.ndarray) -> np.ndarray:
    """Class scores before softmax for full backbone feature vectors ``X``."""
    return head(torch.as_tensor(np.asarray(X, dtype=np.float32))).numpy()


def softmax(z: np.ndarray) -> np.ndarray:
    """Class probabilities of class scores ``z`` (rows: images)."""
    return torch.softmax(torch.as_tensor(z), dim=1).numpy()


def predict_proba(head: CompactHead, X: np.ndarray) -> np.ndarray:
    """Class probabilities for full backbone feature vectors ``X``."""
    return softmax(logits(head, X))


def accuracy(head: CompactHead, X: np.ndarray, y: np.ndarray) -> float:
    """Fraction of ``X`` whose most probable class is ``y``."""
    if len(y) == 0:
        return float("nan")
    return float((predict_proba(head, X).argmax(axis=1) == np.asarray(y)).mean())
