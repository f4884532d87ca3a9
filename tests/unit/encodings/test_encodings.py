"""The encoding registry is open: an encoding registered from outside gets its genes, decoding,
budget, help text and pruning targets used everywhere, with no name branch to edit."""

import numpy as np
import pytest

from evoprune import encodings
from evoprune.compare import baselines as bl
from evoprune.encodings import (
    ENCODINGS,
    EncodingSpec,
    HeadMasks,
    PruneTarget,
    make_encoding,
    register_encoding,
)
from evoprune.errors import ConfigError
from evoprune.estimator import EvoPruneClassifier
from evoprune.runs.config import default_evaluations

BLOCK = 4


class Blocks(EncodingSpec):
    """One gene per block of 4 input features (the last block may be shorter)."""

    def __init__(self):
        super().__init__(
            "blocks",
            "one-layer head; one gene per block of 4 input features",
            hidden_layers=1,
            targets=(PruneTarget(0, "inputs"),),
            default_evaluations=7,
        )

    def n_genes(self, n_features, hidden):
        return -(-n_features // BLOCK)

    def decode_genes(self, genes, n_features, hidden):
        return HeadMasks(
            np.repeat(genes, BLOCK)[:n_features], tuple(np.ones(h, dtype=bool) for h in hidden)
        )


@pytest.fixture
def blocks():
    register_encoding(Blocks)
    yield encodings.REGISTRY["blocks"]
    del encodings.REGISTRY["blocks"]


def test_paper_encodings_keep_their_rules():
    paper = ["fs", "fc", "fc1", "fc2", "both", "edges-fc", "edges-out"]
    assert [name for name in ENCODINGS if name in paper] == paper  # others may be registered
    genes = {name: make_encoding(name, 30, 16, n_classes=3).n_genes for name in paper}
    assert genes == {
        "fs": 30,
        "fc": 16,
        "fc1": 16,
        "fc2": 16,
        "both": 32,
        "edges-fc": 30 * 16,
        "edges-out": 16 * 3,
    }
    layers = {name: len(make_encoding(name, 30, 16).hidden) for name in paper}
    assert layers == {
        "fs": 1,
        "fc": 1,
        "fc1": 2,
        "fc2": 2,
        "both": 2,
        "edges-fc": 1,
        "edges-out": 1,
    }
    assert {n: default_evaluations(n) for n in paper} == {
        "fs": 200,
        "fc": 200,
        "fc1": 200,
        "fc2": 200,
        "both": 300,
        "edges-fc": 200,
        "edges-out": 200,
    }


def test_a_registered_encoding_drives_a_search(blocks):
    assert "blocks" in ENCODINGS and ENCODINGS["blocks"].startswith("one-layer head")
    assert default_evaluations("blocks") == 7
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 30)
    X = rng.normal(size=(60, 24)).astype(np.float32)
    X[:, 4] += 3.0 * y  # one informative feature, in the second block
    clf = EvoPruneClassifier(encoding="blocks", hidden_size=8, population=4, random_state=0).fit(
        X, y
    )
    assert clf.encoding_.n_genes == 6 and clf.best_mask_.shape == (6,)
    assert clf.search_.evaluations == 7  # the budget the encoding declared
    expected = np.repeat(clf.best_mask_.astype(bool), BLOCK)
    np.testing.assert_array_equal(clf.masks_.features, expected)
    assert clf.head_.sizes == (int(expected.sum()), 8, 2)
    assert clf.score(X, y) > 0.5
    # the pruning baselines read the same rules: they prune the inputs the genes switch
    assert bl.kept_units(clf.encoding_, clf.best_mask_) == {0: int(expected.sum())}


def test_registry_refuses_bad_or_duplicate_encodings(blocks):
    with pytest.raises(ConfigError, match="registered already"):
        register_encoding(Blocks())
    with pytest.raises(ConfigError, match="does not exist"):
        EncodingSpec("deep", "?", hidden_layers=1, targets=(PruneTarget(1, "neurons"),))
    with pytest.raises(ConfigError, match="no targets"):
        EncodingSpec("none", "?", hidden_layers=1, targets=())
    with pytest.raises(
        ConfigError,
        match="unknown; choose one of fs, fc, fc1, fc2, both, .*edges-fc, edges-out, .*blocks",
    ):
        make_encoding("fc9", 10)


def test_a_decoding_of_the_wrong_size_is_reported(blocks):
    class Broken(Blocks):
        def __init__(self):
            EncodingSpec.__init__(
                self, "broken", "?", hidden_layers=1, targets=(PruneTarget(0, "inputs"),)
            )

        def decode_genes(self, genes, n_features, hidden):
            return HeadMasks(
                np.ones(n_features + 1, dtype=bool), tuple(np.ones(h, dtype=bool) for h in hidden)
            )

    register_encoding(Broken)
    try:
        with pytest.raises(ConfigError, match="fix its decode_genes"):
            make_encoding("broken", 10, 4).decode(np.ones(3))
    finally:
        del encodings.REGISTRY["broken"]
