"""The analyses (issue 13): CKA on matrices whose value is known, the head's weights in the
not-pruned shape, Grad-CAM against autograd through the feature map, class relevance and
heatmaps on small real image sets (scikit-image's faces and photos), and one message per bad
input."""

import csv
import json
import logging
import shutil

import numpy as np
import pytest
import torch

from evoprune.analysis import (
    add_class,
    channel_frequency,
    grad_cam,
    linear_cka,
    median_distance,
    open_analysis,
    rbf_cka,
    relevance,
    remove_each_class,
    robustness,
)
from evoprune.analysis.cka import compare_heads, dense_weights, nearest_evaluated
from evoprune.cli import main
from evoprune.encodings import make_encoding
from evoprune.errors import ConfigError, DataError, EvoPruneError
from evoprune.io import OutputFolder, atomic_write_json
from evoprune.model.head import build_head
from evoprune.search import EvaluationRecord

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _orthogonal(p, rng):
    q, _ = np.linalg.qr(rng.normal(size=(p, p)))
    return q


# --- CKA on matrices whose value is known ------------------------------------------------------


def test_cka_of_identical_inputs_is_one():
    X = np.random.default_rng(0).normal(size=(60, 7))
    assert linear_cka(X, X) == pytest.approx(1.0)
    assert rbf_cka(X, X) == pytest.approx(1.0)


def test_linear_cka_is_invariant_to_isotropic_scaling_and_orthogonal_transforms():
    rng = np.random.default_rng(1)
    X, Z = rng.normal(size=(80, 6)), rng.normal(size=(80, 4))
    Z[:, 0] += X[:, 0]  # related, so the value is not trivially 0 or 1
    moved = 3.7 * X @ _orthogonal(6, rng) + 5.0  # scaled, rotated and shifted
    assert linear_cka(X, moved) == pytest.approx(1.0)
    base = linear_cka(X, Z)
    assert 0.05 < base < 0.95
    assert linear_cka(moved, Z) == pytest.approx(base)
    # not invariant to a non-isotropic scaling: the measure can tell them apart
    assert linear_cka(X * np.array([10.0, 1, 1, 1, 1, 1]), Z) != pytest.approx(base, abs=1e-3)


def test_linear_cka_of_two_single_columns_is_their_squared_correlation():
    rng = np.random.default_rng(2)
    x = rng.normal(size=200)
    y = 0.6 * x + rng.normal(size=200)
    r = np.corrcoef(x, y)[0, 1]
    assert linear_cka(x[:, None], y[:, None]) == pytest.approx(r**2)


def test_rbf_cka_with_median_sigma_is_invariant_to_scaling_and_rotation():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(50, 5))
    assert rbf_cka(X, 0.01 * X @ _orthogonal(5, rng)) == pytest.approx(1.0)


def test_independent_random_features_give_cka_near_zero():
    rng = np.random.default_rng(4)
    X, Y = rng.normal(size=(3000, 5)), rng.normal(size=(3000, 5))
    assert linear_cka(X, Y) < 0.01
    small = rng.normal(size=(600, 5)), rng.normal(size=(600, 5))
    assert rbf_cka(*small) < 0.02
    assert linear_cka(X[:, :1], X[:, :1] + 0.1 * Y[:, :1]) > 0.98  # and a related pair near 1


def test_median_distance_of_known_points_leaves_out_repeated_rows():
    points = np.array([[0.0], [1.0], [3.0], [0.0]])  # distances 1, 3, 2 (and a 0 pair)
    assert median_distance(points) == pytest.approx(2.0)
    assert np.isnan(rbf_cka(np.zeros((4, 2)), points))  # all rows equal: undefined


def test_cka_refuses_matrices_of_different_samples():
    with pytest.raises(EvoPruneError, match="same rows"):
        linear_cka(np.zeros((5, 2)), np.zeros((6, 2)))


