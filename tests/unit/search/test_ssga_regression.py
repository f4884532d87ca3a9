"""The paper's steady-state GA keeps its exact behaviour across refactors of the search core.

data/ssga_regression.json (beside this file) was written by the GA as it was before the search
core (problem, evaluator, ask/tell algorithms) existed: best mask, fitness and the whole history
for three seeded searches on 400 real 8x8 digit images (pixels as features), one of which
converges and stops early after many memory hits.
"""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

from evoprune.estimator import EvoPruneClassifier
from evoprune.model.head import TRAINERS

PINNED = json.loads((Path(__file__).parent / "data" / "ssga_regression.json").read_text())


@pytest.fixture(autouse=True)
def _fast_trainer_as_pinned(monkeypatch):
    """The GA is what is pinned: its heads train with the fast trainer's settings of the time
    the file was written (weight decay 1e-4, no weight averaging, batch 256 whatever the size)."""
    old = dataclasses.replace(TRAINERS["fast"], weight_decay=1e-4, average_from=0, min_batches=1)
    monkeypatch.setitem(TRAINERS, "fast", old)


def _digits(n=400):
    d = load_digits()
    rng = np.random.default_rng(0)
    idx = np.sort(rng.choice(len(d.target), n, replace=False))
    return d.data[idx].astype(np.float32), d.target[idx]


@pytest.mark.parametrize("name", sorted(PINNED))
def test_ssga_result_is_unchanged(name):
    pinned = PINNED[name]
    X, y = _digits()
    # the pinned GA is the paper's: random start, paper variation, every mask fully trained
    # (the defaults then; --init random --variation paper --fidelity full)
    clf = EvoPruneClassifier(
        **pinned["params"], init="random", variation="paper", fidelity="full"
    ).fit(X, y)
    assert np.packbits(clf.best_mask_).tobytes().hex() == pinned["best_mask"]
    assert clf.best_fitness_ == pinned["best_fitness"]
    assert clf.search_.memory_hits == pinned["memory_hits"]
    assert clf.search_.iterations == pinned["iterations"]
    assert len(clf.history_) == len(pinned["history"])
    for got, want in zip(clf.history_, pinned["history"]):
        assert {k: got[k] for k in want} == want
