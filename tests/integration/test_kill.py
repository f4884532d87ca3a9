"""SIGKILL at random moments of a real ``evoprune run`` (issue 8): during feature extraction,
during the search and during the final training and writing. Started again, the same command
must finish with exactly the result of a run that was never interrupted, and leave no
half-written file behind.

The runs are real subprocesses on 200 real face images; every one, the uninterrupted reference
included, runs with OMP_NUM_THREADS=1 so that their floats agree bit for bit. The moments are
drawn from a seeded generator, so a failure reproduces.
"""

import json
import random
import signal
from pathlib import Path

import numpy as np
import pytest

from evoprune.runs.store import read_history
from evoprune.testing import (
    EVALUATIONS,
    at_rows,
    cli,
    extracting,
    history_rows,
    kill_when,
    leftovers,
    result_doc,
    run_args,
    writing,
)

_TIMEOUT = 300  # seconds any one run may take on a slow, busy machine


def _run(data: Path, cache: Path, out: Path) -> None:
    """One run to completion (a rerun resumes whatever an interrupted one left)."""
    proc = cli(*run_args(data, out, cache), timeout=_TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]


def _kill_when(data: Path, cache: Path, out: Path, moment, log: Path) -> None:
    """Start a run and SIGKILL it as soon as ``moment(out, log_text)`` is true; fails when the
    run ends by itself first or the moment never comes."""
    status = kill_when(
        run_args(data, out, cache), out, moment, signal.SIGKILL, log, timeout=_TIMEOUT, grace=60
    )
    assert status == -signal.SIGKILL, (
        f"the run was not killed at the moment (exit {status}):\n{log.read_text()[-3000:]}"
    )


def _cache_matrix(cache: Path) -> np.ndarray:
    """The one feature matrix in ``cache``; fails unless exactly one complete file is there."""
    files = sorted(cache.glob("*.npz"))
    assert len(files) == 1, files
    with np.load(files[0], allow_pickle=False) as archive:
        header = json.loads(str(archive["header"][()]))
        X = archive["features"]
    assert header["key"] == files[0].stem and list(X.shape) == header["shape"]
    assert np.isfinite(X).all()
    return X


def _assert_same_as_reference(out: Path, cache: Path, reference) -> None:
    ref_out, ref_cache = reference
    assert result_doc(out) == result_doc(ref_out)
    assert (out / "history.csv").read_bytes() == (ref_out / "history.csv").read_bytes()
    assert len(read_history(out / "history.csv")) == EVALUATIONS
    for name in ("head.safetensors", "reference_head.safetensors", "convergence.png"):
        assert (out / name).is_file(), name
    assert json.loads((out / "config.json").read_text()) == json.loads(
        (ref_out / "config.json").read_text()
    )
    assert np.array_equal(_cache_matrix(cache), _cache_matrix(ref_cache))
    assert leftovers(out, recursive=True) == [] and leftovers(cache, recursive=True) == []


@pytest.fixture(scope="module")
def reference(tmp_path_factory, faces_folder):
    """An uninterrupted run with a fresh private feature cache: (results folder, cache)."""
    base = tmp_path_factory.mktemp("kill-reference")
    out, cache = base / "out", base / "cache"
    _run(faces_folder, cache, out)
    return out, cache


def _private_cache_copy(reference, base: Path) -> Path:
    """A copy of the reference's feature cache (so no test can spoil another's)."""
    cache = base / "cache"
    cache.mkdir()
    for f in reference[1].glob("*.npz"):
        (cache / f.name).write_bytes(f.read_bytes())
    return cache


def test_sigkill_during_feature_extraction_then_rerun_is_identical(
    reference, faces_folder, tmp_path_factory
):
    delay = random.Random(8001).uniform(0.2, 2.0)
    base = tmp_path_factory.mktemp("kill-features")
    out, cache = base / "out", base / "cache"  # a fresh cache: the run must extract
    _kill_when(faces_folder, cache, out, extracting(delay), base / "killed.log")
    assert not list(cache.glob("*.npz")), "the kill came after the extraction had finished"
    assert not out.exists()  # nothing is written before the search starts
    _run(faces_folder, cache, out)
    _assert_same_as_reference(out, cache, reference)


def test_sigkill_during_the_search_then_rerun_is_identical(
    reference, faces_folder, tmp_path_factory
):
    rows = random.Random(8002).randint(2, EVALUATIONS - 2)
    base = tmp_path_factory.mktemp("kill-search")
    out, cache = base / "out", _private_cache_copy(reference, base)
    _kill_when(faces_folder, cache, out, at_rows(rows), base / "killed.log")
    assert not (out / "result.json").exists()
    assert rows <= len(read_history(out / "history.csv")) < EVALUATIONS
    _run(faces_folder, cache, out)
    _assert_same_as_reference(out, cache, reference)


def test_sigkill_during_final_writing_then_rerun_is_identical(
    reference, faces_folder, tmp_path_factory
):
    base = tmp_path_factory.mktemp("kill-writing")
    out, cache = base / "out", _private_cache_copy(reference, base)
    # the history is complete (the search is over) and a final file is being written (the
    # run also writes config.json and history.csv atomically when it starts)
    _kill_when(
        faces_folder,
        cache,
        out,
        lambda out, text: (
            history_rows(out) == EVALUATIONS
            and (writing(out, text) or (out / "head.safetensors").exists())
        ),
        base / "killed.log",
    )
    assert not (out / "result.json").exists()
    assert history_rows(out) == EVALUATIONS
    _run(faces_folder, cache, out)
    _assert_same_as_reference(out, cache, reference)
