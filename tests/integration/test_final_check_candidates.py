"""benchmarks/final_check_candidates.py: a tiny real search's choices are what the final check
ranks first among its candidates, the summary's arithmetic, resuming, and the comparator file
used only when it holds the same search."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evoprune.runs.front import check_ranking

TINY = ["--limit", "120", "--evaluations", "12", "--population", "6"]
TINY += ["--shared-evaluations", "200", "--sizes", "0.05,0.2"]


@pytest.fixture(scope="module")
def bench(load_script):
    return load_script("benchmarks/final_check_candidates.py")


def test_a_tiny_run_chooses_as_the_final_check_and_resumes(
    bench, tmp_path, feature_cache, monkeypatch
):
    monkeypatch.setenv("EVOPRUNE_DATASETS_DIR", str(tmp_path / "sets"))
    out = tmp_path / "fcc.json"
    args = ["--runs", "digits:0", "--out", str(out), "--against", str(tmp_path / "none.json")]
    args += [*TINY, "--cache-dir", str(feature_cache)]
    assert bench.main(args) == 0
    doc = json.loads(out.read_text())
    run = doc["runs"]["digits:0"]
    cands = run["candidates"]
    assert run["n_genes"] == 1280 and set(run["choices"]) == {"0.05", "0.2"}
    for size, c in run["choices"].items():
        assert c["units"] == round(float(size) * 1280)
        ok = [x for x in cands if x["units"] <= c["units"]]
        cv = np.array([x["cv"] for x in ok])
        prob = np.array([x["prob"] for x in ok])
        first = ok[int(np.argmax(check_ranking("cv-prob", cv, prob)))]
        assert (c["row"], c["check"], c["cv_prob"]) == (first["row"], first["cv"], first["test"])
        assert c["oracle"] == max(x["test"] for x in ok) >= c["cv_prob"]
        assert 0.0 <= c["fresh_check"] <= 1.0 and c["best_ranking"] is None
    assert doc["choices"] == 2 and doc["choice_minus_best_ranking_points"] is None
    assert doc["check_bias_points_candidates"] == pytest.approx(
        100 * np.mean([x["cv"] - x["test"] for x in cands])
    )

    def no_more(*a, **k):
        raise AssertionError("a finished run ran again")

    monkeypatch.setattr(bench, "candidates", no_more)
    assert bench.main(args) == 0
    assert bench.main([*args, "--evaluations", "14"]) == 2  # another recipe in the same file


def _choice(cv_prob, oracle, check, fresh):
    return {
        "cv_prob": cv_prob,
        "cv": cv_prob,
        "oracle": oracle,
        "rankings_only": None,
        "check": check,
        "fresh_check": fresh,
    }


def test_the_summary_holds_choices_against_the_strongest_ranking(bench):
    doc = {
        "runs": {
            "elpv:3": {
                "candidates": [{"cv": 0.80, "test": 0.78}, {"cv": 0.70, "test": 0.72}],
                "choices": {
                    "0.05": _choice(0.78, 0.80, 0.80, 0.79),
                    "0.2": _choice(0.80, 0.82, 0.84, 0.83),
                },
            }
        }
    }
    cells = {("elpv", "0.05", "3"): (0.77, 0.78), ("elpv", "0.2", "3"): (0.81, 0.79)}
    bench.summarise(doc, cells)
    assert doc["choice_minus_best_ranking_points"] == pytest.approx(0.0)  # +1 and -1
    assert doc["oracle_minus_best_ranking_points"] == pytest.approx(2.0)  # +3 and +1
    assert doc["check_bias_points_candidates"] == pytest.approx(0.0)  # +2 and -2
    assert doc["check_bias_points_choice"] == pytest.approx(3.0)  # +2 and +4
    assert doc["fresh_check_bias_points_choice"] == pytest.approx(2.0)  # +1 and +3
    assert doc["choices_as_the_search_benchmark"] == 1  # 0.78 = 0.78; 0.80 != 0.79


def test_the_comparator_file_counts_only_for_the_same_search(bench, tmp_path):
    path = tmp_path / "svr.json"
    cell = {
        "dataset": "digits",
        "density": 0.05,
        "best_ranking_per_seed": [0.9, None],
        "search_per_seed": [0.91, 0.92],
    }
    path.write_text(
        json.dumps(
            {"recipe": {"search": {"a": 1}}, "summarised": {"seeds": [0, 1]}, "cells": [cell]}
        )
    )
    assert bench.against_cells(path, {"a": 1}) == {("digits", "0.05", "0"): (0.9, 0.91)}
    assert bench.against_cells(path, {"a": 2}) == {}
    assert bench.against_cells(tmp_path / "missing.json", {"a": 1}) == {}
