"""Evaluations, comparisons and features on Ray workers (a local Ray with 2 CPUs): the same
results as in one process, whatever the number of workers; a killed worker's task is run again;
a bad address or a Ray that cannot start gets one message."""

import os
import sys
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from evoprune.cluster import RayExecutor, ThreadsExecutor, parallel_map  # noqa: E402
from evoprune.encodings import make_encoding  # noqa: E402
from evoprune.errors import ConfigError  # noqa: E402
from evoprune.problem import HeadProblem, HeadTraining, make_folds  # noqa: E402
from evoprune.runs.config import RunConfig  # noqa: E402
from evoprune.runs.context import RunContext  # noqa: E402
from evoprune.runs.evolve import evolve  # noqa: E402
from evoprune.search import Evaluator, SteadyStateGA, run_async_search  # noqa: E402
from evoprune.settings import FitnessSettings  # noqa: E402


def test_a_bad_address_gets_one_message():
    from evoprune.cluster import ray_session

    if ray.is_initialized():
        pytest.skip("Ray is running in this process")
    with pytest.raises(ConfigError, match="--ray-address 127.0.0.1:9: no Ray cluster answers"):
        with ray_session(1, "127.0.0.1:9"):
            pass
    with pytest.raises(ConfigError, match="not an address of the form host:port"):
        with ray_session(1, "nonsense"):
            pass


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module (2 CPUs; started here, so the code under test reuses it)."""
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers lack tests/
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _data(n=90, d=12, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = ((X[:, 0] + 0.5 * X[:, 1]) > 0).astype(int) + (X[:, 2] > 1).astype(int)
    return X, y


def _problem(cv=True):
    X, y = _data()
    folds = make_folds(
        X, y, FitnessSettings(fitness_split="cv" if cv else "validation", seed=1, cv_folds=2)
    )
    return HeadProblem(
        make_encoding("fs", X.shape[1], 8), 3, folds, HeadTraining.of("fast", seed=1)
    )


def _summary(result):
    return (
        result.best.tobytes(),
        result.best_fitness,
        [(r.chromosome.tobytes(), r.fitness, r.best_fitness) for r in result.history],
    )


def _cfg(**kw):
    base = dict(population=6, evaluations=14, hidden_size=8, fitness_split="cv", cv_folds=2)
    return RunConfig(**{**base, **kw}).validate()


def test_the_same_search_with_1_2_and_4_workers(local_ray):
    X, y = _data()
    results = []
    executors = (ThreadsExecutor(1), ThreadsExecutor(2), RayExecutor(ray, 2), RayExecutor(ray, 4))
    for executor in executors:
        results.append(
            _summary(
                evolve(
                    RunContext.of_arrays(_cfg(), X, y, ["a", "b", "c"]), executor=executor
                ).result
            )
        )
    assert all(r == results[0] for r in results)  # in process with 1 or 2 threads, on Ray
    assert len(results[0][2]) == 14


class KillOnce:
    """A problem whose first fold batch kills its worker process (once: a marker file)."""

    def __init__(self, problem, marker):
        self.problem, self.marker = problem, str(marker)
        self.n_folds, self.n_genes = problem.n_folds, problem.n_genes

    def evaluate_fold_batch(self, chromosomes, fold):
        if not os.path.exists(self.marker):
            Path(self.marker).write_text(str(os.getpid()))
            os._exit(1)  # the worker dies in the middle of an evaluation
        return self.problem.evaluate_fold_batch(chromosomes, fold)

    def combine(self, chromosome, scores):
        return self.problem.combine(chromosome, scores)


def test_a_killed_worker_is_replaced_and_the_result_is_identical(local_ray, tmp_path):
    problem = _problem()
    chromosomes = np.random.default_rng(2).integers(0, 2, size=(6, problem.n_genes), dtype=np.uint8)
    want = [e.F.tolist() for e in problem.evaluate(chromosomes)]
    marker = tmp_path / "killed"
    got = RayExecutor(ray, 2).evaluate(KillOnce(problem, marker), chromosomes)
    assert marker.exists() and int(marker.read_text()) != os.getpid()  # a worker did die
    assert [e.F.tolist() for e in got] == want


def test_async_search_on_ray_spends_the_budget(local_ray):
    problem = _problem()
    executor = RayExecutor(ray, 2)
    evaluator = Evaluator(problem, 12, executor=executor)
    result = run_async_search(SteadyStateGA(population=6, evaluations=12, seed=3), evaluator, 2)
    assert result.evaluations == 12 and executor.in_flight == 0
    again = problem.evaluate(np.stack([r.chromosome for r in result.history[6:]]))
    assert [e.accuracy for e in again] == [r.fitness for r in result.history[6:]]
    assert set(executor.busy) and all(s > 0 for s in executor.busy.values())


def _square(shared, item):
    return shared * item * item


def test_parallel_map_returns_every_item_once(local_ray):
    got = dict(parallel_map(_square, list(range(7)), 10, workers=2))
    assert got == {i: 10 * i * i for i in range(7)}


def test_the_problem_goes_to_the_object_store_once(local_ray, monkeypatch):
    problem = _problem()
    puts = []
    real_put = ray.put
    monkeypatch.setattr(ray, "put", lambda obj: puts.append(obj) or real_put(obj))
    executor = RayExecutor(ray, 2)
    chromosomes = np.ones((4, problem.n_genes), np.uint8)
    for _ in range(3):
        executor.evaluate(problem, chromosomes)
    assert len(puts) == 1 and executor.tasks >= 6


def test_sharded_features_equal_the_features_computed_here(local_ray, faces_folder):
    from evoprune.backbones import get_backbone
    from evoprune.cluster import feature_compute
    from evoprune.features import compute_rows

    paths = sorted(str(p) for p in faces_folder.rglob("*.png"))[::20]  # 10 real images
    backbone = get_backbone("efficientnet-lite0")
    sharded = feature_compute(RunConfig(workers=2))(backbone, paths)
    np.testing.assert_allclose(sharded, compute_rows(backbone, paths), rtol=0, atol=1e-4)
    assert feature_compute(RunConfig()) is None  # one worker: computed here, as before


def test_a_comparison_on_2_workers_equals_one_in_this_process(
    local_ray, faces_folder, feature_cache, tmp_path
):
    from evoprune.compare.runner import CompareConfig, run_comparison

    rows = {}
    for workers in (1, 2):
        base = RunConfig(
            data=str(faces_folder), population=4, evaluations=6, hidden_size=8, workers=workers
        )
        cc = CompareConfig(base=base, encodings=("fs", "fc1"), runs=2, poly_epochs=2)
        got = run_comparison(cc, tmp_path / f"w{workers}", progress=False, cache_dir=feature_cache)
        rows[workers] = [{k: v for k, v in r.items() if k != "seconds"} for r in got]
    assert rows[1] == rows[2] and len(rows[1]) > 4
