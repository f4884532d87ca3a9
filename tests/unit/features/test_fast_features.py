"""Faster features (issue 12): the backbone's fast forms, decoding beside the CNN, devices."""

import shutil

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image
from torch import nn

from evoprune.backbones import get_backbone
from evoprune.backbones.base import RESIZE_FILTERS, Preprocessing
from evoprune.backbones.runtime import (
    TOLERANCE,
    build_runner,
    eager_features,
    onnxruntime_available,
)
from evoprune.data import load_dataset, open_rgb
from evoprune.errors import ConfigError
from evoprune.features import ImageFeatures, extract_features

pytestmark = pytest.mark.usefixtures("one_torch_thread")
GPU = torch.cuda.is_available()


@pytest.fixture(scope="module")
def lite0():
    return get_backbone("efficientnet-lite0")


@pytest.fixture(scope="module")
def elpv_paths():
    return load_dataset("elpv", check_images=False).paths[:10]


@pytest.fixture(scope="module")
def ready(lite0, elpv_paths):
    return np.stack([lite0.preprocess(open_rgb(p)) for p in elpv_paths[:6]])


@pytest.fixture(scope="module")
def eager(lite0, elpv_paths):
    """Plain eager float32 features, images decoded one after the other."""
    return extract_features(
        lite0, elpv_paths, use_cache=False, progress=False, form="eager", decode_threads=0
    ).X


FORMS = ["eager", "channels_last"] + (["onnxruntime"] if onnxruntime_available() else [])


@pytest.mark.parametrize("form", FORMS)
def test_each_form_matches_eager_float32(lite0, ready, form):
    module = lite0.feature_extractor()
    runner = build_runner(
        module, image_size=224, forward_batch=4, device=torch.device("cpu"), form=form
    )
    assert runner.form == form  # built as asked, not a fallback
    diff = np.max(np.abs(runner(ready) - eager_features(module, ready)))
    assert diff <= TOLERANCE


def test_fast_extraction_equals_eager_but_not_its_cache(lite0, elpv_paths, eager, tmp_path):
    """Forms agree within 1e-4, not bit for bit (enough for a search to take another path): a
    cache filled by one form is never read for another, and each result names its form."""
    fast = extract_features(lite0, elpv_paths, cache_dir=tmp_path, progress=False)
    assert np.max(np.abs(fast.X - eager)) <= TOLERANCE
    assert fast.form == lite0.runner("cpu").identity == lite0.form_identity("cpu")
    again = extract_features(lite0, elpv_paths, cache_dir=tmp_path, progress=False, form="eager")
    assert again.form == "eager/cpu" and not again.cached and again.key != fast.key
    np.testing.assert_array_equal(again.X, eager)
    hit = extract_features(lite0, elpv_paths, cache_dir=tmp_path, progress=False)
    assert hit.cached and hit.key == fast.key and hit.form == fast.form
    np.testing.assert_array_equal(hit.X, fast.X)


def test_the_plain_install_runs_the_onnxruntime_form(lite0):
    """onnx and onnxruntime are core dependencies (pyproject.toml), so the default backbone runs
    as onnxruntime on a CPU whatever extras are installed; without onnx the form is planned as
    channels-last (and keyed so), not tried and failed."""
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    pyproject = Path(__file__).resolve().parents[3] / "pyproject.toml"
    core = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    names = {d.split(">")[0].split("=")[0].split("[")[0].strip() for d in core}
    assert {"onnx", "onnxruntime"} <= names
    assert onnxruntime_available()
    assert lite0.form_identity("cpu") == "onnxruntime/cpu"


def test_without_onnx_the_planned_form_is_channels_last(monkeypatch):
    import importlib.util

    from evoprune.backbones import runtime

    real = importlib.util.find_spec
    monkeypatch.setattr(
        runtime.importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real(name)
    )
    assert not runtime.onnxruntime_available()
    assert runtime.planned_identity("auto", "cpu") == "channels_last/cpu"


@pytest.mark.parametrize("threads", [1, 3])
def test_decoding_threads_give_identical_rows_in_order(lite0, elpv_paths, threads):
    def features(**options):
        return extract_features(lite0, elpv_paths, use_cache=False, progress=False, **options).X

    serial = features(decode_threads=0)
    np.testing.assert_array_equal(features(decode_threads=threads), serial)
    np.testing.assert_allclose(features(num_workers=1, batch_size=4), serial, atol=1e-6)


