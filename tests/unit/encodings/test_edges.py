"""The edges encodings: one gene per connection of the hidden (fc) or the output (out) layer."""

import dataclasses
import json
import logging

import numpy as np
import pytest
import torch

from evoprune.cli import main
from evoprune.encodings import encoding_for_layer, make_encoding
from evoprune.errors import ConfigError
from evoprune.export import export_model
from evoprune.model.head import (
    TRAINERS,
    build_head,
    nonzero_params,
    predict_proba,
    train_head,
)
from evoprune.runs.store import HEAD_FILE, HISTORY_FILE, open_run, save_head

pytestmark = pytest.mark.usefixtures("one_torch_thread")

HIDDEN = 16


def _data(n=60, d=20, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    X = rng.normal(size=(n, d)).astype(np.float32) + y[:, None].astype(np.float32)
    return X, y


def test_decode_gives_one_weight_matrix_in_torch_layout():
    fc = make_encoding("edges-fc", 20, 8)
    assert fc.n_genes == 160 and len(fc.hidden) == 1
    genes = np.zeros(160, dtype=np.uint8)
    genes[3 * 20 + 7] = 1  # row 3 (hidden neuron), column 7 (feature)
    masks = fc.decode(genes)
    assert set(masks.connections) == {0} and masks.connections[0].shape == (8, 20)
    assert masks.connections[0][3, 7] and masks.connections[0].sum() == 1
    assert masks.sizes == (20, 8)  # every unit stays
    out = make_encoding("edges-out", 20, 8, n_classes=3)
    assert out.n_genes == 24
    assert out.decode(np.ones(24)).connections[1].shape == (3, 8)
    with pytest.raises(ConfigError, match="number of classes"):
        _ = make_encoding("edges-out", 20, 8).n_genes


def test_layer_option_names_the_registered_encoding():
    assert encoding_for_layer("edges", "out") == "edges-out"
    assert encoding_for_layer("fs", None) == "fs"
    with pytest.raises(ConfigError, match="--layer fc or --layer out"):
        encoding_for_layer("edges", None)
    with pytest.raises(ConfigError, match="drop --layer"):
        encoding_for_layer("fs", "out")


@pytest.mark.parametrize("name,layer", [("edges-fc", 0), ("edges-out", 1)])
@pytest.mark.parametrize("trainer", ["fast", "paper"])
def test_pruned_weights_start_and_stay_exactly_zero(name, layer, trainer):
    X, y = _data()
    enc = make_encoding(name, X.shape[1], 8, n_classes=3)
    chrom = np.random.default_rng(1).integers(0, 2, enc.n_genes).astype(np.uint8)
    masks = enc.decode(chrom)
    keep = torch.as_tensor(masks.connections[layer])
    start = build_head(masks, 3, seed=0).linears[layer].weight.detach()
    assert torch.all(start[~keep] == 0) and torch.all(start[keep] != 0)
    cfg = dataclasses.replace(TRAINERS[trainer], max_epochs=8)
    head = train_head(X, y, masks, 3, cfg, seed=0).head
    weight = head.linears[layer].weight.detach()
    assert torch.all(weight[~keep] == 0)  # exactly, after every optimiser step
    assert torch.all(weight[keep] != 0) and not torch.equal(weight[keep], start[keep])
    others = sum(p.numel() for n, p in head.named_parameters() if n != f"layers.{layer}.weight")
    assert nonzero_params(head) == int(chrom.sum()) + others


def test_all_connections_on_train_like_the_not_pruned_head():
    """The gradient mask changes nothing when every weight is kept."""
    X, y = _data()
    edges = make_encoding("edges-fc", X.shape[1], 8)
    full = make_encoding("fc", X.shape[1], 8)
    a = train_head(X, y, edges.decode(edges.full()), 3, "fast", seed=2).head
    b = train_head(X, y, full.decode(full.full()), 3, "fast", seed=2).head
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)


