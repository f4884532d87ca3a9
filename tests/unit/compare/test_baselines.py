"""The comparison methods really prune: exact fractions, the right layers, the cubic schedule,
and best fixed chosen by fitness inside the training data (never by the test set)."""

import numpy as np
import pytest
import torch

from evoprune import problem as pb
from evoprune.compare import baselines as bl
from evoprune.compare import rankings as rk
from evoprune.encodings import make_encoding
from evoprune.errors import ConfigError
from evoprune.model.head import accuracy, train_head
from evoprune.runs.config import RunConfig
from evoprune.runs.context import RunContext

N_FEATURES, HIDDEN, N_CLASSES = 24, 16, 3
CLASSES = [f"class{c}" for c in range(N_CLASSES)]
PRUNED = {"fs": (0,), "fc": (0,), "fc1": (0,), "fc2": (1,), "both": (0, 1)}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data():
    """Three separable classes in 24 noisy features (a few informative ones)."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(N_CLASSES), 50)
    X = rng.normal(size=(len(y), N_FEATURES)).astype(np.float32)
    X[:, :6] += 2.0 * np.eye(N_CLASSES)[y].repeat(2, axis=1)
    order = rng.permutation(len(y))
    X, y = X[order], y[order]
    return X[:120], y[:120], X[120:], y[120:]


@pytest.fixture(scope="module")
def heads(data):
    """The trained not-pruned head of each encoding."""
    X, y = data[0], data[1]
    out = {}
    for name in PRUNED:
        enc = make_encoding(name, N_FEATURES, HIDDEN)
        out[name] = train_head(X, y, enc.decode(enc.full()), N_CLASSES, "fast", seed=0).head
    return out


def _context(enc, X, y, *, seed=0, trainer=None, held_out=None):
    """The run context of a run of ``enc`` on (X, y), heads on the CPU."""
    cfg = RunConfig(encoding=enc.name, hidden_size=HIDDEN, seed=seed, device="cpu")
    return RunContext.of_arrays(cfg, X, y, CLASSES, trainer=trainer, held_out=held_out)


def _mask(enc, fraction, seed=1):
    rng = np.random.default_rng(seed)
    m = np.zeros(enc.n_genes, dtype=np.uint8)
    m[rng.choice(enc.n_genes, int(round(fraction * enc.n_genes)), replace=False)] = 1
    return m


@pytest.mark.parametrize("name", list(PRUNED))
def test_targets_are_the_layers_the_genes_act_on(name):
    enc = make_encoding(name, N_FEATURES, HIDDEN)
    targets = enc.prune_targets
    assert tuple(t.layer for t in targets) == PRUNED[name]
    units = ["inputs"] if name == "fs" else ["neurons"] * len(targets)
    assert [t.units for t in targets] == units


@pytest.mark.parametrize("name", list(PRUNED))
@pytest.mark.parametrize("keep", [0.375, 0.8])
def test_weight_pruning_zeroes_exactly_the_smallest_weights(heads, name, keep):
    ref = heads[name]
    pruned = bl.weight_prune(ref, PRUNED[name], keep)
    for i, (a, b) in enumerate(zip(ref.layers, pruned.layers)):
        w0, w1 = a.weight.detach(), b.weight.detach()
        if i in PRUNED[name]:
            n = w0.numel()
            assert int((w1 == 0).sum()) == n - round(keep * n)
            zeroed, kept = w0[w1 == 0].abs(), w0[w1 != 0].abs()
            assert zeroed.max() <= kept.min()  # the smallest magnitudes went
            assert torch.equal(w1[w1 != 0], w0[w1 != 0])  # no fine-tuning
        else:
            assert torch.equal(w0, w1)
        assert torch.equal(a.bias, b.bias)
    assert int((ref.layers[PRUNED[name][0]].weight == 0).sum()) == 0  # the original is untouched


@pytest.mark.parametrize("name", list(PRUNED))
def test_neuron_pruning_physically_removes_the_weakest_units(data, heads, name):
    ref = heads[name]
    enc = make_encoding(name, N_FEATURES, HIDDEN)
    mask = _mask(enc, 0.4)
    keep = bl.kept_units(enc, mask)
    small = bl.neuron_prune(ref, enc.prune_targets, keep)
    sizes = list(ref.sizes)
    dense = [layer.weight.detach().clone() for layer in ref.layers]
    biases = [layer.bias.detach().clone() for layer in ref.layers]
    for t in enc.prune_targets:
        k = keep[t.layer]
        if t.units == "inputs":
            sizes[0] = k
            norms = dense[0].norm(dim=0)
            gone = torch.argsort(norms)[: norms.numel() - k]
            assert norms[gone].max() <= norms[small.feature_index].min()
            dense[0][:, gone] = 0
        else:
            sizes[t.layer + 1] = k
            norms = ref.layers[t.layer].weight.detach().norm(dim=1)
            gone = torch.argsort(norms)[: norms.numel() - k]
            dense[t.layer][gone] = 0
            biases[t.layer][gone] = 0
    # exactly the evolved head's units per layer, physically removed
    assert list(small.sizes) == sizes
    assert sum(keep.values()) == int(mask.sum())
    # ... and it computes what the dense head computes with those units zeroed
    X = torch.as_tensor(data[2])
    h = (X - ref.shift) * ref.scale
    for i, (w, b) in enumerate(zip(dense, biases)):
        h = h @ w.T + b
        if i < len(dense) - 1:
            h = torch.relu(h)
    with torch.no_grad():
        assert torch.allclose(small(X), h, atol=1e-5)


def test_polynomial_schedule_is_cubic_from_initial_to_final():
    s = bl.polynomial_schedule(0.7, initial_sparsity=0.1, epochs=25, frequency=5)
    epochs, values = zip(*s)
    assert epochs == (0, 5, 10, 15, 20)  # final sparsity reached with 5 epochs left to recover
    assert values[0] == pytest.approx(0.1) and values[-1] == pytest.approx(0.7)
    for t, v in s:
        assert v == pytest.approx(0.7 + (0.1 - 0.7) * (1 - t / 20) ** 3)
    assert all(a < b for a, b in zip(values, values[1:]))
    # steeper early than late (cubic, not linear)
    assert values[1] - values[0] > values[-1] - values[-2]
    # a target below the initial sparsity is never overshot (pruned weights are not restored)
    assert all(v == pytest.approx(0.05) for _, v in bl.polynomial_schedule(0.05))


@pytest.mark.parametrize("name", ["fs", "fc2", "both"])
def test_polynomial_decay_follows_its_schedule_and_ends_exact(data, heads, name):
    X, y, Xt, yt = data
    ref = heads[name]
    layers = PRUNED[name]
    keep = 0.3
    tuned, record = bl.polynomial_decay(
        ref, layers, keep, X, y, "fast", seed=0, epochs=25, frequency=5
    )
    schedule = bl.polynomial_schedule(1 - keep, 0.1, 25, 5)
    assert [r["epoch"] for r in record] == [t for t, _ in schedule]
    for r, (_, target) in zip(record, schedule):
        assert r["target_sparsity"] == pytest.approx(target)
        for i in layers:
            n = ref.layers[i].weight.numel()
            assert r["achieved_sparsity"][str(i)] == round(target * n) / n
    for i in layers:
        w = tuned.layers[i].weight
        assert int((w == 0).sum()) == w.numel() - round(keep * w.numel())
    # it was fine-tuned: surviving weights moved, and the head still classifies
    first = layers[0]
    alive = tuned.layers[first].weight != 0
    assert not torch.equal(tuned.layers[first].weight[alive], ref.layers[first].weight[alive])
    assert accuracy(tuned, Xt, yt) > 0.6
    assert bl.sparsity_of(tuned, layers) == pytest.approx(1 - keep, abs=1e-3)


@pytest.mark.parametrize("peak", [0.3, 0.7])
def test_best_fixed_picks_the_density_by_fitness_inside_the_training_data(data, monkeypatch, peak):
    X, y, Xt, yt = data
    seen = []

    class FakeFitness:
        """Fitness that peaks at ``peak`` density; the test set is identical for both peaks,
        so choosing by test accuracy could not follow it."""

        def __init__(self, encoding, n_classes, folds, training):
            seen.append(folds)

        def accuracy(self, chroms):
            return -np.abs(np.atleast_2d(chroms).mean(axis=1) - peak)

    monkeypatch.setattr(rk, "HeadProblem", FakeFitness)
    enc = make_encoding("fs", N_FEATURES, HIDDEN)
    ranker = rk.Ranker(_context(enc, X, y, seed=3, held_out=(Xt, yt)))
    res, head = bl.best_fixed(ranker, Xt, yt)
    assert res.details["density"] == peak
    assert res.active_fraction == round(peak * N_FEATURES) / N_FEATURES
    assert head.sizes[0] == round(peak * N_FEATURES)
    assert set(res.details["fitness_by_density"]) == {str(d) for d in bl.FIXED_DENSITIES}
    # the fitness folds are the search's validation split: all inside the training rows
    (folds,) = seen
    (fold,) = folds
    assert len(fold.y_fit) + len(fold.y_score) == len(y)
    train_rows = {r.tobytes() for r in X}
    assert all(r.tobytes() in train_rows for r in fold.X_score)
    assert not any(r.tobytes() in train_rows for r in Xt)


def test_fixed_density_masks_have_exact_densities_and_depend_on_the_seed():
    masks = bl.fixed_density_masks(512, seed=4)
    assert [int(m.sum()) for m in masks] == [round(d * 512) for d in bl.FIXED_DENSITIES]
    other = bl.fixed_density_masks(512, seed=5)
    assert not np.array_equal(masks[4], other[4])
    assert all(np.array_equal(a, b) for a, b in zip(masks, bl.fixed_density_masks(512, seed=4)))


def test_run_baselines_sizes_every_method_like_the_evolved_head(data):
    X, y, Xt, yt = data
    enc = make_encoding("both", N_FEATURES, HIDDEN)
    mask = _mask(enc, 0.25)
    context = _context(enc, X, y, seed=2, held_out=(Xt, yt))
    res = bl.run_baselines(context, mask, schedule=bl.PolySchedule(epochs=10, frequency=5))
    paper = ["not_pruned", "best_fixed", "weight", "neuron", "polynomial_decay"]
    # the rankings of neurons (compare/rankings.py), then the narrower head
    expected = paper + ["norm_retrained", "activation_variance", "narrow"]
    assert [m for m in res if m in expected] == expected
    assert list(res) == list(bl.methods_for(enc))  # and any method registered for it
    assert res["not_pruned"].active_fraction == 1.0
    for m in ("weight", "neuron", "polynomial_decay"):
        assert res[m].active_fraction == pytest.approx(mask.mean(), abs=1e-3), m
    assert res["neuron"].details["kept_units"] == {
        "0": int(mask[:HIDDEN].sum()),
        "1": int(mask[HIDDEN:].sum()),
    }
    assert res["polynomial_decay"].details["schedule"][-1]["epoch"] == 5
    ref = train_head(X, y, enc.decode(enc.full()), N_CLASSES, "fast", seed=2).head
    assert res["not_pruned"].test_accuracy == accuracy(ref, Xt, yt)
    assert res["not_pruned"].head_params == ref.n_params()
    assert res["neuron"].head_params < ref.n_params()
    assert res["weight"].head_params < ref.n_params()


def test_run_baselines_reuses_the_given_reference_head(data, monkeypatch):
    """The run's not-pruned head is passed in: never trained again, and what the pruning
    baselines start from (a different reference gives different pruned heads)."""
    X, y, Xt, yt = data
    enc = make_encoding("fc2", N_FEATURES, HIDDEN)
    mask = _mask(enc, 0.5)
    ref = train_head(X, y, enc.decode(enc.full()), N_CLASSES, "fast", seed=2).head
    other = train_head(X, y, enc.decode(enc.full()), N_CLASSES, "fast", seed=9).head
    full_trainings = []
    real = pb.train_head
    full = enc.decode(enc.full())

    def counting(X_, y_, masks, *a, **k):
        # the not-pruned head (every head trains here; the narrower head has all its units on)
        if masks.sizes == full.sizes and all(m.all() for m in (masks.features, *masks.hidden)):
            full_trainings.append(masks.sizes)
        return real(X_, y_, masks, *a, **k)

    monkeypatch.setattr(pb, "train_head", counting)
    context = _context(enc, X, y, seed=2, held_out=(Xt, yt))
    schedule = bl.PolySchedule(epochs=6, frequency=2)
    res = bl.run_baselines(context.reuse_reference(ref, 1.5), mask, schedule=schedule)
    assert full_trainings == []  # the not-pruned head was not trained again
    assert res["not_pruned"].test_accuracy == accuracy(ref, Xt, yt)
    assert res["not_pruned"].seconds == 1.5
    assert res["weight"].test_accuracy == accuracy(bl.weight_prune(ref, (1,), 0.5), Xt, yt)
    res_other = bl.run_baselines(context.reuse_reference(other, 1.5), mask, schedule=schedule)
    assert full_trainings == []
    assert res_other["neuron"].details["sizes"] == res["neuron"].details["sizes"]
    assert res_other["not_pruned"].test_accuracy == accuracy(other, Xt, yt)
    with pytest.raises(ConfigError, match="reference head has layer sizes"):
        fs = _context(make_encoding("fs", N_FEATURES, HIDDEN), X, y, seed=2, held_out=(Xt, yt))
        bl.run_baselines(fs.reuse_reference(ref, 1.5), _mask(enc, 0.5)[:N_FEATURES])


# Computed by the code before polynomial decay and training from scratch shared one loop
# (two copies of the epoch/batch loop): the refactor must not change a single weight. Batches
# of 32 make the batch order matter; a steep learning-rate decay shows that fine-tuning keeps
# the initial rate. Per trainer: the reference head's and the fine-tuned head's weight sums
# per layer, and the first output row of the fine-tuned head.
POLY_PINNED = {
    "fast": (
        [-5.159421920776367, 0.7587428092956543, -1.0750601291656494],
        [-4.759883880615234, 6.188551902770996, -1.4167088270187378],
        [0.5347259044647217, -0.16720275580883026, 0.014009227976202965],
    ),
    "paper": (
        [-3.087498426437378, -0.008149981498718262, -0.7472883462905884],
        [-0.08068990707397461, 5.783848285675049, -0.747288167476654],
        [0.6270341873168945, -0.07312296330928802, 0.09009888768196106],
    ),
}


@pytest.mark.parametrize("trainer", ["fast", "paper"])
def test_training_and_polynomial_decay_weights_are_pinned(trainer):
    import dataclasses

    from evoprune.model.head import TRAINERS

    cfg = {
        # the fast trainer as it was when these weights were pinned (the loop is what is pinned)
        "fast": dataclasses.replace(
            TRAINERS["fast"], batch_size=32, weight_decay=1e-4, average_from=0
        ),
        "paper": dataclasses.replace(TRAINERS["paper"], lr=0.01, lr_decay=0.05, max_epochs=40),
    }[trainer]
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 50)
    X = rng.normal(size=(len(y), 24)).astype(np.float32)
    X[:, :6] += 2.0 * np.eye(3)[y].repeat(2, axis=1)
    enc = make_encoding("both", 24, 16)
    ref = train_head(X, y, enc.decode(enc.full()), 3, cfg, seed=3).head
    tuned, record = bl.polynomial_decay(ref, (0, 1), 0.3, X, y, cfg, seed=3, epochs=7, frequency=2)
    ref_sums, sums, row = POLY_PINNED[trainer]
    with torch.no_grad():
        got_ref = [float(ref.layers[i].weight.sum()) for i in range(3)]
        got_sums = [float(tuned.layers[i].weight.sum()) for i in range(3)]
        got_row = [float(v) for v in tuned.layers[2].weight[0, :3]]
    assert got_ref == pytest.approx(ref_sums, rel=1e-5, abs=1e-5)
    assert got_sums == pytest.approx(sums, rel=1e-5, abs=1e-5)
    assert got_row == pytest.approx(row, rel=1e-5, abs=1e-6)
    assert [r["epoch"] for r in record] == [0, 2, 4, 6]
    assert record[-1]["achieved_sparsity"] == {"0": 0.7005208333333334, "1": 0.69921875}


@pytest.mark.parametrize(
    "name, sizes",
    [
        ("fc", lambda k: (N_FEATURES, k[0], N_CLASSES)),
        ("fc1", lambda k: (N_FEATURES, k[0], HIDDEN, N_CLASSES)),
        ("fc2", lambda k: (N_FEATURES, HIDDEN, k[1], N_CLASSES)),
        ("both", lambda k: (N_FEATURES, k[0], k[1], N_CLASSES)),
    ],
)
def test_narrower_head_has_exactly_the_kept_neurons_and_the_runs_training(data, name, sizes):
    """d -> k -> C with k the evolved head's neurons, every unit on, trained from scratch with
    the run's trainer and seed: the same weights as train_head on that architecture."""
    import dataclasses

    from evoprune.encodings import HeadMasks
    from evoprune.model.head import TRAINERS

    X, y, Xt, yt = data
    enc = make_encoding(name, N_FEATURES, HIDDEN)
    mask = _mask(enc, 0.3, seed=4)
    keep = bl.kept_units(enc, mask)
    trainer = dataclasses.replace(TRAINERS["fast"], max_epochs=7)
    ranker = rk.Ranker(_context(enc, X, y, seed=5, trainer=trainer, held_out=(Xt, yt)))
    res = bl.COMPARISON_METHODS["narrow"].build(
        bl.MethodContext(ranker, mask, ranker.reference_head())
    )
    want = sizes(keep)
    assert tuple(res.details["sizes"]) == want[:-1]
    assert res.active_fraction == pytest.approx(mask.mean())
    masks = HeadMasks(np.ones(N_FEATURES, bool), tuple(np.ones(h, bool) for h in want[1:-1]))
    head = train_head(X, y, masks, N_CLASSES, trainer, seed=5).head
    assert head.sizes == want
    assert res.head_params == head.n_params()
    assert res.test_accuracy == accuracy(head, Xt, yt)
    sized = bl.COMPARISON_METHODS["narrow"].at_size(ranker, keep)
    for a, b in zip(ranker.train(sized.masks).layers, head.layers):
        assert torch.equal(a.weight, b.weight)
    # not the pruned head of the same neurons (that one starts from the wide layer's weights)
    pruned = ranker.retrain(mask)
    assert pruned.sizes == head.sizes
    assert not torch.equal(pruned.layers[-1].weight, head.layers[-1].weight)


def test_the_narrower_head_is_for_neuron_encodings_only():
    assert [
        e
        for e in ("fs", "fc", "fc1", "fc2", "both", "edges-fc", "edges-out")
        if "narrow" in bl.methods_for(make_encoding(e, N_FEATURES, HIDDEN))
    ] == ["fc", "fc1", "fc2", "both"]
