"""End to end on real images: `evoprune run` through the CLI and the results folder."""

import csv
import json
import shutil

import numpy as np
import pytest

from evoprune.cli import main
from evoprune.io import MANIFEST_FILE
from evoprune.runs.experiment import run_experiment
from evoprune.runs.store import hex_to_mask, mask_to_hex

REQUIRED = [
    "dataset",
    "backbone",
    "encoding",
    "trainer",
    "fitness_split",
    "seed",
    "n_classes",
    "genes",
    "active_genes",
    "active_fraction",
    "fitness",
    "test_accuracy",
    "reference_test_accuracy",
    "head_params",
    "reference_head_params",
    "evaluations",
    "features_cached",
    "timings",
    "wall_seconds",
    "best_mask",
]


def test_tiny_run_writes_a_complete_results_folder(tiny_run):
    out, r, _ = tiny_run
    for key in REQUIRED:
        assert key in r, key
    assert r["n_classes"] == 2 and r["genes"] == 1280 and len(r["best_mask"]) == 1280
    assert r["active_genes"] == sum(r["best_mask"])
    assert r["active_fraction"] == pytest.approx(r["active_genes"] / 1280)
    assert r["evaluations"] == 12 and not r["leaked_test_set"]
    assert r["n_train"] + r["n_test"] == 200 and r["n_test"] == 40
    # the compact head is smaller in proportion to the features kept
    assert r["head_params"] == r["active_genes"] * 512 + 512 + 512 * 2 + 2
    assert r["reference_head_params"] == 1280 * 512 + 512 + 512 * 2 + 2
    # 2 balanced classes: chance is 0.5; real ImageNet features do far better
    assert r["test_accuracy"] > 0.8 and r["reference_test_accuracy"] > 0.8
    assert set(r["timings"]) == {"features", "search", "final_training", "reference_training"}
    for name in [
        "config.json",
        "history.csv",
        "convergence.png",
        "head.safetensors",
        "reference_head.safetensors",
    ]:
        assert (out / name).stat().st_size > 0, name
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert [int(x["index"]) for x in rows] == list(range(1, 13))
    best = max(float(x["fitness"]) for x in rows)
    assert float(rows[-1]["best_fitness"]) == pytest.approx(best) == pytest.approx(r["fitness"])
    assert json.loads((out / "config.json").read_text())["run"]["seed"] == 1
    # the form that computed the features (forms differ by up to 1e-4): the plain install's
    assert r["backbone_form"] == "onnxruntime/cpu"


def test_mask_hex_round_trip():
    m = (np.random.default_rng(0).random(1281) < 0.4).astype(np.uint8)
    assert (hex_to_mask(mask_to_hex(m), 1281) == m).all()


def test_a_finished_run_started_again_says_so_and_changes_nothing(tiny_run, caplog):
    """Before: it retrained the final heads and rewrote result.json (wall_seconds replaced)."""
    out, first, cfg = tiny_run
    run_copy = out.parent / f"{out.name}-again"  # beside it: the same relative data path
    shutil.copytree(out, run_copy)
    files = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in run_copy.rglob("*") if p.is_file()}
    caplog.set_level("INFO", logger="evoprune")
    again = run_experiment(cfg, run_copy, progress=False)
    assert again == first
    assert "already finished" in caplog.text and str(run_copy) in caplog.text
    assert "Feature cache" not in caplog.text  # no work at all, not even loading features
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in run_copy.rglob("*") if p.is_file()}
    assert after == files


def test_second_run_uses_cached_features_and_resumes(tiny_run, feature_cache, tmp_path):
    out, first, cfg = tiny_run
    # copy the interrupted state: config and the first 7 history rows
    (tmp_path / "config.json").write_text((out / "config.json").read_text())
    shutil.copy(out / MANIFEST_FILE, tmp_path)  # the files are evoprune's
    lines = (out / "history.csv").read_text().splitlines()
    (tmp_path / "history.csv").write_text("\n".join(lines[:8] + [lines[8][:20]]) + "\n")
    again = run_experiment(cfg, tmp_path, progress=False, cache_dir=feature_cache)
    assert again["features_cached"] is True
    assert again["resumed_evaluations"] == 7
    assert again["best_mask"] == first["best_mask"]
    assert again["test_accuracy"] == first["test_accuracy"]


def test_cli_run_prints_table_and_leak_warning(tmp_path, feature_cache, capsys, caplog):
    code = main(
        [
            "run",
            "--data",
            "elpv2",
            "--limit",
            "120",
            "--population",
            "4",
            "--evaluations",
            "5",
            "--fitness-split",
            "test",
            "--out",
            str(tmp_path),
            "--cache-dir",
            str(feature_cache),
            "--no-progress",
            "--encoding",
            "fc",
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "not pruned" in text and "LEAKED" in text
    assert "leak" in caplog.text.lower()
    r = json.loads((tmp_path / "result.json").read_text())
    assert r["leaked_test_set"] is True and r["genes"] == 512


def test_cli_bad_data_is_one_clear_error(tmp_path, capsys, caplog):
    code = main(["run", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")])
    assert code == 2
    assert "nowhere" in caplog.text and "Traceback" not in caplog.text


def test_cli_lists_backbones_and_datasets(capsys):
    assert main(["backbones"]) == 0
    out = capsys.readouterr().out
    assert "efficientnet-lite0" in out and "resnet50" in out
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "elpv" in out and "elpv2" in out


def test_ctrl_c_keeps_the_evaluations_made(
    faces_folder, feature_cache, tmp_path, monkeypatch, caplog
):
    from evoprune.problem import HeadProblem

    real = HeadProblem.evaluate
    calls = {"n": 0}

    def interrupted(self, chrom):
        calls["n"] += len(chrom)
        if calls["n"] > 5:
            raise KeyboardInterrupt
        return real(self, chrom)

    monkeypatch.setattr(HeadProblem, "evaluate", interrupted)
    args = [
        "run",
        "--data",
        str(faces_folder),
        "--population",
        "4",
        "--evaluations",
        "8",
        "--out",
        str(tmp_path),
        "--cache-dir",
        str(feature_cache),
        "--no-progress",
    ]
    # an older result of this configuration in the same folder: an attempt interrupted at
    # once writes config.json, then a stale result.json is left there (listed as evoprune's)
    calls["n"] = 10
    assert main(args) == 130
    from evoprune.io import OutputFolder, atomic_write_text

    with OutputFolder(tmp_path, "run").claim():
        atomic_write_text(tmp_path / "result.json", "{}")
    calls["n"] = 0
    assert main(args) == 130
    assert "resume" in caplog.text
    rows = list(csv.DictReader((tmp_path / "history.csv").open()))
    assert len(rows) == 4  # the initial population was evaluated before the interruption
    assert not (tmp_path / "result.json").exists()
    monkeypatch.setattr(HeadProblem, "evaluate", real)
    assert main(args) == 0
    r = json.loads((tmp_path / "result.json").read_text())
    assert r["resumed_evaluations"] == 4 and r["evaluations"] == 8
