"""Several heads trained as one computation: batched matrix products over heads of one shape.

:func:`train_heads` trains the heads of many masks on the same data with the same trainer and
seed, and gives what :func:`~evoprune.model.head.train_head` gives for each of them (up to float
rounding): the same initial weights (:func:`~evoprune.model.head.build_head`), the same batch
order (one generator seeded ``seed + 1``), the same optimiser (Adam or Nesterov SGD with time
decay, weight decay included) and each head's own early stopping and best weights.

Heads are grouped by a *padded* shape that depends only on the head itself (each layer rounded
up to a multiple of :data:`PAD`); padding units are zero and stay zero (no gradient reaches
them). Each group is trained with ``torch.baddbmm`` over its heads, and the optimiser steps each
head's own tensors (``torch._fused_adam_`` / ``torch._fused_sgd_`` over per-head views, so no
element is ever computed together with another head's). Hence a head's arithmetic, and its
fitness, does not depend on which other heads share its batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np
import torch

from evoprune.encodings import HeadMasks
from evoprune.model.head import (
    CompactHead,
    TrainedHead,
    TrainerConfig,
    build_head,
    feature_stats,
    get_trainer,
    train_head,
    training_tensors,
)

#: Layer widths are padded up to a multiple of this (so heads of similar size share a group).
PAD = 128
#: At most this many heads trained in one group (bounds the memory of their inputs).
MAX_GROUP = 16
#: TrainerConfig fields the batched loop implements; any other field must keep its default.
SUPPORTED_FIELDS = frozenset(
    {
        "name",
        "optimizer",
        "lr",
        "batch_size",
        "max_epochs",
        "early_stop_patience",
        "min_delta",
        "standardize",
        "momentum",
        "lr_decay",
        "weight_decay",
        "average_from",
        "min_batches",
    }
)
_ADAM_BETAS, _ADAM_EPS = (0.9, 0.999), 1e-8


def batchable(trainer: str | TrainerConfig) -> bool:
    """Whether :func:`train_heads` implements ``trainer`` (otherwise train head by head)."""
    cfg = get_trainer(trainer)
    if cfg.optimizer not in ("adam", "sgd"):
        return False
    for f in fields(cfg):
        if f.name in SUPPORTED_FIELDS:
            continue
        if getattr(cfg, f.name) != f.default:  # a setting this loop does not implement
            return False
    return True


def padded(size: int) -> int:
    """A layer width rounded up to a multiple of :data:`PAD` (at least 1 unit of room)."""
    return max(PAD, -(-int(size) // PAD) * PAD)


@dataclass
class _Group:
    """Heads of one padded shape: stacked parameters (B, out, in) / (B, out), their inputs
    (B, n, in) and optimiser state, plus per-head early-stopping bookkeeping."""

    members: list[int]  # positions in the caller's list
    weights: list[torch.Tensor]
    biases: list[torch.Tensor]
    inputs: torch.Tensor
    state: dict


def _stack_group(
    heads: dict[int, CompactHead],
    members: list[int],
    Xs: dict[int, torch.Tensor],
    shape: tuple,
    device: torch.device,
) -> _Group:
    """The heads' initial weights and inputs, zero-padded to ``shape`` (widths per layer)."""
    B, n = len(members), Xs[members[0]].shape[0]
    weights, biases = [], []
    for i in range(len(shape) - 1):
        w = torch.zeros(B, shape[i + 1], shape[i])
        b = torch.zeros(B, shape[i + 1])
        for j, m in enumerate(members):
            layer = heads[m].linears[i]
            o, a = layer.weight.shape
            w[j, :o, :a] = layer.weight.detach()
            b[j, :o] = layer.bias.detach()
        weights.append(w.to(device).requires_grad_())
        biases.append(b.to(device).requires_grad_())
    inputs = torch.zeros(B, n, shape[0])
    for j, m in enumerate(members):
        inputs[j, :, : Xs[m].shape[1]] = Xs[m]
    return _Group(members, weights, biases, inputs.to(device), {})


def _params(g: _Group) -> list[torch.Tensor]:
    return [t for pair in zip(g.weights, g.biases) for t in pair]