@pytest.fixture(scope="module")
def edges_runs(faces_folder, feature_cache, tmp_path_factory):
    """Tiny `evoprune run --encoding edges` runs on real images, one per layer."""
    logging.getLogger("evoprune").setLevel(logging.WARNING)
    runs = {}
    for layer in ("fc", "out"):
        out = tmp_path_factory.mktemp(f"edges-{layer}")
        args = ["run", "--data", str(faces_folder), "--encoding", "edges", "--layer", layer]
        args += ["--hidden-size", str(HIDDEN), "--population", "6", "--evaluations", "12"]
        args += ["--seed", "1", "--out", str(out), "--cache-dir", str(feature_cache)]
        assert main(args + ["--no-progress"]) == 0
        runs[layer] = out
    return runs


def test_an_edges_run_records_its_layer_and_counts_non_zero_weights(edges_runs):
    for layer, genes in (("fc", 1280 * HIDDEN), ("out", HIDDEN * 2)):
        run = open_run(edges_runs[layer])
        r = run.result
        assert r.encoding == f"edges-{layer}" and r.genes == genes
        assert json.loads((run.path / "config.json").read_text())["run"]["encoding"] == r.encoding
        head = run.head()
        weight = head.linears[0 if layer == "fc" else 1].weight.detach().numpy()
        mask = np.asarray(r.best_mask, dtype=bool).reshape(weight.shape)
        assert np.all(weight[~mask] == 0) and np.all(weight[mask] != 0)
        # the only other zeros: biases (initialised 0) of hidden neurons left without any
        # outgoing connection, whose gradient is 0
        bias = head.linears[0].bias.detach().numpy()
        if layer == "out":
            np.testing.assert_array_equal(bias == 0, ~mask.any(axis=0))
        else:
            assert np.all(bias != 0)
        dense = head.n_params() - genes
        assert r.head_params == nonzero_params(head) == int(mask.sum()) + dense - (bias == 0).sum()
        assert r.reference_head_params == head.n_params()


def test_history_of_an_edges_run_stores_masks_as_packed_bits(edges_runs):
    run = open_run(edges_runs["fc"])
    lines = (run.path / HISTORY_FILE).read_text().splitlines()
    assert len(lines) == run.result.evaluations + 1
    genes = run.result.genes
    # one hex digit per 4 genes and a few numbers per row: the file grows with the genes / 4
    assert all(len(line) < genes / 4 + 200 for line in lines[1:])
    assert (run.path / HISTORY_FILE).stat().st_size < len(lines) * (genes / 4 + 200)


@pytest.fixture()
def edges_fc_copy(edges_runs, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(edges_runs["fc"], copy)
    return copy


def _features_of(run, faces_folder, feature_cache):
    from evoprune.runs.experiment import prepare_data

    cfg = run.settings().validate()
    return prepare_data(cfg, progress=False, cache_dir=feature_cache).X_test


def _onnx_proba(path, X):
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"features": X.astype(np.float32)})[0]


def test_export_stores_a_sparse_layer_only_where_the_file_gets_smaller(
    edges_runs, edges_fc_copy, faces_folder, feature_cache, tmp_path, caplog
):
    import onnx

    X = _features_of(open_run(edges_runs["fc"]), faces_folder, feature_cache)
    run = open_run(edges_fc_copy)
    head = run.head()
    weight = head.linears[0].weight
    # the run's own head (about half the weights kept): dense, and said so
    with caplog.at_level(logging.WARNING, logger="evoprune"):
        dense = export_model(run.path, tmp_path / "dense.onnx", head_only=True)
    assert dense.metadata["connections"]["storage"] == "dense"
    assert "not smaller" in dense.metadata["connections"]["note"] and "not smaller" in caplog.text
    assert not onnx.load(str(dense.path)).graph.sparse_initializer
    # keep one weight in ten: stored sparse, smaller, same probabilities as the library
    with torch.no_grad():
        weight.mul_(torch.rand(weight.shape, generator=torch.Generator().manual_seed(0)) < 0.1)
    save_head(head, run.path / HEAD_FILE)
    sparse = export_model(run.path, tmp_path / "sparse.onnx", head_only=True)
    meta = sparse.metadata["connections"]
    assert meta["storage"] == "sparse" and meta["weights_kept"] == int((weight != 0).sum())
    graph = onnx.load(str(sparse.path)).graph
    assert len(graph.sparse_initializer) == 1
    assert sparse.path.stat().st_size < 0.6 * dense.path.stat().st_size
    np.testing.assert_allclose(_onnx_proba(sparse.path, X), predict_proba(head, X), atol=1e-5)
    torchscript = export_model(run.path, tmp_path / "m.pt", format="torchscript", head_only=True)
    assert torchscript.metadata["connections"]["storage"] == "dense"


