"""Encodings decode to the right units; compact heads equal masked dense ones; trainers."""

import dataclasses

import numpy as np
import pytest
import torch

from evoprune.encodings import HeadMasks, make_encoding
from evoprune.errors import ConfigError
from evoprune.model.head import (
    TRAINERS,
    TrainingHooks,
    accuracy,
    build_head,
    dense_sizes,
    feature_stats,
    fit_head,
    predict_proba,
    train_head,
)


@pytest.mark.parametrize(
    "name,genes,layers",
    [("fs", 64, 1), ("fc", 16, 1), ("fc1", 16, 2), ("fc2", 16, 2), ("both", 32, 2)],
)
def test_encoding_sizes(name, genes, layers):
    enc = make_encoding(name, 64, hidden_size=16)
    assert enc.n_genes == genes and len(enc.hidden) == layers


def test_encodings_decode_to_the_right_units():
    chrom16 = np.zeros(16, dtype=np.uint8)
    chrom16[[1, 5, 9]] = 1
    fs = make_encoding("fs", 16, 8).decode(chrom16)
    assert np.flatnonzero(fs.features).tolist() == [1, 5, 9] and fs.hidden[0].all()
    fc = make_encoding("fc", 30, 16).decode(chrom16)
    assert fc.features.all() and np.flatnonzero(fc.hidden[0]).tolist() == [1, 5, 9]
    fc1 = make_encoding("fc1", 30, 16).decode(chrom16)
    assert np.flatnonzero(fc1.hidden[0]).tolist() == [1, 5, 9] and fc1.hidden[1].all()
    fc2 = make_encoding("fc2", 30, 16).decode(chrom16)
    assert fc2.hidden[0].all() and np.flatnonzero(fc2.hidden[1]).tolist() == [1, 5, 9]
    both = np.zeros(32, dtype=np.uint8)
    both[[0, 15, 16, 31]] = 1
    m = make_encoding("both", 30, 16).decode(both)
    assert np.flatnonzero(m.hidden[0]).tolist() == [0, 15]
    assert np.flatnonzero(m.hidden[1]).tolist() == [0, 15]
    assert m.sizes == (30, 2, 2)


def test_encoding_errors_name_the_argument():
    with pytest.raises(ConfigError, match="encoding='fc3'"):
        make_encoding("fc3", 10)
    with pytest.raises(ConfigError, match="genes"):
        make_encoding("fs", 10).decode(np.ones(9))


def _masked_dense_forward(dense, masks, x):
    """The paper's formulation: full-size weights, pruned units multiplied by zero."""
    h = (x - dense.shift) * dense.scale * torch.as_tensor(masks.features, dtype=torch.float32)
    for layer, m in zip(dense.layers[:-1], masks.hidden):
        h = torch.relu(layer(h)) * torch.as_tensor(m, dtype=torch.float32)
    return dense.layers[-1](h)


@pytest.mark.parametrize("name", ["fs", "fc", "fc1", "fc2", "both"])
def test_compact_head_equals_masked_dense_head(name):
    g = np.random.default_rng(0)
    enc = make_encoding(name, 40, hidden_size=24)
    chrom = (g.random(enc.n_genes) < 0.5).astype(np.uint8)
    masks = enc.decode(chrom)
    mean, std = g.normal(size=40).astype(np.float32), g.uniform(0.5, 2, 40).astype(np.float32)
    compact = build_head(masks, 5, mean=mean, std=std, seed=7)
    full_masks = enc.decode(enc.full())
    dense = build_head(full_masks, 5, mean=mean, std=std, seed=7)
    x = torch.as_tensor(g.normal(size=(12, 40)).astype(np.float32))
    with torch.no_grad():
        assert torch.allclose(compact(x), _masked_dense_forward(dense, masks, x), atol=1e-5)
    # physically smaller: parameters and multiply-adds follow the active units
    k = masks.sizes
    sizes = (k[0],) + k[1:] + (5,)
    assert compact.n_macs() == sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    assert compact.n_params() == compact.n_macs() + sum(sizes[1:])
    assert compact.n_params() < dense.n_params() == dense_sizes(40, enc.hidden, 5)[0]


