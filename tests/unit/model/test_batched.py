"""Several heads trained as one computation (model/batched.py) against head by head, and a
mask's fitness independent of the masks that share its batch."""

import dataclasses

import numpy as np
import pytest
import torch

from evoprune.encodings import encoding_spec, make_encoding
from evoprune.model.batched import batchable, padded, train_heads
from evoprune.model.head import TRAINERS, accuracy, predict_proba, train_head
from evoprune.problem import HeadProblem, HeadTraining, make_folds
from evoprune.settings import FitnessSettings

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _blobs(n=240, d=40, c=3, seed=0):
    g = np.random.default_rng(seed)
    centers = g.normal(scale=1.5, size=(c, d))
    y = g.integers(0, c, n)
    return (centers[y] + g.normal(size=(n, d))).astype(np.float32), y


def _chromosomes(enc, n, seed=0):
    g = np.random.default_rng(seed)
    return (g.random((n, enc.n_genes)) < g.uniform(0.3, 0.9, (n, 1))).astype(np.uint8)


#: the paper's trainer, shortened (its batch of 32 and SGD with time decay are what matter)
PAPER_SHORT = dataclasses.replace(TRAINERS["paper"], name="paper-short", max_epochs=12)


@pytest.mark.parametrize("name", ["fs", "fc", "both"])
@pytest.mark.parametrize("trainer", ["fast", PAPER_SHORT])
def test_batched_heads_agree_with_head_by_head(name, trainer):
    X, y = _blobs()
    enc = make_encoding(name, X.shape[1], 24)
    masks = [enc.decode(c) for c in _chromosomes(enc, 4)]
    together = train_heads(X, y, masks, 3, trainer, seed=5)
    for m, t in zip(masks, together):
        alone = train_head(X, y, m, 3, trainer, seed=5)
        assert t.head.sizes == alone.head.sizes
        assert t.epochs == alone.epochs
        assert t.final_loss == pytest.approx(alone.final_loss, rel=1e-4, abs=1e-6)
        p, q = predict_proba(t.head, X), predict_proba(alone.head, X)
        np.testing.assert_allclose(p, q, atol=1e-4)


def test_early_stopping_is_each_heads_own():
    X, y = _blobs(seed=1)
    enc = make_encoding("fs", X.shape[1], 16)
    short = dataclasses.replace(TRAINERS["fast"], max_epochs=40, early_stop_patience=2)
    masks = [enc.decode(c) for c in _chromosomes(enc, 5, seed=2)]
    masks.append(enc.decode(np.zeros(enc.n_genes)))  # no inputs: stops early
    together = train_heads(X, y, masks, 3, short, seed=0)
    alone = [train_head(X, y, m, 3, short, seed=0) for m in masks]
    assert [t.epochs for t in together] == [a.epochs for a in alone]
    assert len({t.epochs for t in together}) > 1  # they did stop at different epochs


def _same_state(a, b) -> bool:
    sa, sb = a.head.state_dict(), b.head.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("threads", [1, 2])
def test_a_heads_weights_do_not_depend_on_its_batch_mates(threads):
    X, y = _blobs(n=300, d=300)
    enc = make_encoding("fs", X.shape[1], 32)
    chroms = _chromosomes(enc, 4, seed=3)
    first = chroms[0].copy()
    neighbour = first.copy()
    neighbour[np.flatnonzero(first)[:3]] = 0  # the same padded shape: trained in one group
    assert padded(int(neighbour.sum())) == padded(int(first.sum()))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        masks = [enc.decode(c) for c in (first, neighbour, *chroms[1:])]
        alone = train_heads(X, y, masks[:1], 3, "fast", seed=1)[0]
        batch_a = train_heads(X, y, masks, 3, "fast", seed=1)[0]
        batch_b = train_heads(X, y, [masks[3], masks[1], masks[0]], 3, "fast", seed=1)[2]
    finally:
        torch.set_num_threads(before)
    assert _same_state(alone, batch_a) and _same_state(alone, batch_b)


def test_fitness_is_the_same_alone_and_in_two_different_batches():
    X, y = _blobs(n=300, d=200)
    enc = make_encoding("fs", X.shape[1], 32)
    folds = make_folds(X, y, FitnessSettings(fitness_split="validation", seed=0))
    problem = HeadProblem(enc, 3, folds, HeadTraining.of("fast", seed=2))
    assert problem.batched
    chroms = _chromosomes(enc, 6, seed=4)
    target = chroms[0]
    alone = problem.evaluate_fold(target, 0)
    in_a = problem.evaluate_fold_batch(np.stack([chroms[1], target, chroms[2]]), 0)[1]
    in_b = problem.evaluate_fold_batch(np.stack([target, *chroms[3:]]), 0)[0]
    assert alone.accuracy == in_a.accuracy == in_b.accuracy
    assert problem.evaluate(np.stack([target, chroms[5]]))[0].accuracy == alone.accuracy


def test_unbatched_problem_trains_head_by_head_exactly():
    X, y = _blobs()
    enc = make_encoding("fc", X.shape[1], 16)
    folds = make_folds(X, y, FitnessSettings(fitness_split="validation", seed=0))
    problem = HeadProblem(enc, 3, folds, HeadTraining.of("fast", seed=1), batch_heads=False)
    assert not problem.batched
    chroms = _chromosomes(enc, 2)
    f = folds[0]
    for c, score in zip(chroms, problem.evaluate_fold_batch(chroms, 0)):
        head = train_head(f.X_fit, f.y_fit, enc.decode(c), 3, "fast", seed=1, stats=f.stats).head
        assert score.accuracy == accuracy(head, f.X_score, f.y_score)
        # the finer score the final check breaks accuracy ties by: mean P(true class)
        proba = predict_proba(head, f.X_score)
        true_class = proba[np.arange(len(f.y_score)), f.y_score]
        assert score.probability == pytest.approx(true_class.mean())


def test_what_is_batched():
    assert batchable("fast") and batchable("paper")
    # the encodings whose masks switch whole units, as their specs say (padding can express them)
    assert all(encoding_spec(n).switches_units for n in ("fs", "fc", "fc1", "fc2", "both"))
    assert not encoding_spec("edges-fc").switches_units
    assert padded(1) == padded(128) == 128 and padded(129) == 256 and padded(0) == 128


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_batched_heads_agree_with_cpu_and_ignore_batch_mates():
    X, y = _blobs(n=300, d=200)
    enc = make_encoding("fs", X.shape[1], 32)
    masks = [enc.decode(c) for c in _chromosomes(enc, 4, seed=6)]
    cpu = train_heads(X, y, masks, 3, "fast", seed=0, device="cpu")
    gpu = train_heads(X, y, masks, 3, "fast", seed=0, device="cuda")
    gpu_alone = train_heads(X, y, masks[:1], 3, "fast", seed=0, device="cuda")[0]
    for a, b in zip(cpu, gpu):
        np.testing.assert_allclose(predict_proba(a.head, X), predict_proba(b.head, X), atol=1e-3)
    assert _same_state(gpu[0], gpu_alone)
    single = train_head(X, y, masks[0], 3, "fast", seed=0, device="cuda")
    np.testing.assert_allclose(
        predict_proba(single.head, X), predict_proba(cpu[0].head, X), atol=1e-3
    )