def test_export_of_an_out_edges_run_gives_the_library_probabilities(
    edges_runs, faces_folder, feature_cache, tmp_path
):
    run = open_run(edges_runs["out"])
    X = _features_of(run, faces_folder, feature_cache)
    exported = export_model(run.path, tmp_path / "out.onnx", head_only=True)
    assert exported.metadata["connections"]["layer"] == "out"
    assert exported.metadata["head_params"] == run.result.head_params
    np.testing.assert_allclose(
        _onnx_proba(exported.path, X), predict_proba(run.head(), X), atol=1e-5
    )


@pytest.mark.parametrize(
    "options,message",
    [
        (["--encoding", "edges"], "--layer fc or --layer out"),
        (["--encoding", "fs", "--layer", "out"], "drop --layer"),
    ],
)
def test_layer_mistakes_are_one_clear_message(options, message, tmp_path, caplog):
    assert main(["run", "--data", str(tmp_path), "--out", str(tmp_path / "o")] + options) == 2
    assert message in caplog.text
    assert not (tmp_path / "o").exists()


def test_estimator_style_settings_name_the_layer_variants():
    from evoprune.runs.config import RunConfig

    assert RunConfig(encoding="edges-out").validate().encoding == "edges-out"
    with pytest.raises(ConfigError, match="edges-fc or edges-out"):
        RunConfig(encoding="edges").validate()


def test_compare_runs_the_edges_encodings_with_the_baselines_that_apply(
    faces_folder, feature_cache, tmp_path
):
    """Connections have no unit to remove or rank: the comparison runs not pruned, best fixed,
    weight pruning and polynomial decay (sized like the evolved head) and random curves."""
    import csv

    from evoprune.compare.layout import split_variant

    assert split_variant("edges-out") == ("edges-out", "ssga")
    assert split_variant("edges-out-nsga2") == ("edges-out", "nsga2")
    out = tmp_path / "cmp"
    args = ["-q", "compare", "--data", str(faces_folder), "--encodings", "edges-out"]
    args += ["--runs", "1", "--evaluations", "4", "--population", "4", "--hidden-size", "8"]
    args += ["--curves", "0.5,1", "--out", str(out), "--cache-dir", str(feature_cache)]
    assert main(args + ["--no-progress"]) == 0
    rows = {r["method"]: r for r in csv.DictReader((out / "summary.csv").open())}
    assert set(rows) == {"evoprune", "not_pruned", "best_fixed", "weight", "polynomial_decay"}
    evolved = float(rows["evoprune"]["active_fraction"])
    for method in ("weight", "polynomial_decay"):  # the evolved fraction of the 8 x 2 weights
        assert float(rows[method]["active_fraction"]) == pytest.approx(evolved, abs=1 / 16)
    assert int(rows["evoprune"]["head_params"]) < int(rows["not_pruned"]["head_params"]) or (
        evolved == 1.0
    )
    curves = list(csv.DictReader((out / "curves.csv").open()))
    assert {c["method"] for c in curves} == {"random"} and len(curves) == 2