def _forward(g: _Group, x: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(B, m, in) -> (B, m, classes) logits of every head of the group."""
    last = len(g.weights) - 1
    for i, (w, b) in enumerate(zip(g.weights, g.biases)):
        x = torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))
        if i < last:
            x = torch.relu(x)
    return x[..., :n_classes]


def _step(g: _Group, cfg: TrainerConfig, lr: float) -> None:
    """One optimiser step of every head, each on its own tensors (per-head views)."""
    params = [p[j] for p in _params(g) for j in range(p.shape[0])]
    grads = [p.grad[j] for p in _params(g) for j in range(p.shape[0])]  # type: ignore[index]
    st = g.state
    with torch.no_grad():
        if cfg.optimizer == "adam":
            if "m" not in st:
                st["m"] = [torch.zeros_like(p) for p in _params(g)]
                st["v"] = [torch.zeros_like(p) for p in _params(g)]
                st["step"] = [torch.zeros((), device=p.device) for p in params]
            torch._foreach_add_(st["step"], 1)  # the fused kernel reads the step, as Adam does
            torch._fused_adam_(
                params,
                grads,
                [m[j] for m in st["m"] for j in range(m.shape[0])],
                [v[j] for v in st["v"] for j in range(v.shape[0])],
                [],
                st["step"],
                lr=lr,
                beta1=_ADAM_BETAS[0],
                beta2=_ADAM_BETAS[1],
                weight_decay=cfg.weight_decay,
                eps=_ADAM_EPS,
                amsgrad=False,
                maximize=False,
            )
        else:
            first = "buf" not in st
            if first:
                st["buf"] = [torch.zeros_like(p) for p in _params(g)]
            torch._fused_sgd_(
                params,
                grads,
                [b[j] for b in st["buf"] for j in range(b.shape[0])],
                weight_decay=cfg.weight_decay,
                momentum=cfg.momentum,
                lr=lr,
                dampening=0.0,
                nesterov=True,
                maximize=False,
                is_first_step=first,
            )


def _keep(g: _Group, rows: list[int]) -> _Group:
    """The group without its stopped heads (``rows``: positions kept), optimiser state included."""
    idx = torch.as_tensor(rows, device=g.inputs.device)

    def take(ts: list[torch.Tensor], grad: bool) -> list[torch.Tensor]:
        return [t.detach().index_select(0, idx).requires_grad_(grad) for t in ts]

    state = {k: take(v, False) for k, v in g.state.items() if k in ("m", "v", "buf")}
    if "step" in g.state:
        value = g.state["step"][0].detach().clone()
        n_params = len(g.weights) * 2 * len(rows)
        state["step"] = [value.clone() for _ in range(n_params)]
    return _Group(
        [g.members[r] for r in rows],
        take(g.weights, True),
        take(g.biases, True),
        g.inputs.index_select(0, idx),
        state,
    )


@dataclass
class _Track:
    """One head's early stopping as :func:`~evoprune.model.head.fit_head` keeps it: best epoch
    loss and weights, epochs without gain, and the sum of the tail-averaged weights."""

    best: float = math.inf
    stale: int = 0
    saved: list[torch.Tensor] | None = None
    tail: list[torch.Tensor] | None = None
    n_tail: int = 0
    epochs: int = 0

    def end_epoch(self, g: _Group, row: int, loss: float, epoch: int, cfg: TrainerConfig) -> bool:
        """Book the epoch; True when the head stops here."""
        self.epochs = epoch
        average_from = getattr(cfg, "average_from", 0)  # the fast trainer's tail averaging
        if average_from and epoch >= average_from:
            now = [p.detach()[row] for p in _params(g)]
            if self.tail is None:
                self.tail = [torch.zeros_like(t) for t in now]
            for t, p in zip(self.tail, now):
                t.add_(p)
            self.n_tail += 1
        if loss < self.best - cfg.min_delta:
            self.best, self.stale = loss, 0
            self.saved = [p.detach()[row].clone() for p in _params(g)]
            return False
        self.stale += 1
        return self.stale >= cfg.early_stop_patience

    def result(self) -> list[torch.Tensor]:
        """The weights the head keeps: the tail mean, else the best epoch's."""
        if self.tail is not None and self.n_tail:
            return [t / self.n_tail for t in self.tail]
        assert self.saved is not None  # the first epoch always improves on inf
        return self.saved


def _group_epoch(g: _Group, y: torch.Tensor, cfg, order, step: int, n_classes: int):
    """One epoch of mini-batches for every head of ``g``; (loss per head, steps taken)."""
    n = g.inputs.shape[1]
    bs = cfg.batch_size_for(n)
    total = torch.zeros(len(g.members), dtype=torch.float64, device=g.inputs.device)
    for start in range(0, n, bs):
        idx = order[start : start + bs]
        lr = cfg.lr / (1.0 + cfg.lr_decay * step) if cfg.lr_decay else cfg.lr
        logits = _forward(g, g.inputs.index_select(1, idx), n_classes)
        target = y[idx].repeat(len(g.members))
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, n_classes), target, reduction="none"
        )
        per_head = loss.view(len(g.members), -1).sum(1)
        for p in _params(g):
            p.grad = None
        (per_head.sum() / idx.numel()).backward()
        _step(g, cfg, lr)
        total += per_head.detach().double()  # as fit_head's float sum of each batch's loss
        step += 1
    return (total / n).tolist(), step