def test_overlap_keeps_the_order_when_bad_images_are_skipped(lite0, elpv_paths, tmp_path):
    for i, path in enumerate(elpv_paths[:8]):
        folder = tmp_path / ("a" if i % 2 else "b")
        folder.mkdir(exist_ok=True)
        shutil.copy(path, folder / f"{i}.png")
    (tmp_path / "a" / "00-text.png").write_text("not an image")
    whole = (tmp_path / "b" / "0.png").read_bytes()
    (tmp_path / "b" / "5-cut.png").write_bytes(whole[: len(whole) // 2])
    dataset = load_dataset(str(tmp_path), skip_bad=True)
    assert len(dataset.skipped) == 2 and len(dataset.paths) == 8
    options = {"use_cache": False, "progress": False}
    serial = extract_features(lite0, dataset.paths, decode_threads=0, **options).X
    overlapped = extract_features(lite0, dataset.paths, decode_threads=2, **options).X
    np.testing.assert_array_equal(overlapped, serial)
    for row, path in zip(overlapped, dataset.paths):  # row i is image i, not a neighbour
        alone = extract_features(lite0, [path], decode_threads=0, **options).X[0]
        np.testing.assert_allclose(row, alone, atol=TOLERANCE)


def test_a_form_that_gets_the_features_wrong_is_not_used(caplog):
    class NumpyPool(nn.Module):
        """numpy inside forward: ONNX export records it as a constant, so the exported
        model answers every input with the example's features."""

        def forward(self, x):
            return torch.as_tensor(x.detach().numpy().mean(axis=(2, 3)))

    module = NumpyPool().eval()
    runner = build_runner(
        module, image_size=8, forward_batch=2, device=torch.device("cpu"), form="onnxruntime"
    )
    assert runner.form == "eager"
    batch = np.random.default_rng(1).standard_normal((3, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(runner(batch), batch.mean(axis=(2, 3)), rtol=1e-6)


def test_device_and_decoding_options_are_validated(lite0, elpv_paths, tmp_path):
    with pytest.raises(ConfigError, match="--device 'tpu' is unknown"):
        extract_features(lite0, elpv_paths[:1], cache_dir=tmp_path, device="tpu")
    with pytest.raises(ConfigError, match="decode_threads"):
        extract_features(lite0, elpv_paths[:1], cache_dir=tmp_path, decode_threads=-1)
    with pytest.raises(ConfigError, match="unknown backbone form 'fastest'"):
        extract_features(lite0, elpv_paths[:1], use_cache=False, form="fastest")
    with pytest.raises(ConfigError, match="--device 'tpu'"):
        ImageFeatures(device="tpu").transform([np.zeros((8, 8, 3), dtype=np.uint8)])


@pytest.mark.skipif(GPU, reason="a GPU is visible")
def test_cuda_without_a_gpu_is_refused(lite0, elpv_paths, tmp_path):
    with pytest.raises(ConfigError, match="no GPU"):
        extract_features(lite0, elpv_paths[:1], cache_dir=tmp_path, device="cuda")


@pytest.mark.skipif(not GPU, reason="no GPU visible")
def test_gpu_features_equal_the_cpu_eager_ones(lite0, elpv_paths, eager, tmp_path):
    result = extract_features(lite0, elpv_paths, cache_dir=tmp_path, progress=False, device="cuda")
    assert lite0.runner("cuda").device.type == "cuda"
    assert np.max(np.abs(result.X - eager)) <= TOLERANCE
    again = extract_features(lite0, elpv_paths, cache_dir=tmp_path, progress=False, device="cpu")
    assert again.cached and again.key == result.key


def _reference_preprocessing(prep: Preprocessing, image: Image.Image) -> np.ndarray:
    """The arithmetic Preprocessing spells out, step by step on an RGB image."""
    rgb = image.convert("RGB")
    size = (prep.image_size, prep.image_size)
    pixels = np.asarray(rgb.resize(size, RESIZE_FILTERS[prep.resize]), dtype=np.float32)
    if prep.channels == "BGR":
        pixels = pixels[:, :, ::-1]
    scale = np.float32(255.0) * np.asarray(prep.std, dtype=np.float32)
    offset = np.asarray(prep.mean, dtype=np.float32) / np.asarray(prep.std, dtype=np.float32)
    return np.ascontiguousarray((pixels / scale - offset).transpose(2, 0, 1))


@pytest.mark.parametrize(
    "prep",
    [
        Preprocessing(image_size=224, mean=(0.5,) * 3, std=(0.5,) * 3),
        Preprocessing(40, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "bicubic", "BGR"),
        Preprocessing(17, (0.1, 0.2, 0.3), (0.3, 0.2, 0.1), "nearest"),
    ],
)
def test_fast_preprocessing_is_bit_for_bit_the_arithmetic(prep, elpv_paths):
    images = [open_rgb(elpv_paths[0]), Image.open(elpv_paths[1])]  # grey as RGB, and as L
    images += [Image.fromarray(skimage.data.chelsea()), Image.fromarray(skimage.data.camera())]
    images.append(Image.new("P", (30, 20), 3))
    for image in images:
        got = prep(image)
        assert got.dtype == np.float32 and got.flags.c_contiguous
        np.testing.assert_array_equal(got, _reference_preprocessing(prep, image))
