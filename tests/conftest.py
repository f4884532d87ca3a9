"""Shared fixtures: a feature cache per test session, a tiny real run on ELPV images, and a
loader of the repository's scripts (benchmarks, examples) as modules."""

import importlib.util
import json
import logging
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def load_script():
    """Load a script of the repository that is not a package module (``benchmarks/x.py``) as a
    module, by its path from the repository root."""

    def load(relative: str):
        path = ROOT / relative
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(scope="session")
def feature_cache(tmp_path_factory):
    """A feature cache folder shared by the session's tests (not the user's cache)."""
    return tmp_path_factory.mktemp("feature-cache")


@pytest.fixture(scope="session")
def faces_folder(tmp_path_factory):
    """scikit-image's 200 real face / non-face crops as a folder of two class folders."""
    import numpy as np
    from PIL import Image
    from skimage.data import lfw_subset

    root = tmp_path_factory.mktemp("faces")
    images = (lfw_subset() * 255).round().astype(np.uint8)
    for i, img in enumerate(images):  # the first 100 are faces, the rest are not
        folder = root / ("face" if i < 100 else "not_face")
        folder.mkdir(exist_ok=True)
        Image.fromarray(img).save(folder / f"{i:03d}.png")
    return root


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, feature_cache, faces_folder):
    """A complete `evoprune run` on 200 real images (faces vs not), small budget.

    Returns (run folder, result dict). Shared: tests must not modify the folder.
    """
    from evoprune.runs.experiment import RunConfig, run_experiment

    logging.getLogger("evoprune").setLevel(logging.WARNING)
    out = tmp_path_factory.mktemp("tiny-run")
    # the paper's start and operators: the analyses' tests were written for this run's heads
    # (a ranked start gives other ones, e.g. a best head too small for some measures)
    cfg = RunConfig(
        data=str(faces_folder),
        encoding="fs",
        population=6,
        evaluations=12,
        seed=1,
        init="random",
        variation="paper",
    )
    result = run_experiment(cfg, out, progress=False, cache_dir=feature_cache)
    assert json.loads((out / "result.json").read_text()) == result
    return out, result, cfg


def tiny_run_args(data, cache_dir, out, *extra) -> list[str]:
    """The ``evoprune run`` command of the :func:`tiny_run` fixture (its budget, seed, start
    and operators, so that it resumes that run) on ``data``, into ``out``; ``extra`` options
    are added last (a repeated option takes the later value). Built by the kill harness's
    :func:`evoprune.testing.run_args`."""
    from evoprune.testing import run_args

    start = ("--init", "random", "--variation", "paper")
    return run_args(data, out, cache_dir, *start, *extra, evaluations=12, population=6)


@pytest.fixture(scope="session")
def run_args():
    """:func:`tiny_run_args`, the command line of the tiny run, for the tests that run it
    through the CLI (the guard and store tests)."""
    return tiny_run_args


@pytest.fixture()
def run_copy(tiny_run, tmp_path):
    """A private copy of the finished tiny run (the shared one must not change)."""
    copy = tmp_path / "run"
    shutil.copytree(tiny_run[0], copy)
    return copy


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny heads train faster on one thread than on cores shared with other work; a module
    uses it with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
