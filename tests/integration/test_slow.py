"""The README's main job at full size. Slow (about 2 minutes): run with `pytest -m slow`."""

import pytest

from evoprune.runs.experiment import RunConfig, run_experiment


@pytest.mark.slow
def test_main_job_on_full_elpv(tmp_path, feature_cache):
    r = run_experiment(
        RunConfig(data="elpv", encoding="fs", objectives=("accuracy", "size")),
        tmp_path,
        progress=False,
        cache_dir=feature_cache,
    )
    assert r["n_images"] == 2624 and r["evaluations"] == 200 and r["genes"] == 1280
    assert r["algorithm"] == "nsga2" and r["select"] == "one-se" and len(r["front"]) >= 2
    # 4 classes, majority class 57.5 % of the held-out images; features reach far above it
    assert r["test_accuracy"] > 0.72 and r["reference_test_accuracy"] > 0.72
    # the shipped head is the smallest front head within one standard error of the best
    # fitness: far smaller than the not-pruned head
    assert r["active_fraction"] < 0.5 and r["head_params"] < r["reference_head_params"] / 2
    assert (tmp_path / "pareto.png").is_file() and (tmp_path / "pareto.csv").is_file()
    assert r["wall_seconds"] < 15 * 60
