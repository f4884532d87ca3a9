"""The asynchronous steady-state GA (``--async``) and the settings of where work runs; none of
these tests needs Ray."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from evoprune.errors import ConfigError
from evoprune.runs.config import RunConfig
from evoprune.search import (
    Evaluation,
    Evaluator,
    FunctionProblem,
    LocalExecutor,
    SteadyStateGA,
    run_async_search,
)

WEIGHTS = np.random.default_rng(3).normal(size=24)


def score(chromosomes):
    """A fitness with many distinct values (no ties to hide an ordering mistake)."""
    return np.asarray(chromosomes, dtype=float) @ WEIGHTS / 24 + 0.01 * chromosomes.sum(1) ** 0.5


class LastInFirstOut(LocalExecutor):
    """Results come back newest first: arrival order differs from the order of submission."""

    slots = 3

    def wait(self):
        problem, key, chromosome = self._queue.pop()
        return key, self.evaluate(problem, np.asarray(chromosome)[None])[0]


class Stop(Exception):
    pass


def _search(executor, known=None, stop_after=None, evaluations=40):
    def stop(rec):
        if stop_after is not None and rec.index >= stop_after:
            raise Stop

    evaluator = Evaluator(
        FunctionProblem(score, 24), evaluations, executor=executor, known=known, callbacks=[stop]
    )
    ga = SteadyStateGA(population=8, evaluations=evaluations, seed=5)
    return evaluator, run_async_search(ga, evaluator, executor.slots)


def _path(history):
    return [(r.chromosome.tobytes(), r.fitness, r.best_fitness) for r in history]


def test_async_search_spends_the_budget_and_improves():
    _, result = _search(LastInFirstOut())
    assert result.evaluations == 40
    assert len({r.chromosome.tobytes() for r in result.history}) == 40
    assert result.best_fitness == max(r.fitness for r in result.history)
    assert result.best_fitness > max(r.fitness for r in result.history[:8])  # children helped


def test_arrival_order_decides_the_path():
    """Results inserted as they arrive: another arrival order is another search."""
    _, lifo = _search(LastInFirstOut())
    fifo_executor = LocalExecutor()
    fifo_executor.slots = 3
    _, fifo = _search(fifo_executor)
    assert _path(lifo.history)[:8] == _path(fifo.history)[:8]  # the initial population
    assert _path(lifo.history) != _path(fifo.history)


@pytest.mark.parametrize("stop_after", [8, 9, 23])
def test_a_resumed_async_search_replays_the_arrival_order(stop_after):
    """Interrupted, then resumed from its history (known evaluations in arrival order), the
    search ends exactly where an uninterrupted one does, and nothing recorded is evaluated
    again."""
    _, full = _search(LastInFirstOut())
    with pytest.raises(Stop):
        _search(LastInFirstOut(), stop_after=stop_after)
    known = {  # what the interrupted run left in history.csv, in the order it arrived
        r.chromosome.tobytes(): Evaluation(F=np.array([-r.fitness]), accuracy=r.fitness)
        for r in full.history[:stop_after]
    }
    calls = []

    class Counting(LastInFirstOut):
        def evaluate(self, problem, chromosomes):
            calls.append(len(chromosomes))
            return super().evaluate(problem, chromosomes)

    _, resumed = _search(Counting(), known=known)
    assert _path(resumed.history) == _path(full.history)
    assert sum(calls) == 40 - stop_after
    # resumed on workers that answer in another order: the recorded part is still replayed
    # in the order it arrived, and only the rest follows the new order
    fifo = LocalExecutor()
    fifo.slots = 3
    _, other = _search(fifo, known=known)
    assert _path(other.history)[:stop_after] == _path(full.history)[:stop_after]


def test_async_search_stops_when_the_population_has_converged():
    def flat(chromosomes):
        return np.zeros(len(chromosomes))

    evaluator = Evaluator(FunctionProblem(flat, 4), 500, executor=LocalExecutor())
    ga = SteadyStateGA(population=4, evaluations=500, seed=0, max_stale_iterations=50)
    result = run_async_search(ga, evaluator, 1, max_stale_iterations=50)
    assert result.stopped_early and result.evaluations <= 16


def test_async_is_refused_for_nsga2_with_one_message():
    cfg = RunConfig(asynchronous=True, objectives=("accuracy", "size"))
    with pytest.raises(ConfigError, match="--async.*NSGA-II.*--algorithm ssga"):
        cfg.validate()


def test_where_work_runs_does_not_change_the_results_folder():
    base = RunConfig().fingerprint()
    assert RunConfig(workers=4, threads_per_worker=2, ray_address="h:1").fingerprint() == base
    assert RunConfig(asynchronous=True).fingerprint() != base  # async changes the result
    cluster = ("workers", "ray_address", "threads_per_worker", "asynchronous")
    saved = {k: v for k, v in RunConfig().validate().to_dict().items() if k not in cluster}
    old = RunConfig.from_dict(saved)  # a folder written before these settings existed
    assert (old.workers, old.asynchronous) == (1, False)
    with pytest.raises(ConfigError, match="--workers 0"):
        RunConfig(workers=0).validate()


def test_the_async_flag_and_the_cluster_options_parse():
    from evoprune.cli import build_parser

    args = build_parser().parse_args(
        ["run", "--async", "--workers", "3", "--threads-per-worker", "2"]
    )
    assert (args.asynchronous, args.workers, args.threads_per_worker) == (True, 3, 2)


def test_without_ray_installed_more_workers_get_one_message(monkeypatch):
    from evoprune.cluster import ray_session

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ConfigError, match="not installed: pip install 'evoprune\\[ray\\]'"):
        with ray_session(2):
            pass


def test_one_worker_imports_no_ray():
    """The default (one worker, no address) runs a search without importing Ray."""
    code = textwrap.dedent(
        """
        import os, sys
        os.environ.pop("RAY_ADDRESS", None)
        import numpy as np
        import evoprune.cli, evoprune.runs.experiment, evoprune.compare.runner
        from evoprune.cluster import executor_for
        from evoprune.runs.config import RunConfig
        from evoprune.runs.context import RunContext
        from evoprune.runs.evolve import evolve
        rng = np.random.default_rng(0)
        X = rng.normal(size=(60, 8)).astype(np.float32)
        y = (X[:, 0] > 0).astype(int)
        cfg = RunConfig(population=4, evaluations=6, hidden_size=8).validate()
        with executor_for(cfg) as ex:
            evolved = evolve(RunContext.of_arrays(cfg, X, y, ["a", "b"]), executor=ex)
        assert evolved.result.evaluations == 6
        print("ray" in sys.modules)
        """
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "RAY_ADDRESS"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"
