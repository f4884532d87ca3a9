"""benchmarks/search_vs_rankings.py: the cell arithmetic on made-up parts, and a tiny real run
that writes every key and resumes without redoing a part."""

from __future__ import annotations

import json
import math

import pytest


@pytest.fixture(scope="module")
def bench(load_script):
    return load_script("benchmarks/search_vs_rankings.py")


def pick(acc, fitness=None, frac=0.04):
    return {
        "active_fraction": frac,
        "fitness": acc if fitness is None else fitness,
        "test_accuracy": acc,
    }


def seed_part(search, paper, rankings, n_test=50, seconds=10.0):
    return {
        "n_train": 200,
        "n_test": n_test,
        "search": {
            "search_seconds": seconds,
            "picks": {"0.05": search},
            "shipped": pick(0.8, 0.9, 0.3),
        },
        "paper_ga": {
            "search_seconds": 99.0,
            "picks": {"0.05": paper},
            "shipped": pick(0.7, 0.72, 0.5),
        },
        "rankings": {m: {"0.05": pick(a, f)} for m, (a, f) in rankings.items()},
    }


def made_up_doc(search_second=0.70):
    # ranking a: 0.80, 0.60 (mean 0.70); b: 0.65, 0.70 (0.675): a is the strongest, after the
    # fact, although b wins the second seed
    seeds = {
        "0": seed_part(pick(0.75, 0.85), None, {"a": (0.80, 0.82), "b": (0.65, 0.66)}),
        "1": seed_part(
            None if search_second is None else pick(search_second, 0.74),
            pick(0.5, 0.6),
            {"a": (0.60, 0.61), "b": (0.70, 0.70)},
        ),
    }
    return {
        "datasets": {
            "set": {
                "n_images": 250,
                "n_classes": 4,
                "seeds": seeds,
                "paper_evaluation": {"seconds": 20.0},
                "kendall": {"tau": 0.5},
            }
        }
    }


def test_cell_takes_the_strongest_ranking_after_the_fact(bench):
    doc = made_up_doc()
    c = bench.cell(doc["datasets"]["set"], ["0", "1"], "0.05")
    assert c["best_ranking"] == "a" and c["best_ranking_mean"] == pytest.approx(0.70)
    assert c["search_mean"] == pytest.approx(0.725)
    assert c["delta_points"] == pytest.approx(2.5)  # mean of (0.75-0.80, 0.70-0.60)
    assert c["won"] is True
    assert c["paper_ga_mean"] == pytest.approx(0.5) and c["paper_ga_seeds_without_head"] == 1
    se = c["sampling_error_points"]
    assert se["one_accuracy_on_heldout"] == pytest.approx(100 * math.sqrt(0.7 * 0.3 / 50))
    # differences -0.05 and +0.10: standard deviation 0.15 / sqrt(2), over sqrt(2) seeds
    assert se["delta_paired_over_seeds"] == pytest.approx(100 * 0.15 / 2)


def test_the_ranking_chosen_on_the_other_seeds(bench):
    # a: 0.80, 0.60, 0.76 (mean 0.72, strongest after the fact); b: 0.65, 0.70, 0.70
    by_method = {"a": [0.80, 0.60, 0.76], "b": [0.65, 0.70, 0.70]}
    # seed 0 left out: b (0.70 on seeds 1, 2) over a (0.68); seed 1: a (0.78 > 0.675);
    # seed 2: a (0.70 > 0.675)
    assert bench.other_seeds_choice(by_method) == [0.65, 0.60, 0.76]
    assert bench.other_seeds_choice({"a": [0.8], "b": [0.9]}) is None
    doc = made_up_doc()  # two seeds: each left out chooses the ranking the other seed liked
    c = bench.cell(doc["datasets"]["set"], ["0", "1"], "0.05")
    assert c["ranking_chosen_on_other_seeds_per_seed"] == [0.65, 0.60]
    # search 0.75, 0.70 against 0.65, 0.60
    assert c["delta_vs_ranking_chosen_on_other_seeds_points"] == pytest.approx(10.0)
    assert c["delta_vs_each_ranking_points"] == pytest.approx({"a": 2.5, "b": 5.0})


def test_a_seed_without_a_head_that_small_loses_the_cell(bench):
    c = bench.cell(made_up_doc(None)["datasets"]["set"], ["0", "1"], "0.05")
    assert c["search_seeds_without_head"] == 1 and c["won"] is False
    assert c["delta_points"] == pytest.approx(-5.0)  # the seed that has one: 0.75 - 0.80


