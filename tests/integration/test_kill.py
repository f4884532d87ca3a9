"""SIGKILL at random moments of a real ``evoprune run`` (issue 8): during feature extraction,
during the search and during the final training and writing. Started again, the same command
must finish with exactly the result of a run that was never interrupted, and leave no
half-written file behind.

The runs are real subprocesses on 200 real face images; every one, the uninterrupted reference
included, runs with OMP_NUM_THREADS=1 so that their floats agree bit for bit. The moments are
drawn from a seeded generator, so a failure reproduces.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from evoprune.runs.store import read_history

_MAIN = "from evoprune.cli import main; import sys; sys.exit(main(sys.argv[1:]))"
#: keys of result.json that may differ between an interrupted and an uninterrupted run
_VOLATILE = {"timings", "wall_seconds", "resumed_evaluations", "features_cached"}
_EVALUATIONS = 12
_TIMEOUT = 300  # seconds any one run may take on a slow, busy machine


def _command(data: Path, cache: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-c",
        _MAIN,
        "run",
        "--data",
        str(data),
        "--encoding",
        "fs",
        "--population",
        "6",
        "--evaluations",
        str(_EVALUATIONS),
        "--seed",
        "1",
        "--cache-dir",
        str(cache),
        "--out",
        str(out),
        "--no-progress",
    ]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}


def _run(data: Path, cache: Path, out: Path) -> None:
    """One run to completion (a rerun resumes whatever an interrupted one left)."""
    proc = subprocess.run(
        _command(data, cache, out),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=_TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]


def _kill_when(data: Path, cache: Path, out: Path, moment, log: Path) -> None:
    """Start a run and SIGKILL it as soon as ``moment(log_text)`` is true (polled every few
    milliseconds); fails when the run ends by itself first."""
    with log.open("w") as err:
        proc = subprocess.Popen(
            _command(data, cache, out), env=_env(), stdout=subprocess.DEVNULL, stderr=err
        )
    try:
        deadline = time.monotonic() + _TIMEOUT
        while not moment(log.read_text()):
            assert proc.poll() is None, (
                f"the run ended before the moment to kill it:\n{log.read_text()[-3000:]}"
            )
            assert time.monotonic() < deadline, "the moment to kill never came"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, log.read_text()[-3000:]


def _data_rows(out: Path) -> int:
    """Evaluations in history.csv so far (the header excluded)."""
    try:
        return max(0, (out / "history.csv").read_text().count("\n") - 1)
    except OSError:
        return 0


def _result(out: Path) -> dict:
    doc = json.loads((out / "result.json").read_text())
    return {k: v for k, v in doc.items() if k not in _VOLATILE}


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


def _leftovers(*folders: Path) -> list[Path]:
    """Temporary files of atomic writes that were never renamed into place."""
    return [p for f in folders if f.exists() for p in f.rglob(".*.tmp")]


def _assert_same_as_reference(out: Path, cache: Path, reference) -> None:
    ref_out, ref_cache = reference
    assert _result(out) == _result(ref_out)
    assert (out / "history.csv").read_bytes() == (ref_out / "history.csv").read_bytes()
    assert len(read_history(out / "history.csv")) == _EVALUATIONS
    for name in ("head.safetensors", "reference_head.safetensors", "convergence.png"):
        assert (out / name).is_file(), name
    assert json.loads((out / "config.json").read_text()) == json.loads(
        (ref_out / "config.json").read_text()
    )
    assert np.array_equal(_cache_matrix(cache), _cache_matrix(ref_cache))
    assert _leftovers(out, cache) == []


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
    rng = random.Random(8001)
    base = tmp_path_factory.mktemp("kill-features")
    out, cache = base / "out", base / "cache"  # a fresh cache: the run must extract
    started = {}

    def extracting(text: str) -> bool:
        if "Feature cache miss" not in text:
            return False
        started.setdefault("t", time.monotonic())
        return time.monotonic() - started["t"] >= started.setdefault("delay", rng.uniform(0.2, 2.0))

    _kill_when(faces_folder, cache, out, extracting, base / "killed.log")
    assert not list(cache.glob("*.npz")), "the kill came after the extraction had finished"
    assert not out.exists()  # nothing is written before the search starts
    _run(faces_folder, cache, out)
    _assert_same_as_reference(out, cache, reference)


def test_sigkill_during_the_search_then_rerun_is_identical(
    reference, faces_folder, tmp_path_factory
):
    rows = random.Random(8002).randint(2, _EVALUATIONS - 2)
    base = tmp_path_factory.mktemp("kill-search")
    out, cache = base / "out", _private_cache_copy(reference, base)
    _kill_when(faces_folder, cache, out, lambda _: _data_rows(out) >= rows, base / "killed.log")
    assert not (out / "result.json").exists()
    assert rows <= len(read_history(out / "history.csv")) < _EVALUATIONS
    _run(faces_folder, cache, out)
    _assert_same_as_reference(out, cache, reference)


def _writing(out: Path) -> bool:
    """A final file is being written: a temporary file of an atomic write (or of the
    safetensors library) is in the folder."""
    return any(out.glob(".*.tmp")) or any(out.glob(".tmp*"))


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
        lambda _: (
            _data_rows(out) == _EVALUATIONS
            and (_writing(out) or (out / "head.safetensors").exists())
        ),
        base / "killed.log",
    )
    assert not (out / "result.json").exists()
    assert _data_rows(out) == _EVALUATIONS
    _run(faces_folder, cache, out)
    _assert_same_as_reference(out, cache, reference)