def _blobs(n=300, d=20, c=3, seed=0):
    g = np.random.default_rng(seed)
    centers = g.normal(scale=3, size=(c, d))
    y = g.integers(0, c, n)
    X = (centers[y] + g.normal(size=(n, d))).astype(np.float32)
    return X, y


@pytest.mark.parametrize("trainer", ["fast", "paper"])
def test_trainers_learn_and_are_deterministic(trainer):
    X, y = _blobs()
    masks = make_encoding("fc", 20, 16).decode(np.ones(16))
    a = train_head(X, y, masks, 3, trainer, seed=3)
    b = train_head(X, y, masks, 3, trainer, seed=3)
    assert accuracy(a.head, X, y) > 0.9
    assert np.array_equal(predict_proba(a.head, X), predict_proba(b.head, X))
    assert a.epochs <= TRAINERS[trainer].max_epochs


def test_paper_trainer_settings_are_the_papers():
    p = TRAINERS["paper"]
    assert (
        p.optimizer,
        p.lr,
        p.momentum,
        p.batch_size,
        p.max_epochs,
        p.early_stop_patience,
        p.min_delta,
        p.lr_decay,
        p.weight_decay,
        p.average_from,
    ) == ("sgd", 1e-3, 0.9, 32, 600, 10, 1e-5, 1e-6, 0.0, 0)


def test_empty_feature_selection_still_predicts():
    X, y = _blobs()
    masks = HeadMasks(features=np.zeros(20, bool), hidden=(np.ones(8, bool),))
    trained = train_head(X, y, masks, 3, "fast", seed=0)
    proba = predict_proba(trained.head, X)
    assert proba.shape == (300, 3) and np.allclose(proba.sum(axis=1), 1, atol=1e-5)


def test_feature_stats_guard_constant_features():
    X = np.ones((10, 3), dtype=np.float32)
    mean, std = feature_stats(X)
    assert (std == 1).all() and (mean == 1).all()


class _EpochWeights(TrainingHooks):
    """Records the weights at the end of every epoch (seen at the start of the next)."""

    def __init__(self):
        self.ends = []

    def on_epoch_start(self, head, epoch):
        if epoch:
            self.ends.append([p.detach().clone() for p in head.parameters()])


def test_average_from_keeps_the_mean_of_the_last_epochs_weights():
    X, y = _blobs()
    masks = make_encoding("fs", 20, 8).decode(np.ones(20))
    plain = dataclasses.replace(TRAINERS["fast"], max_epochs=5, average_from=0)
    runs = []
    for cfg in (plain, dataclasses.replace(plain, average_from=3)):
        head = build_head(masks, 3, seed=1)
        hooks = _EpochWeights()
        fit_head(head, X, y, cfg, torch.Generator().manual_seed(2), early_stopping=False,
                 hooks=hooks)  # fmt: skip
        runs.append((head, hooks.ends))
    (last, ends), (averaged, _) = runs
    kept = ends[2:] + [[p.detach() for p in last.parameters()]]  # ends of epochs 3, 4 and 5
    for i, p in enumerate(averaged.parameters()):
        expected = torch.stack([w[i] for w in kept]).mean(0)
        assert torch.allclose(p, expected, atol=1e-6)
        assert not torch.allclose(p, kept[-1][i])


def test_average_from_must_not_be_negative():
    with pytest.raises(ConfigError, match="average_from=-1"):
        dataclasses.replace(TRAINERS["fast"], average_from=-1)


def test_small_training_sets_get_smaller_batches_not_fewer_steps():
    from evoprune.model.head import TRAINERS

    fast, paper = TRAINERS["fast"], TRAINERS["paper"]
    # ELPV-sized fitting data keeps the fast trainer's batch of 256
    assert fast.batch_size_for(1679) == 256
    # a few dozen samples: at least 4 mini-batches an epoch instead of one
    assert fast.batch_size_for(48) == 12
    assert fast.batch_size_for(3) == 1
    # the paper trainer is as published: batch 32 whatever the size
    assert paper.batch_size_for(48) == 32 and paper.batch_size_for(10) == 10