def test_summary_keys(bench):
    keys = bench.summarise(made_up_doc(0.60), ["set"], ["0", "1"], ["0.05"])
    assert keys["cells_won_vs_best_ranking_fraction"] == 0.0  # 0.675 < 0.70
    assert keys["mean_delta_vs_best_ranking_points"] == pytest.approx(-2.5)
    assert keys["worst_cell_delta_points"] == pytest.approx(-2.5)
    assert keys["search_seconds_in_paper_evaluations"] == pytest.approx(0.5)  # 10 s / 20 s
    assert keys["shared_vs_full_kendall_tau"] == pytest.approx(0.5)
    # fitness - held-out accuracy of the picked heads: (0.85-0.75, 0.74-0.60); the GA's (0.1)
    assert keys["selection_bias_points_search"] == pytest.approx(12.0)
    assert keys["selection_bias_points_paper_ga"] == pytest.approx(10.0)
    assert keys["met"]["selection_bias_points_search"] is False
    assert keys["met"]["search_seconds_in_paper_evaluations"] is True
    assert keys["per_dataset"]["set"]["n_test"] == [50]
    # search 0.75, 0.60 against the other seeds' choice 0.65, 0.60: +5 points, won
    assert keys["mean_delta_vs_ranking_chosen_on_other_seeds_points"] == pytest.approx(5.0)
    assert keys["cells_won_vs_ranking_chosen_on_other_seeds_fraction"] == 1.0
    assert keys["vs_each_ranking"]["a"]["mean_delta_points"] == pytest.approx(-2.5)
    assert keys["vs_each_ranking"]["b"]["mean_delta_points"] == pytest.approx(0.0)
    assert keys["vs_each_ranking"]["b"]["cells_won_fraction"] == 0.0  # a tie is not a win
    # an unfinished seed: nothing is summarised
    doc = made_up_doc()
    del doc["datasets"]["set"]["seeds"]["1"]["rankings"]
    assert bench.summarise(doc, ["set"], ["0", "1"], ["0.05"]) == {}


def test_quick_run_writes_every_key_and_resumes(bench, tmp_path, feature_cache, monkeypatch):
    monkeypatch.setenv("EVOPRUNE_DATASETS_DIR", str(tmp_path / "sets"))
    out = tmp_path / "svr.json"
    args = ["--quick", "--limit", "100", "--evaluations", "8", "--population", "4"]
    args += ["--densities", "0.05,0.5", "--rankings", "anova_f", "--kendall-masks", "6"]
    args += ["--hidden-size", "64", "--out", str(out), "--cache-dir", str(feature_cache)]
    assert bench.main(args) == 0
    doc = json.loads(out.read_text())
    for key, _, _ in bench.TARGETS:
        assert key in doc
    for key in ("selection_bias_points_search", "selection_bias_points_paper_ga", "cells"):
        assert key in doc
    assert doc["complete"] is True and doc["recipe"]["search"]["objectives"] == [
        "accuracy",
        "size",
    ]
    assert doc["recipe"]["search"]["fidelity"] == "multi"
    assert doc["recipe"]["paper_ga"]["fidelity"] == "full"
    assert doc["recipe"]["paper_ga"]["final_check"] == "none"
    assert doc["recipe"]["paper_ga"]["init"] == "random"
    assert doc["recipe"]["paper_ga"]["objectives"] == ["accuracy"]
    part = doc["datasets"]["digits"]
    assert part["n_images"] == 100 and part["paper_evaluation"]["seconds"] > 0
    assert part["kendall"]["n_masks"] == 6
    seeds = part["seeds"]
    assert sorted(seeds) == ["0", "1"]
    assert all(s["n_test"] == 20 and s["n_train"] == 80 for s in seeds.values())
    for s in seeds.values():
        for who in ("search", "paper_ga"):
            for d, p in s[who]["picks"].items():
                assert p is None or p["active_fraction"] <= float(d) + 1e-9
        assert s["rankings"]["anova_f"]["0.05"]["active_fraction"] == 64 / 1280
    assert [c["density"] for c in doc["cells"]] == [0.05, 0.5]

    def no_more_runs(*a, **k):
        raise AssertionError("a finished part was run again")

    monkeypatch.setattr(bench, "run_experiment", no_more_runs)
    monkeypatch.setattr(bench, "rankings_part", no_more_runs)
    assert bench.main(args) == 0
    again = json.loads(out.read_text())
    assert again["datasets"] == doc["datasets"] and again["cells"] == doc["cells"]
    # another recipe in the same file is refused
    assert bench.main([*args, "--evaluations", "9"]) == 2
    assert json.loads(out.read_text())["recipe"] == doc["recipe"]


def test_plot_draws_the_cells_of_a_json_and_runs_nothing(bench, tmp_path, monkeypatch):
    doc = made_up_doc(0.60)
    doc.update(bench.summarise(doc, ["set"], ["0", "1"], ["0.05"]))
    out = tmp_path / "svr.json"
    out.write_text(json.dumps(doc))

    def no_run(*a, **k):
        raise AssertionError("--plot ran a part")

    monkeypatch.setattr(bench, "run_dataset", no_run)
    png = tmp_path / "cells.png"
    assert bench.main(["--out", str(out), "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.read_text() == json.dumps(doc)  # the JSON is left as it was
    assert bench.main(["--out", str(tmp_path / "none.json"), "--plot", str(png)]) == 2
    out.write_text(json.dumps({"cells": []}))
    assert bench.main(["--out", str(out), "--plot", str(png)]) == 2
