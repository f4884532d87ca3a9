"""--device auto|cpu|cuda: validated as a run setting, outside the results-folder hash, passed
to head training and recorded in result.json; GPU paths are checked where a GPU is visible."""

import dataclasses

import numpy as np
import pytest
import torch

from evoprune.devices import describe_device, resolve_device
from evoprune.errors import ConfigError
from evoprune.estimator import EvoPruneClassifier
from evoprune.runs.config import BY_NAME, RunConfig, default_out_dir, estimator_defaults
from evoprune.runs.experiment import saved_settings
from evoprune.runs.store import RunResult, RunWriter

HAS_GPU = torch.cuda.is_available()


def test_device_setting_is_validated_and_not_hashed():
    assert BY_NAME["device"].default == "auto" and not BY_NAME["device"].result
    assert estimator_defaults()["device"] == "auto"
    with pytest.raises(ConfigError, match="--device.*gpu"):
        RunConfig(device="gpu").validate()
    base = default_out_dir(RunConfig())
    assert default_out_dir(RunConfig(device="cpu")) == base
    assert default_out_dir(RunConfig(device="cuda")) == base


def test_resolve_and_describe():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if HAS_GPU else "cpu")
    assert describe_device("cpu") == "cpu"
    with pytest.raises(ConfigError, match="unknown"):
        resolve_device("tpu")


@pytest.mark.skipif(HAS_GPU, reason="checks the message shown without a GPU")
def test_cuda_without_gpu_is_refused_before_any_work():
    X = np.random.default_rng(0).normal(size=(40, 6)).astype(np.float32)
    y = np.arange(40) % 2
    with pytest.raises(ConfigError, match="--device cuda: torch sees no GPU.*--device cpu"):
        EvoPruneClassifier(device="cuda", population=4, evaluations=4).fit(X, y)


def test_run_records_the_device(tiny_run):
    _, result, cfg = tiny_run
    assert cfg.device == "auto"
    assert result["device"] == describe_device("auto")
    assert result["device"] == ("cpu" if not HAS_GPU else result["device"])
    doc = dict(result)
    doc.pop("device")  # a run of an earlier version
    assert RunResult.from_dict(doc).device is None
    assert "device" not in RunResult.from_dict(doc).to_dict()


def test_a_run_resumes_with_another_device(tiny_run):
    out, _, cfg = tiny_run
    cfg = cfg.validate()
    other_device = dataclasses.replace(cfg, device="cpu" if cfg.device != "cpu" else "auto")
    RunWriter(out).check(saved_settings(other_device, out))  # no refusal; check writes nothing
    other_seed = dataclasses.replace(cfg, seed=cfg.seed + 1)
    with pytest.raises(ConfigError, match="another configuration.*seed"):
        RunWriter(out).check(saved_settings(other_seed, out))


@pytest.mark.skipif(not HAS_GPU, reason="needs a GPU")
def test_gpu_estimator_trains_on_the_gpu_and_records_it():
    X = np.random.default_rng(0).normal(size=(80, 12)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    clf = EvoPruneClassifier(device="cuda", hidden_size=16, population=4, evaluations=6).fit(X, y)
    assert next(clf.head_.parameters()).device.type == "cpu"
    assert clf.score(X, y) > 0.8
    assert describe_device("cuda").startswith("cuda:0 (")


@pytest.mark.parametrize(
    "cores, load, threads", [(2, 0.1, 2), (2, 1.2, 1), (2, 2.6, 1), (2, 7.0, 1), (16, 3.4, 13)]
)
def test_threads_are_the_cores_other_work_leaves_free(cores, load, threads):
    from evoprune.devices import choose_threads, free_cores

    assert free_cores(cores, load) == threads
    assert choose_threads({}, cores=cores, load=load) == threads
    assert choose_threads({"OMP_NUM_THREADS": "3"}, cores=cores, load=load) is None  # the user's


def test_openmp_waits_passively_unless_the_user_says_otherwise():
    import os
    import subprocess
    import sys

    code = "import evoprune, os; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert run.stdout.strip() == "PASSIVE"
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert run.stdout.strip() == "ACTIVE"


def test_share_cores_sets_torch_threads(monkeypatch):
    from evoprune import devices

    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    monkeypatch.setattr(devices.os, "getloadavg", lambda: (99.0, 0.0, 0.0), raising=False)
    try:
        assert devices.share_cores() == 1
    finally:
        torch.set_num_threads(before)


def test_in_process_evaluations_use_the_process_threads_unless_threads_are_fixed():
    """The default (threads_per_worker None) keeps the threads the command chose (the free
    cores); a fixed number applies inside each evaluation only."""
    from evoprune.cluster import executor_for

    class Probe:
        def evaluate(self, chromosomes):
            return [torch.get_num_threads()]

    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        assert RunConfig().validate().threads_per_worker is None
        with executor_for(RunConfig().validate()) as ex:
            assert ex.evaluate(Probe(), np.zeros((1, 4))) == [3]
        with executor_for(RunConfig(threads_per_worker=1).validate()) as ex:
            assert ex.evaluate(Probe(), np.zeros((1, 4))) == [1]
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
