"""The package's shape: imports run downhill (the import-linter contracts in pyproject.toml) and
the search core imports no torch."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_import_contracts_are_kept():
    pytest.importorskip("importlinter")
    done = _run(
        sys.executable,
        "-c",
        "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports())",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "BROKEN" not in done.stdout and "KEPT" in done.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    """The contract can fail: a copy of the package where the search imports the model."""
    pytest.importorskip("importlinter")
    import shutil

    pkg = tmp_path / "src" / "evoprune"
    shutil.copytree(ROOT / "src" / "evoprune", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    with (pkg / "search" / "operators.py").open("a") as fh:
        fh.write("\nfrom evoprune.model.head import CompactHead  # noqa: E402,F401\n")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports())",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(tmp_path / "src"), "PATH": ""},
    )
    assert done.returncode != 0
    assert "evoprune.search is not allowed to import evoprune.model" in done.stdout


def test_the_search_does_not_import_torch():
    done = _run(
        sys.executable,
        "-c",
        "import sys, evoprune.search, evoprune.pareto; "
        "assert 'torch' not in sys.modules, 'torch was imported'",
    )
    assert done.returncode == 0, done.stderr
