"""benchmarks/swap_refinement.py: a tiny real climb keeps the size, never lowers its check
score, and a rerun does not climb again."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="module")
def bench(load_script):
    return load_script("benchmarks/swap_refinement.py")


def test_a_climb_keeps_its_size_and_resumes(bench, tmp_path, feature_cache, monkeypatch):
    monkeypatch.setenv("EVOPRUNE_DATASETS_DIR", str(tmp_path / "sets"))
    out = tmp_path / "sr.json"
    args = ["--datasets", "digits", "--limit", "120", "--seeds", "1", "--densities", "0.05"]
    args += ["--steps", "2", "--neighbours", "3", "--out", str(out)]
    args += ["--cache-dir", str(feature_cache)]
    assert bench.main(args) == 0
    doc = json.loads(out.read_text())
    c = doc["datasets"]["digits"]["0"]["climbs"]["0.05"]
    assert c["units"] == 64 and c["end_units"] == 64  # 5 % of 1,280 features, before and after
    assert c["genes_changed"] % 2 == 0  # a unit dropped for each unit added
    path = c["check_path"]
    assert len(path) == 3 and all(b >= a for a, b in zip(path, path[1:]))
    assert 0.0 <= c["start_test"] <= 1.0 and doc["climbs"] == 1
    assert doc["mean_gain_points"] == pytest.approx(100 * (c["end_test"] - c["start_test"]))

    def no_more(*a, **k):
        raise AssertionError("a finished climb ran again")

    monkeypatch.setattr(bench, "climb", no_more)
    assert bench.main(args) == 0
    assert bench.main([*args, "--steps", "3"]) == 2  # another recipe in the same file