def _train_group(
    g: _Group, y: torch.Tensor, cfg: TrainerConfig, gen: torch.Generator, n_classes: int
) -> dict[int, _Track]:
    """Train a group to the end of each head's early stopping; {member: its track}. Stopped
    heads leave the group, so the others train on alone."""
    tracks = {m: _Track() for m in g.members}
    step = 0
    for epoch in range(1, cfg.max_epochs + 1):
        order = torch.randperm(g.inputs.shape[1], generator=gen).to(g.inputs.device)
        losses, step = _group_epoch(g, y, cfg, order, step, n_classes)
        keep = [
            r
            for r, (m, loss) in enumerate(zip(g.members, losses))
            if not tracks[m].end_epoch(g, r, loss, epoch, cfg)
        ]
        if not keep:
            break
        if len(keep) < len(g.members):
            g = _keep(g, keep)
    return tracks


def _unpad(head: CompactHead, params: list[torch.Tensor]) -> CompactHead:
    """``head`` (on the CPU) with the trained weights, cut back from the padded ones."""
    with torch.no_grad():
        for i, layer in enumerate(head.linears):
            o, a = layer.weight.shape
            layer.weight.copy_(params[2 * i][:o, :a].cpu())
            layer.bias.copy_(params[2 * i + 1][:o].cpu())
    return head.eval()


def train_heads(
    X: np.ndarray,
    y: np.ndarray,
    masks: list[HeadMasks],
    n_classes: int,
    trainer: str | TrainerConfig = "fast",
    seed: int = 0,
    stats: tuple[np.ndarray, np.ndarray] | None = None,
    device: str | torch.device = "cpu",
    on_trained: Callable[[int], None] | None = None,
) -> list[TrainedHead]:
    """:func:`~evoprune.model.head.train_head` for each of ``masks``, trained in groups of one
    padded shape on ``device``; heads come back on the CPU, in the order of ``masks``. Masks
    with pruned connections, and trainers :func:`batchable` refuses, train head by head.
    ``on_trained(k)`` is called each time ``k`` more heads are trained (a group, or one head)."""
    done = on_trained or (lambda k: None)
    from evoprune.devices import resolve_device

    cfg = get_trainer(trainer)
    dev = resolve_device(device)
    alone = [bool(getattr(m, "connections", None)) or not batchable(cfg) for m in masks]
    out: dict[int, TrainedHead] = {}
    for i, m in enumerate(masks):
        if alone[i]:
            out[i] = train_head(X, y, m, n_classes, cfg, seed, stats, dev)
            done(1)
    mean = std = None
    if cfg.standardize:
        mean, std = stats if stats is not None else feature_stats(X)
    todo = [i for i in range(len(masks)) if not alone[i]]
    heads = {i: build_head(masks[i], n_classes, mean=mean, std=std, seed=seed) for i in todo}
    Xs = {i: training_tensors(h, X, y)[0] for i, h in heads.items()}
    y_t = torch.as_tensor(np.asarray(y, dtype=np.int64)).to(dev)
    shapes = {i: tuple(padded(s) for s in h.sizes[:-1]) + (h.sizes[-1],) for i, h in heads.items()}
    for shape in dict.fromkeys(shapes.values()):
        same = [i for i in todo if shapes[i] == shape]
        for start in range(0, len(same), MAX_GROUP):
            g = _stack_group(heads, same[start : start + MAX_GROUP], Xs, shape, dev)
            gen = torch.Generator().manual_seed(int(seed) + 1)
            trained = _train_group(g, y_t, cfg, gen, n_classes)
            for j, t in trained.items():
                out[j] = TrainedHead(_unpad(heads[j], t.result()), t.epochs, t.best)
            done(len(trained))
    return [out[i] for i in range(len(masks))]
