"""Small data (issue 20.5): a given validation folder is the fitness split, and a fitness split
of fewer than about 100 images gets a warning that says what one image is worth."""

import shutil

import numpy as np
import pytest

from evoprune.data import load_dataset
from evoprune.encodings import make_encoding
from evoprune.model.head import feature_stats
from evoprune.problem import Fold, HeadProblem, HeadTraining
from evoprune.runs.config import RunConfig
from evoprune.runs.experiment import prepare_data, run_experiment

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def three_folders(tmp_path_factory, faces_folder):
    """train/ (60 images), validation/ (37) and test/ (40) of the face crops: sizes that tell
    the splits apart (a stratified 20 % of the 97 training images would be 20)."""
    root = tmp_path_factory.mktemp("tvt")
    sizes = {"train": 30, "validation": 19, "test": 20}  # per class; validation: 19 + 18
    for cls in ("face", "not_face"):
        images = sorted((faces_folder / cls).glob("*.png"))
        start = 0
        for split, n in sizes.items():
            n = 18 if (split, cls) == ("validation", "not_face") else n
            (root / split / cls).mkdir(parents=True)
            for image in images[start : start + n]:
                shutil.copy(image, root / split / cls / image.name)
            start += n
    return root


def test_the_loader_keeps_the_validation_folder(three_folders):
    data = load_dataset(str(three_folders))
    assert len(data.paths) == 137 and len(data.test_idx) == 40 and len(data.val_idx) == 37
    assert all("/validation/" in data.paths[i] for i in data.val_idx)
    assert all("/test/" in data.paths[i] for i in data.test_idx)


def test_a_given_validation_folder_is_the_fitness_split(
    three_folders, feature_cache, tmp_path, caplog
):
    cfg = RunConfig(
        data=str(three_folders),
        encoding="fs",
        population=4,
        evaluations=6,
        seed=3,
        fidelity="full",
        final_check="none",
    )
    caplog.set_level("INFO", logger="evoprune")
    result = run_experiment(cfg, tmp_path / "run", progress=False, cache_dir=feature_cache)
    assert (result["n_train"], result["n_test"]) == (97, 40)  # validation images train too
    data = prepare_data(cfg, progress=False, cache_dir=feature_cache)
    X, y = data.X_train, data.y_train
    val = np.array(["/validation/" in data.paths[i] for i in data.train_idx])
    assert val.sum() == 37 and np.array_equal(np.flatnonzero(val), data.validation)
    # the recorded fitness of the best mask is its accuracy on the 37 validation images of a
    # head fitted on the 60 train/ images, computed again here
    fold = Fold(X[~val], y[~val], X[val], y[val], feature_stats(X[~val]))
    problem = HeadProblem(
        make_encoding("fs", X.shape[1], 512, 2), 2, [fold], HeadTraining.of("fast", seed=3)
    )
    mask = np.asarray(result["best_mask"], dtype=np.uint8)
    assert problem.accuracy(mask[None])[0] == pytest.approx(result["fitness"])
    assert result["fitness"] * 37 == pytest.approx(round(result["fitness"] * 37))
    # 37 images: the warning says what one image is worth and suggests cross-validation
    assert "only 37 images: one image = 2.7 accuracy points" in caplog.text
    assert "--fitness-split cv" in caplog.text


def test_no_warning_with_cross_validation_or_enough_images(caplog):
    from evoprune.runs.context import warn_small_fitness_split

    rng = np.random.default_rng(0)

    def fold(n):
        X = rng.standard_normal((n, 3)).astype(np.float32)
        return Fold(X, np.zeros(n, int), X, np.zeros(n, int), feature_stats(X))

    warn_small_fitness_split([fold(100)], "validation")
    warn_small_fitness_split([fold(20)] * 5, "cv")
    assert "fitness split" not in caplog.text
    warn_small_fitness_split([fold(29)], "validation")
    assert "only 29 images: one image = 3.4 accuracy points" in caplog.text
