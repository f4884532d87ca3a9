"""Voting and member choice of ensembles of front heads, on constructed probabilities."""

import numpy as np
import pytest

from evoprune.errors import ConfigError
from evoprune.voting import (
    choose_members,
    ensemble_predict,
    hard_vote,
    soft_vote,
    vote_counts,
)


def test_soft_vote_is_the_mean_of_probabilities():
    P = np.array(
        [
            [[0.9, 0.1], [0.4, 0.6]],
            [[0.3, 0.7], [0.2, 0.8]],
            [[0.6, 0.4], [0.9, 0.1]],
        ]
    )
    assert soft_vote(P) == pytest.approx(np.array([[0.6, 0.4], [0.5, 0.5]]))
    # Image 1's mean is an exact 0.5/0.5 tie: argmax takes the lower class.
    assert ensemble_predict(P, "soft").tolist() == [0, 0]


def test_hard_vote_majority_beats_confidence():
    # Two members say class 1 with little confidence, one says class 0 very confidently:
    # soft voting picks 0, hard voting the majority 1.
    P = np.array([[[0.45, 0.55]], [[0.45, 0.55]], [[0.99, 0.01]]])
    assert soft_vote(P).argmax(axis=1).tolist() == [0]
    assert hard_vote(P).tolist() == [1]
    assert vote_counts(P).tolist() == [[1, 2]]


def test_hard_vote_tie_goes_to_the_larger_summed_probability():
    # Image 0: one vote each for classes 0 and 1; summed probabilities 0.6+0.3 = 0.9 for
    # class 0 and 0.4+0.7 = 1.1 for class 1, so 1 wins although member 0 (the first) says 0.
    # Image 1: a three-class tie where class 2 is nobody's choice but must not win.
    P = np.array(
        [
            [[0.6, 0.4, 0.0], [0.5, 0.1, 0.4]],
            [[0.3, 0.7, 0.0], [0.1, 0.45, 0.45]],
        ]
    )
    # Image 1: member 0 -> class 0, member 1 -> class 1 (the first of 0.45/0.45), votes 1/1/0;
    # sums: class 0 0.6, class 1 0.55, class 2 0.85; class 2 has fewer votes, so class 0.
    assert hard_vote(P).tolist() == [1, 0]


def test_voting_rejects_bad_shapes():
    with pytest.raises(ConfigError, match=r"\(heads K >= 1, images N, classes C >= 1\)"):
        soft_vote(np.zeros((3, 2)))
    with pytest.raises(ConfigError, match="soft or hard"):
        ensemble_predict(np.zeros((1, 2, 2)), "median")


# Four images of class 0. Members 0 and 1 are identical (preds 0,0,0,1); member 2 makes its
# one mistake on another image (preds 0,0,1,0). All are 3/4 accurate alone, and adding 1 or 2
# to member 0 leaves the soft-vote accuracy at 3/4: only diversity tells them apart.
Y = np.zeros(4, dtype=int)
P0 = np.array([0.9, 0.9, 0.9, 0.4])
P2 = np.array([0.6, 0.6, 0.4, 0.55])
VAL = np.stack([np.stack([p, 1 - p], axis=1) for p in (P0, P0, P2)])


def test_choose_members_diversity_of_predictions_decides():
    assert choose_members(VAL, Y, 2) == [0, 2]
    assert choose_members(VAL, Y, 3) == [0, 2, 1]


def test_choose_members_diversity_of_masks_decides_when_given():
    masks = np.array([[1, 1, 0, 0], [0, 0, 1, 1], [1, 1, 0, 1]])
    # Hamming to member 0: member 1 differs in all 4 genes, member 2 in 1.
    assert choose_members(VAL, Y, 2, masks=masks) == [0, 1]


def test_choose_members_accuracy_comes_first():
    # Member 1 disagrees most with member 0 but does not fix its mistake; member 2 does.
    y = np.array([0, 0, 1])
    m0 = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4]])  # preds 0,0,0: 2/3
    m1 = np.array([[0.2, 0.8], [0.05, 0.95], [0.3, 0.7]])  # preds 1,1,1: 1/3
    m2 = np.array([[0.4, 0.6], [0.6, 0.4], [0.05, 0.95]])  # preds 1,0,1: 2/3
    P = np.stack([m0, m1, m2])
    # Soft means with m0: +m1 -> 0.55, 0.475, 0.45 -> 0,1,1 = 2/3; +m2 -> 0,0,1 = 3/3.
    assert choose_members(P, y, 2) == [0, 2]


def test_choose_members_k_too_large_names_both_numbers():
    with pytest.raises(ConfigError, match=r"cannot choose 4 ensemble members from 3 candidate"):
        choose_members(VAL, Y, 4)
    with pytest.raises(ConfigError, match=">= 1"):
        choose_members(VAL, Y, 0)
    with pytest.raises(ConfigError, match="y_val has 3 label"):
        choose_members(VAL, Y[:3], 2)