def test_dense_weights_reproduce_the_compact_heads_logits():
    """The weights put back into the not-pruned shape, pruned units zero, compute what the
    compact head computes (an independent forward pass in numpy)."""
    rng = np.random.default_rng(5)
    enc = make_encoding("both", 10, 8)
    chrom = rng.integers(0, 2, enc.n_genes)
    chrom[0] = 1
    masks = enc.decode(chrom)
    head = build_head(masks, 3, seed=7)
    with torch.no_grad():
        for layer in head.linears:
            layer.bias.normal_()
    W = dense_weights(head, masks)
    assert [w.shape for w in W] == [(10, 8), (8, 8), (8, 3)]
    biases = [np.zeros(w.shape[1]) for w in W]
    keep = [np.flatnonzero(m) for m in masks.hidden] + [np.arange(3)]
    for b, k, layer in zip(biases, keep, head.linears):
        b[k] = layer.bias.detach().numpy()
    X = rng.normal(size=(20, 10)).astype(np.float32)
    h = X * masks.features
    for w, b in zip(W[:-1], biases[:-1]):
        h = np.maximum(h @ w + b, 0)
    expected = h @ W[-1] + biases[-1]
    got = head(torch.as_tensor(X)).detach().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_nearest_evaluated_skips_the_best_mask_and_breaks_ties_by_fitness():
    best = np.array([1, 1, 0, 0], dtype=np.uint8)

    def rec(i, mask, fitness):
        m = np.array(mask, dtype=np.uint8)
        return EvaluationRecord(i, 0, fitness, int(m.sum()), float(m.mean()), 0, 0, m)

    history = [rec(0, best, 0.9), rec(1, [0, 0, 1, 1], 0.99), rec(2, [1, 0, 0, 0], 0.5)]
    history += [rec(3, [1, 1, 1, 0], 0.7), rec(4, [1, 1, 0, 0], 0.9)]
    assert nearest_evaluated(history, best).index == 3
    with pytest.raises(EvoPruneError, match="no mask other"):
        nearest_evaluated(history[:1], best)


# --- a run on real images ----------------------------------------------------------------------


@pytest.fixture()
def run_copy(tiny_run, tmp_path_factory):
    """A private copy of the tiny run beside it, so that its data path still resolves."""
    copy = tmp_path_factory.mktemp("analysis-run") / "run"
    assert copy.parent.parent == tiny_run[0].parent
    shutil.copytree(tiny_run[0], copy.parent, dirs_exist_ok=True)
    return copy.parent


@pytest.fixture(scope="module")
def tiny_ctx(tiny_run, feature_cache):
    return open_analysis(tiny_run[0], cache_dir=feature_cache, progress=False)


def test_the_run_head_is_retrained_exactly_from_its_mask(tiny_ctx):
    saved = tiny_ctx.run.head().state_dict()
    again = tiny_ctx.train(tiny_ctx.best_mask).state_dict()
    assert saved.keys() == again.keys()
    for key in saved:
        torch.testing.assert_close(saved[key], again[key])


def test_heads_are_trained_with_the_trainer_settings_the_run_saved(run_copy, feature_cache):
    """A trainer changed since the run (here: the saved settings edited) does not change how
    the analyses retrain the run's heads."""
    cfg = run_copy / "config.json"
    doc = json.loads(cfg.read_text())
    doc["trainer_settings"]["max_epochs"] = 1
    cfg.write_text(json.dumps(doc))
    ctx = open_analysis(run_copy, cache_dir=feature_cache, progress=False)
    assert ctx.trainer.name == "fast" and ctx.trainer.max_epochs == 1
    saved = ctx.run.head().state_dict()
    again = ctx.train(ctx.best_mask).state_dict()
    assert not all(torch.equal(saved[k], again[k]) for k in saved)


def test_robustness_on_a_run(tiny_ctx, run_copy, feature_cache):
    ctx = open_analysis(run_copy, cache_dir=feature_cache, progress=False)
    rows = robustness(ctx)
    assert {r.against for r in rows} == {"nearest", "not_pruned"}
    by = {(r.against, r.layer, r.measure): r for r in rows}
    expected = [("fc1", "kernel_rbf_weights"), ("out", "kernel_rbf_weights")]
    expected += [("fc1", "kernel_rbf_weights_common_inputs"), ("fc1", "linear_activations")]
    assert set(by) == {(a, layer, m) for a in ("nearest", "not_pruned") for layer, m in expected}
    assert all(0.0 <= r.cka <= 1.0 + 1e-9 for r in rows)
    not_pruned = by[("not_pruned", "fc1", "kernel_rbf_weights")]
    assert not_pruned.hamming == len(ctx.best_mask) - int(ctx.best_mask.sum())
    table = list(csv.DictReader((run_copy / "analysis" / "cka.csv").open()))
    assert len(table) == len(rows)
    assert (run_copy / "analysis" / "cka.png").stat().st_size > 5000
    # the best head against itself: 1 on every layer and measure
    best = (ctx.run.head(), ctx.encoding.decode(ctx.best_mask))
    same = compare_heads(best, best, ctx.data.X_test)
    assert [v for _, _, v in same] == pytest.approx([1.0] * len(same))


