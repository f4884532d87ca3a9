"""Issue 20.8: documentation as a site (MkDocs, an API reference from the docstrings, built
with --strict), a changelog, and examples that the suite runs."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_every_docs_page_is_a_page_of_the_site():
    import re

    text = (ROOT / "mkdocs.yml").read_text()
    nav = re.split(r"\n(?=\S)", text.split("\nnav:\n", 1)[1], maxsplit=1)[0]
    pages = set(re.findall(r":\s*(\S+\.md)\s*$", nav, flags=re.M))
    assert {p.name for p in (ROOT / "docs").glob("*.md")} <= pages
    assert {"api.md", "changelog.md", "examples.md", "index.md"} <= pages
    assert (ROOT / "CHANGELOG.md").read_text().startswith("# Changelog")


@pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None, reason='needs the docs extra (".[docs]")'
)
def test_the_site_builds_strictly_with_the_api_reference(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    api = (tmp_path / "api" / "index.html").read_text()
    for name in (
        "estimator.EvoPruneClassifier",
        "estimator.load",
        "runs.experiment.run_experiment",
        "backbones.register_backbone",
        "progress.WorkBar",
    ):
        assert f'id="evoprune.{name}"' in api, name
    assert "Changelog" in (tmp_path / "changelog" / "index.html").read_text()
    examples = (tmp_path / "examples" / "index.html").read_text()
    assert "load_digits" in examples  # the script itself, included


@pytest.mark.parametrize("script", sorted((ROOT / "examples").glob("*.py")), ids=lambda p: p.name)
def test_examples_run(script):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip(), f"{script.name} printed nothing"


def test_the_tiny_library_example_prunes_and_scores(load_script):
    out = load_script("examples/tiny_library.py").main(evaluations=12)
    assert out["evaluations"] == 12
    assert 0 < out["features kept"] <= out["of"] == 64
    assert out["pruned head, held-out accuracy"] > 0.6  # ten classes: chance is 0.1


def test_the_guides_main_job_output_names_the_folder_the_main_job_writes():
    """The guide shows the README's main job's output: its results folder is the default
    folder of those settings (a new result setting changes the hash, and the guide with it)."""
    import re

    from evoprune.runs import RunConfig
    from evoprune.runs.config import default_out_dir

    guide = (ROOT / "docs" / "guide.md").read_text()
    shown = re.findall(r"results: (runs/elpv_fs_\S+)", guide)
    cfg = RunConfig(data="elpv", encoding="fs", objectives=("accuracy", "size"))
    assert shown == [default_out_dir(cfg).as_posix()]
