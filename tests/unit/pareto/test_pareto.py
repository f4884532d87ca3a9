"""Pareto front, hypervolume and the selection rules on fronts whose answers are known by hand."""

import math

import numpy as np
import pytest

from evoprune.errors import ConfigError
from evoprune.pareto import (
    DEFAULT_SELECT,
    SelectionRule,
    accuracy_standard_error,
    default_ref_point,
    from_minimised,
    hypervolume,
    non_dominated,
    parse_select,
    select,
    to_minimised,
)


def test_non_dominated_marks_the_front_and_keeps_identical_rows():
    F = np.array([[0.1, 0.5], [0.2, 0.2], [0.5, 0.1], [0.3, 0.3], [0.2, 0.2], [0.5, 0.5]])
    assert non_dominated(F).tolist() == [True, True, True, False, True, False]


def test_non_dominated_three_objectives_and_empty():
    F = np.array([[0.1, 0.9, 0.5], [0.9, 0.1, 0.5], [0.5, 0.5, 0.1], [0.5, 0.5, 0.2]])
    assert non_dominated(F).tolist() == [True, True, True, False]
    assert non_dominated(np.zeros((0, 2))).tolist() == []


def test_hypervolume_of_a_2d_front_computed_by_hand():
    # Reference (1, 1). Sweeping x: [0.1, 0.2) height 1-0.5, [0.2, 0.5) height 1-0.2,
    # [0.5, 1) height 1-0.1: 0.05 + 0.24 + 0.45 = 0.74. The dominated point adds nothing.
    F = np.array([[0.1, 0.5], [0.2, 0.2], [0.5, 0.1], [0.3, 0.3]])
    assert hypervolume(F) == pytest.approx(0.74)
    assert hypervolume(F, ref_point=[1.0, 1.0]) == pytest.approx(0.74)
    assert hypervolume(F[:1], ref_point=[0.5, 1.0]) == pytest.approx(0.4 * 0.5)


def test_hypervolume_edge_cases():
    assert hypervolume(np.zeros((0, 2))) == 0.0
    assert hypervolume([[1.5, 0.1]]) == 0.0  # worse than the reference in one objective
    with pytest.raises(ConfigError, match="one reference value per objective"):
        hypervolume([[0.1, 0.2]], ref_point=[1, 1, 1])
    with pytest.raises(ConfigError, match="NaN"):
        hypervolume([[np.nan, 0.2]])


def test_default_ref_point_is_ones():
    assert default_ref_point(3).tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ConfigError):
        default_ref_point(0)


def test_minimised_conventions_round_trip():
    assert to_minimised("accuracy", 0.8) == pytest.approx(0.2)
    assert to_minimised("size", 0.3) == pytest.approx(0.3)
    assert to_minimised("ood", 0.9) == pytest.approx(0.1)
    assert from_minimised("accuracy", np.array([0.2, 0.1])).tolist() == pytest.approx([0.8, 0.9])
    with pytest.raises(ConfigError, match="accuracy, size, ood"):
        to_minimised("speed", 0.1)


def test_accuracy_standard_error():
    assert accuracy_standard_error(0.8, 100) == pytest.approx(0.04)
    assert accuracy_standard_error(1.0, 10) == 0.0
    with pytest.raises(ConfigError):
        accuracy_standard_error(0.8, 0)
    with pytest.raises(ConfigError):
        accuracy_standard_error(1.2, 10)


# A front (fitness, active fraction), indices 0..5:
ACC = np.array([0.70, 0.76, 0.78, 0.79, 0.80, 0.80])
SIZE = np.array([0.02, 0.05, 0.10, 0.30, 0.60, 0.50])


def test_select_accuracy_breaks_ties_by_size():
    assert select(ACC, SIZE, "accuracy") == 5  # 0.80 twice: the smaller one (0.50)


def test_select_smallest_within_points():
    assert select(ACC, SIZE, "smallest-within:1") == 3  # >= 0.79
    assert select(ACC, SIZE, "smallest-within:2") == 2  # >= 0.78, exactly on the threshold
    assert select(ACC, SIZE, "smallest-within:5") == 1  # >= 0.75
    assert select(ACC, SIZE, "smallest-within:0") == 5


def test_select_smallest_within_ties_go_to_higher_accuracy():
    acc = np.array([0.80, 0.785, 0.79])
    size = np.array([0.5, 0.1, 0.1])
    assert select(acc, size, "smallest-within:2") == 2


def test_select_one_se():
    se = accuracy_standard_error(0.80, 400)  # 0.02
    assert se == pytest.approx(0.02)
    assert select(ACC, SIZE, "one-se", se=se) == 2  # >= 0.78
    assert select(ACC, SIZE, "one-se", se=0.0) == 5
    assert DEFAULT_SELECT == "one-se"
    with pytest.raises(ConfigError, match="needs se"):
        select(ACC, SIZE, "one-se")


def test_select_knee_is_farthest_below_the_extremes_line():
    # Normalised (size, error) with extremes (0, 1) and (1, 0): a convex front whose bend is
    # the head at size 0.1, error 0.1 (before normalisation: see below).
    size = np.array([0.0, 0.1, 0.4, 1.0])
    err = np.array([1.0, 0.1, 0.05, 0.0])
    assert select(1.0 - err, size, "knee") == 1
    # Shift the bend to the third head.
    err2 = np.array([1.0, 0.6, 0.05, 0.0])
    assert select(1.0 - err2, size, "knee") == 2


def test_select_knee_falls_back_to_most_accurate_without_a_bend():
    size = np.array([0.0, 0.5, 1.0])
    err = np.array([1.0, 0.5, 0.0])  # a straight line: no head below it
    assert select(1.0 - err, size, "knee") == 2
    assert select([0.8], [0.3], "knee") == 0


def test_parse_select():
    assert parse_select("knee") == SelectionRule("knee")
    assert parse_select(" Smallest-Within:1.5 ") == SelectionRule("smallest-within", 1.5)
    assert str(parse_select("smallest-within:1")) == "smallest-within:1"
    with pytest.raises(ConfigError, match=r"smallest-within:abc.*e\.g\. smallest-within:1"):
        parse_select("smallest-within:abc")
    with pytest.raises(ConfigError, match="between 0 and 100"):
        parse_select("smallest-within:-1")
    with pytest.raises(ConfigError, match="one-se, knee, accuracy"):
        parse_select("best")


def test_select_rejects_mismatched_or_empty_fronts():
    with pytest.raises(ConfigError, match="empty front"):
        select([], [], "accuracy")
    with pytest.raises(ConfigError, match="one accuracy and one size"):
        select([0.8, 0.7], [0.1], "accuracy")
    assert math.isfinite(select([0.8], [0.1], "one-se", se=0.01))