def test_feature_maps_average_to_the_features_and_grad_cam_matches_autograd():
    import skimage.data
    from PIL import Image

    from evoprune.backbones import get_backbone

    backbone = get_backbone("efficientnet-lite0")
    x = torch.as_tensor(backbone.preprocess(Image.fromarray(skimage.data.chelsea())))[None]
    with torch.inference_mode():
        maps = backbone.feature_maps()(x)
    maps = maps.clone()
    np.testing.assert_allclose(maps.mean(dim=(2, 3)).numpy(), backbone.features(x), atol=1e-4)
    masks = make_encoding("fs", 1280, 16).decode(np.random.default_rng(0).integers(0, 2, 1280))
    head = build_head(masks, 3, seed=1)
    target = torch.tensor([2])
    # Grad-CAM as defined: gradient of the score w.r.t. the map, averaged over the positions
    A = maps.clone().requires_grad_(True)
    score = head(A.mean(dim=(2, 3)))[0, 2]
    (grad,) = torch.autograd.grad(score, A)
    alpha = grad.mean(dim=(2, 3))
    expected = torch.relu((alpha[:, :, None, None] * A).sum(dim=1)).detach().numpy()
    got = grad_cam(maps, head, target)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-7)
    assert got.max() > 0


def test_heatmap_grid_and_the_command(run_copy, feature_cache, capsys):
    code = main(
        ["-q", "analyze", str(run_copy), "--images-per-class", "1", "--cache-dir",
         str(feature_cache), "--no-progress"]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "not pruned" in out and "heatmaps: 2 held-out images" in out
    rows = list(csv.DictReader((run_copy / "analysis" / "heatmaps.csv").open()))
    assert sorted(r["true_class"] for r in rows) == ["face", "not_face"]
    assert all(-1.0 <= float(r["map_correlation"]) <= 1.0 for r in rows)
    assert (run_copy / "analysis" / "heatmaps.png").stat().st_size > 10000


# --- class relevance on three classes of real images -------------------------------------------


@pytest.fixture(scope="module")
def three_class_run(tmp_path_factory, faces_folder, feature_cache):
    """30 faces, 30 non-faces and 8 crops of scikit-image photos; a tiny fs run on them."""
    import skimage.data
    from PIL import Image

    from evoprune.runs.experiment import RunConfig, run_experiment

    logging.getLogger("evoprune").setLevel(logging.WARNING)
    root = tmp_path_factory.mktemp("three-classes")
    for name in ("face", "not_face"):
        (root / name).mkdir()
        for path in sorted((faces_folder / name).glob("*.png"))[:30]:
            shutil.copy(path, root / name / path.name)
    (root / "photo").mkdir()
    photos = [skimage.data.chelsea(), skimage.data.coffee(), skimage.data.astronaut()]
    for i in range(8):
        img = photos[i % 3]
        top, left = 40 * (i // 3), 50 * (i // 3)
        Image.fromarray(img[top : top + 150, left : left + 150]).save(root / "photo" / f"{i}.png")
    out = tmp_path_factory.mktemp("three-run")
    # the paper's start and operators, as the tiny run: a ranked start of 4 masks on so few
    # features repeats masks, and a repeat is not evaluated again
    cfg = RunConfig(
        data=str(root),
        encoding="fs",
        population=4,
        evaluations=6,
        seed=2,
        init="random",
        variation="paper",
    )
    run_experiment(cfg, out, progress=False, cache_dir=feature_cache)
    return out


def test_remove_each_class_and_resume(three_class_run, feature_cache, monkeypatch):
    ctx = open_analysis(three_class_run, cache_dir=feature_cache, progress=False)
    rows = remove_each_class(ctx, evaluations=5)
    assert [r.variant for r in rows] == [
        "all classes",
        "without face",
        "without not_face",
        "without photo",
    ]
    r = ctx.run.result
    assert (rows[0].n_classes, rows[0].n_train, rows[0].n_test) == (3, r.n_train, r.n_test)
    test_counts = np.bincount(ctx.data.y_test)
    for row, c in zip(rows[1:], range(3)):
        assert row.n_classes == 2 and row.evaluations == 5
        assert row.n_test == r.n_test - test_counts[c]
        assert 0.0 <= row.test_accuracy <= 1.0 and 0.0 < row.active_fraction <= 1.0
    assert (three_class_run / "analysis" / "classes_removed.png").stat().st_size > 5000

    def refuse(*a, **k):
        raise AssertionError("a finished row was searched again")

    monkeypatch.setattr(relevance, "rerun", refuse)
    again = remove_each_class(ctx, evaluations=5)  # read back from the CSV
    assert [(r.variant, r.test_accuracy, r.active_fraction, r.n_test) for r in again] == [
        (r.variant, r.test_accuracy, r.active_fraction, r.n_test) for r in rows
    ]


def test_add_class_gradually(three_class_run, feature_cache, capsys):
    ctx = open_analysis(three_class_run, cache_dir=feature_cache, progress=True)
    capsys.readouterr()
    rows = add_class(ctx, "face", fractions=(0.5, 1.0), evaluations=4)
    assert [r.variant for r in rows] == ["face 0%", "face 50%", "face 100%"]
    bars = capsys.readouterr().err  # issue 20.4: the searches show progress
    assert "adding face" in bars and "3/3" in bars and "face 50%" in bars and "4/4" in bars
    assert [r.n_classes for r in rows] == [2, 3, 3]
    n_face = int(np.sum(ctx.data.y_train == 0))
    assert [r.n_train for r in rows] == [
        ctx.run.result.n_train - n_face,
        ctx.run.result.n_train - n_face + round(n_face / 2),
        ctx.run.result.n_train,
    ]
    assert np.isnan(rows[0].class_recall) and 0.0 <= rows[2].class_recall <= 1.0
    assert (three_class_run / "analysis" / "add_face.png").is_file()


# --- bad input: one clear message each ---------------------------------------------------------


def _analyze(path, caplog, *extra):
    caplog.clear()
    code = main(["analyze", str(path), "--no-progress", *extra])
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "Traceback" not in caplog.text
    return code, errors[0]


def test_a_folder_that_is_not_a_run(tmp_path, caplog):
    code, err = _analyze(tmp_path, caplog)
    assert code == 2 and "has no result.json, so it is not a finished run" in err


def test_a_run_without_images(run_copy, caplog):
    cfg = run_copy / "config.json"
    doc = json.loads(cfg.read_text())
    doc.pop("run")
    cfg.write_text(json.dumps(doc))
    code, err = _analyze(run_copy, caplog)
    assert code == 2 and "records no images" in err and "features only" in err


def test_a_run_whose_images_are_gone(tmp_path, faces_folder, feature_cache, caplog):
    from evoprune.runs.experiment import RunConfig, run_experiment

    data = tmp_path / "faces"
    for name in ("face", "not_face"):
        (data / name).mkdir(parents=True)
        for p in sorted((faces_folder / name).glob("*.png"))[:10]:
            shutil.copy(p, data / name / p.name)
    cfg = RunConfig(data=str(data), encoding="fc", population=4, evaluations=4, hidden_size=8)
    run_experiment(cfg, tmp_path / "run", progress=False, cache_dir=feature_cache)
    shutil.rmtree(data)
    code, err = _analyze(tmp_path / "run", caplog, "--cache-dir", str(feature_cache))
    assert code == 2 and "the run's images" in err and "put them back" in err


def test_a_class_that_does_not_exist(three_class_run, feature_cache):
    ctx = open_analysis(three_class_run, cache_dir=feature_cache, progress=False)
    with pytest.raises(ConfigError, match=r"--add-class cat: the run has no class 'cat'.*photo"):
        add_class(ctx, "cat")


def test_add_class_with_too_few_images(three_class_run, feature_cache):
    ctx = open_analysis(three_class_run, cache_dir=feature_cache, progress=False)
    with pytest.raises(DataError, match=r"--add-class photo: the class has \d training images"):
        add_class(ctx, "photo")


def test_class_relevance_needs_three_classes(tiny_ctx):
    with pytest.raises(ConfigError, match="--remove-each-class.*2 classes"):
        remove_each_class(tiny_ctx)


# --- channels kept across the fs runs of a comparison -------------------------------------------


def test_channel_frequency_of_a_comparison(tiny_run, tmp_path, capsys):
    comp = tmp_path / "comp"
    (comp / "runs").mkdir(parents=True)
    with OutputFolder(comp, "compare").claim():
        atomic_write_json(comp / "comparison.json", {})
    masks = np.random.default_rng(0).integers(0, 2, (3, tiny_run[1]["feature_dim"]))
    for k, mask in enumerate(masks):
        run = comp / "runs" / f"fs_run{k}"
        shutil.copytree(tiny_run[0], run)
        result = json.loads((run / "result.json").read_text())
        result["best_mask"] = mask.tolist()
        atomic_write_json(run / "result.json", result)
    freq = channel_frequency(comp)
    np.testing.assert_array_equal(freq.kept, masks.sum(axis=0))
    assert freq.observed().sum() == masks.shape[1]
    assert freq.expected().sum() == pytest.approx(masks.shape[1])
    rows = list(csv.DictReader((comp / "analysis" / "channels.csv").open()))
    assert int(rows[0]["runs_kept"]) == masks.sum(axis=0).max()
    assert main(["analyze", str(comp)]) == 0
    assert "3 fs runs" in capsys.readouterr().out
    shutil.rmtree(comp / "runs" / "fs_run1")
    shutil.rmtree(comp / "runs" / "fs_run2")
    with pytest.raises(EvoPruneError, match="1 finished fs run"):
        channel_frequency(comp)
