"""Faults on Ray (slow: real subprocesses and several Ray nodes): the driver killed with SIGKILL
in the middle of a search or a comparison resumes with the same command and ends exactly as an
uninterrupted run on one worker; a node that leaves the cluster has its tasks run elsewhere."""

import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from evoprune.testing import at_rows, cli, history_rows, kill_when, result_doc, run_args

ray = pytest.importorskip("ray")

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("no_ray_address")]

_TIMEOUT = 400


@pytest.fixture
def no_ray_address(monkeypatch):
    """Each command starts its own local Ray, whatever cluster this shell points at."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


def _run(*args) -> None:
    proc = cli(*args, timeout=_TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]


def _kill(args, out: Path, moment, tmp_path: Path) -> None:
    """Run ``evoprune args`` and SIGKILL it at ``moment`` (it must not end by itself first)."""
    status = kill_when(args, out, moment, signal.SIGKILL, tmp_path / "killed.log", timeout=_TIMEOUT)
    assert status is not None, "the command ended before the moment to kill it"


def _search(data, cache, out, workers):
    return run_args(data, out, cache, "--workers", str(workers), evaluations=16)


def test_a_driver_killed_mid_search_resumes_to_the_same_result(faces_folder, tmp_path):
    cache = tmp_path / "cache"
    _run(*_search(faces_folder, cache, tmp_path / "ref", 1))
    out = tmp_path / "killed"
    args = _search(faces_folder, cache, out, 2)
    _kill(args, out, at_rows(9), tmp_path)
    assert 9 <= history_rows(out) < 16 and not (out / "result.json").exists()
    _run(*args)  # the same command resumes
    assert result_doc(out) == result_doc(tmp_path / "ref")
    ref_history = (tmp_path / "ref" / "history.csv").read_bytes()
    assert (out / "history.csv").read_bytes() == ref_history


def _compare(data, cache, out, workers):
    return [
        "compare", "--data", data, "--encodings", "fs,fc1", "--runs", 2, "--population", 4,
        "--evaluations", 6, "--hidden-size", 16, "--cache-dir", cache, "--out", out,
        "--workers", workers, "--no-progress",
    ]  # fmt: skip


def test_a_driver_killed_mid_comparison_resumes_to_the_same_result(faces_folder, tmp_path):
    cache = tmp_path / "cache"
    _run(*_compare(faces_folder, cache, tmp_path / "ref", 1))
    out = tmp_path / "killed"
    args = _compare(faces_folder, cache, out, 2)
    _kill(args, out, lambda o, _text: len(list(o.glob("runs/*/result.json"))) >= 1, tmp_path)
    assert not (out / "summary.csv").exists()
    _run(*args)
    for ref in sorted((tmp_path / "ref" / "runs").glob("*/result.json")):
        assert result_doc(out / "runs" / ref.parent.name) == result_doc(ref.parent)
    assert _summary(out) == _summary(tmp_path / "ref")


def _summary(out: Path) -> list[str]:
    """summary.csv without the seconds column."""
    lines = (out / "summary.csv").read_text().splitlines()
    drop = lines[0].split(",").index("seconds")
    return [",".join(c for i, c in enumerate(line.split(",")) if i != drop) for line in lines]


class Slow:
    """A problem whose fold batches take a while (so that a node can leave during them)."""

    def __init__(self, problem):
        self.problem, self.n_folds, self.n_genes = problem, problem.n_folds, problem.n_genes

    def evaluate_fold_batch(self, chromosomes, fold):
        time.sleep(1.0)
        return self.problem.evaluate_fold_batch(chromosomes, fold)

    def combine(self, chromosome, scores):
        return self.problem.combine(chromosome, scores)


def test_the_tasks_of_a_node_that_leaves_run_elsewhere():
    from ray.cluster_utils import Cluster

    from evoprune.cluster import RayExecutor
    from evoprune.encodings import make_encoding
    from evoprune.problem import HeadProblem, HeadTraining, make_folds
    from evoprune.settings import FitnessSettings

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 10)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    folds = make_folds(X, y, FitnessSettings(fitness_split="cv", seed=0, cv_folds=2))
    problem = HeadProblem(make_encoding("fs", 10, 8), 2, folds, HeadTraining.of("fast", seed=0))
    chromosomes = rng.integers(0, 2, size=(6, 10), dtype=np.uint8)
    want = [e.F.tolist() for e in problem.evaluate(chromosomes)]
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    leaving = cluster.add_node(num_cpus=1)
    cluster.add_node(num_cpus=1)
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        cluster.wait_for_nodes()
        got: list = []
        worker = threading.Thread(
            target=lambda: got.extend(RayExecutor(ray, 2).evaluate(Slow(problem), chromosomes))
        )
        worker.start()
        time.sleep(2.5)  # tasks are running on both nodes
        cluster.remove_node(leaving)
        worker.join(timeout=300)
        assert [e.F.tolist() for e in got] == want
    finally:
        ray.shutdown()
        cluster.shutdown()
