"""Any backbone from the command line (issue 20.2): a TorchScript or ONNX file, module:factory,
timm:NAME and torchvision:NAME; recorded in the run so that predict, export, load and analyze
work on it afterwards. The models are made here; nothing is downloaded."""

import importlib
import json
import shutil
import sys
import textwrap
import types

import numpy as np
import pytest
import torch
from torch import nn

import evoprune
from evoprune.backbones import get_backbone, registry
from evoprune.backbones.specs import OnnxFeatures, check_spec, is_spec
from evoprune.cli import main
from evoprune.errors import BackboneError, ConfigError
from evoprune.features import extract_features

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NET_SOURCE = '''
import torch
from torch import nn


class TinyNet(nn.Module):
    """(N, 3, H, W) -> (N, 6) features: one seeded convolution, ReLU, global average."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 6, 3, padding=1)

    def forward(self, x):
        return torch.relu(self.conv(x)).mean(dim=(2, 3))


class TinyMaps(TinyNet):
    """The same network without the average: (N, 6, H, W) maps."""

    def forward(self, x):
        return torch.relu(self.conv(x))


def tiny():
    return TinyNet()
'''


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A module file with the tiny networks, and the network as TorchScript and ONNX files."""
    root = tmp_path_factory.mktemp("models")
    (root / "tinynets.py").write_text(textwrap.dedent(NET_SOURCE))
    sys.path.insert(0, str(root))
    try:
        nets = importlib.import_module("tinynets")
    finally:
        sys.path.remove(str(root))
    net = nets.TinyNet().eval()
    torch.jit.save(torch.jit.script(net), str(root / "tiny.pt"))
    torch.jit.save(torch.jit.script(nets.TinyMaps().eval()), str(root / "maps.pt"))
    torch.onnx.export(
        net,
        (torch.zeros(1, 3, 32, 32),),
        str(root / "tiny.onnx"),
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
        dynamo=False,
    )
    return root, net


@pytest.fixture()
def fresh_specs():
    """Specs built by a test are forgotten after it (they name temporary files)."""
    before = set(registry._built)
    yield
    for key in set(registry._built) - before:
        registry._built.pop(key, None)


def _batch(n=3, size=32):
    return np.random.default_rng(0).standard_normal((n, 3, size, size)).astype(np.float32)


@pytest.mark.parametrize("name", ["tiny.pt", "tiny.onnx"])
def test_a_model_file_is_a_backbone(models, name, fresh_specs):
    root, net = models
    spec = f"{root / name}?size=32&mean=0.5,0.5,0.5&std=0.25,0.25,0.25"
    backbone = get_backbone(spec)
    assert backbone.feature_dim == 6 and backbone.image_size == 32
    assert backbone.mean == (0.5, 0.5, 0.5) and backbone.std == (0.25, 0.25, 0.25)
    batch = _batch()
    with torch.inference_mode():
        expected = net(torch.from_numpy(batch)).numpy()
    np.testing.assert_allclose(backbone.features(batch), expected, atol=1e-5)
    runner = backbone.runner("cpu")
    assert runner.form == "onnxruntime"  # the ONNX file runs as it is, the script exported
    np.testing.assert_allclose(runner(batch), expected, atol=1e-5)
    if name.endswith(".onnx"):
        assert isinstance(backbone.feature_extractor(), OnnxFeatures)


def test_feature_maps_are_averaged_and_the_file_is_the_weights_id(models, fresh_specs):
    root, net = models
    backbone = get_backbone(f"{root / 'maps.pt'}?size=32")
    batch = _batch()
    with torch.inference_mode():
        expected = net(torch.from_numpy(batch)).numpy()
    np.testing.assert_allclose(backbone.features(batch), expected, atol=1e-5)
    assert backbone.feature_maps() is not None  # heatmaps can use the maps
    assert backbone.weights_id != get_backbone(f"{root / 'tiny.pt'}?size=32").weights_id


def test_module_factory_is_a_backbone(models, monkeypatch, fresh_specs):
    root, net = models
    monkeypatch.chdir(root)  # importable from the current folder, as `python -m` would have it
    monkeypatch.delitem(sys.modules, "tinynets", raising=False)
    batch = _batch()
    with torch.inference_mode():
        expected = net(torch.from_numpy(batch)).numpy()
    for spec in ("tinynets:tiny?size=32", f"{root / 'tinynets.py'}:tiny?size=32"):
        backbone = get_backbone(spec)
        assert backbone.feature_dim == 6 and backbone.name == spec
        np.testing.assert_allclose(backbone.features(batch), expected, atol=1e-5)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("missing-model.onnx", "does not exist"),
        ("nosuchmodule_xyz:build", "cannot be imported"),
        ("timm:", "names no model"),
        ("tiny.pt?size=big", "size='big'"),
        ("tiny.pt?colour=red", "unknown option"),
        ("resnet-51", "is not a known backbone"),
    ],
)
def test_a_bad_spec_is_one_message_before_any_work(models, spec, message, tmp_path, caplog):
    root, _ = models
    if spec.startswith("tiny"):
        spec = str(root / spec)
    out = tmp_path / "run"
    code = main(["run", "--data", "elpv", "--backbone", spec, "--out", str(out), "--no-progress"])
    assert code == 2
    assert message in caplog.text and "--backbone" in caplog.text
    assert not out.exists()


def test_a_run_on_a_model_file_predicts_exports_and_loads_afterwards(
    models, faces_folder, feature_cache, tmp_path, fresh_specs, capsys
):
    """The spec is recorded (its file relative to the run folder), so every later command
    builds the same backbone: the run folder and its model move together."""
    root, net = models
    place = tmp_path / "place"
    place.mkdir()
    shutil.copy(root / "tiny.pt", place / "tiny.pt")
    out = place / "run"
    spec = f"{place / 'tiny.pt'}?size=32"
    args = ["run", "--data", str(faces_folder), "--backbone", spec, "--out", str(out)]
    args += ["--evaluations", "6", "--population", "6", "--cache-dir", str(feature_cache)]
    assert main([*args, "--no-progress"]) == 0
    result = json.loads((out / "result.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert result["backbone"] == config["run"]["backbone"] == "../tiny.pt?size=32"
    assert result["feature_dim"] == 6 and result["backbone_form"] == "onnxruntime/cpu"

    moved = tmp_path / "moved"
    shutil.move(str(place), str(moved))  # the folder and its model, elsewhere
    run_dir = moved / "run"
    images = sorted(str(p) for p in (faces_folder / "face").glob("*.png"))[:4]
    model = evoprune.load(run_dir)
    assert model.backbone_ == str((moved / "tiny.pt").resolve()) + "?size=32"
    capsys.readouterr()
    assert main(["predict", str(run_dir), *images, "--no-progress"]) == 0
    printed = capsys.readouterr().out
    expected = model.predict(images)
    assert all(str(c) in printed for c in expected)
    assert main(["export", str(run_dir), "--format", "torchscript"]) == 0
    exported = torch.jit.load(str(run_dir / "model.pt"))
    backbone = get_backbone(model.backbone_)
    from PIL import Image

    batch = np.stack([backbone.preprocess(Image.open(p).convert("RGB")) for p in images])
    with torch.inference_mode():
        proba = exported(torch.from_numpy(batch)).numpy()
    np.testing.assert_allclose(proba, model.predict_proba(images), atol=1e-4)
    code = main(
        [
            "analyze",
            str(run_dir),
            "--no-heatmaps",
            "--no-progress",
            "--cache-dir",
            str(feature_cache),
        ]
    )
    assert code == 0 and any((run_dir / "analysis").iterdir())


def test_a_registered_backbone_recorded_as_a_factory_predicts(
    models, faces_folder, feature_cache, tmp_path, monkeypatch, fresh_specs, capsys
):
    """Before: a backbone registered from Python ran, but `evoprune predict` and `export` on
    its run failed with "Unknown backbone". A module:factory spec is rebuilt by every command."""
    root, _ = models
    monkeypatch.chdir(root)
    out = tmp_path / "run"
    args = ["run", "--data", str(faces_folder), "--backbone", "tinynets:tiny?size=32"]
    args += ["--out", str(out), "--evaluations", "6", "--population", "6", "--no-progress"]
    assert main([*args, "--cache-dir", str(feature_cache)]) == 0
    registry._built.pop("tinynets:tiny?size=32")  # a new process: nothing built yet
    images = sorted(str(p) for p in (faces_folder / "not_face").glob("*.png"))[:3]
    assert main(["predict", str(out), *images, "--no-progress"]) == 0
    assert main(["export", str(out), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 0
    import onnxruntime

    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"))
    backbone = get_backbone("tinynets:tiny?size=32")
    from PIL import Image

    batch = np.stack([backbone.preprocess(Image.open(p).convert("RGB")) for p in images])
    proba = session.run(None, {session.get_inputs()[0].name: batch})[0]
    np.testing.assert_allclose(proba, evoprune.load(out).predict_proba(images), atol=1e-4)


def test_features_of_a_spec_are_cached_under_its_file(models, faces_folder, tmp_path, fresh_specs):
    root, _ = models
    paths = sorted(str(p) for p in (faces_folder / "face").glob("*.png"))[:5]
    first = extract_features(f"{root / 'tiny.pt'}?size=32", paths, cache_dir=tmp_path)
    again = extract_features(f"{root / 'tiny.pt'}?size=32", paths, cache_dir=tmp_path)
    assert not first.cached and again.cached
    other = extract_features(f"{root / 'maps.pt'}?size=32", paths, cache_dir=tmp_path)
    assert not other.cached and other.key != first.key


# --- timm and torchvision: their code paths with stand-in libraries, and the real ones ---------


def _fake_timm(net):
    timm = types.ModuleType("timm")
    calls = []

    def create_model(name, pretrained, num_classes):
        calls.append((name, pretrained, num_classes))
        if name != "tinynet":
            raise RuntimeError(f"Unknown model ({name})")
        return net

    timm.create_model = create_model
    timm.data = types.SimpleNamespace(
        resolve_data_config=lambda args, model: {
            "input_size": (3, 40, 40),
            "mean": (0.5, 0.4, 0.3),
            "std": (0.2, 0.2, 0.2),
            "interpolation": "bicubic",
        }
    )
    return timm, calls


def test_timm_names_build_with_timms_weights_and_preprocessing(models, monkeypatch, fresh_specs):
    _, net = models
    timm, calls = _fake_timm(net)
    monkeypatch.setitem(sys.modules, "timm", timm)
    backbone = get_backbone("timm:tinynet")
    assert calls == [("tinynet", True, 0)]  # pretrained weights, pooled features
    assert (backbone.image_size, backbone.preprocessing.resize) == (40, "bicubic")
    assert backbone.mean == (0.5, 0.4, 0.3) and backbone.feature_dim == 6
    with pytest.raises(BackboneError, match="timm cannot build 'nonet'"):
        get_backbone("timm:nonet")


def test_torchvision_names_take_the_input_of_the_last_linear_layer(monkeypatch, fresh_specs):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 5, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 7)
    ).eval()
    weights = types.SimpleNamespace(
        transforms=lambda: types.SimpleNamespace(
            crop_size=[48], mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]
        )
    )
    models = types.SimpleNamespace(
        get_model_weights=lambda name: types.SimpleNamespace(DEFAULT=weights),
        get_model=lambda name, weights: model,
    )
    monkeypatch.setitem(sys.modules, "torchvision", types.SimpleNamespace(models=models))
    backbone = get_backbone("torchvision:tinyvision")
    assert backbone.feature_dim == 5 and backbone.image_size == 48
    batch = torch.from_numpy(_batch(2, 48))
    with torch.inference_mode():
        expected = model[:3](batch).numpy()
        logits = model(batch).numpy()
    np.testing.assert_allclose(backbone.features(batch.numpy()), expected, atol=1e-6)
    with torch.inference_mode():  # the ImageNet classifier is the whole model, untouched
        np.testing.assert_allclose(backbone.classifier()(batch).numpy(), logits, atol=1e-6)


def test_a_library_that_cannot_be_imported_is_one_clear_error(monkeypatch, fresh_specs):
    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.raises(BackboneError, match="needs timm, which cannot be imported") as err:
        get_backbone("timm:resnet18")
    assert "pip install timm" in str(err.value)


@pytest.mark.parametrize("cuda", [None, "12.8"])
@pytest.mark.parametrize("name", ["torchvision:resnet50", "resnet50"])  # a spec, a built-in
def test_a_wheel_built_for_another_torch_names_this_torch_and_where_to_get_one(
    monkeypatch, fresh_specs, cuda, name
):
    real = importlib.import_module

    def import_module(name, *args):
        if name == "torchvision":  # what PyPI's wheel does beside a CPU-only torch
            raise RuntimeError("operator torchvision::nms does not exist")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", import_module)
    monkeypatch.setattr(torch.version, "cuda", cuda)
    monkeypatch.setattr(sys, "platform", "linux")
    with pytest.raises(BackboneError) as err:
        get_backbone(name)
    text = str(err.value)
    assert "needs torchvision" in text and "torchvision::nms does not exist" in text
    assert f"torch {torch.__version__}" in text and 'pip install "evoprune[torchvision]"' in text
    assert ("same CPU wheel index" in text) is (cuda is None)


def _importable(name):
    try:
        importlib.import_module(name)
    except Exception:  # the pip wheels fail with RuntimeError beside a CPU-only torch
        return False
    return True


@pytest.mark.skipif(not _importable("torchvision"), reason="torchvision does not import here")
def test_real_torchvision_model_without_downloading(monkeypatch, fresh_specs):
    import torchvision

    monkeypatch.setattr(torchvision.models, "get_model_weights", lambda name: _NoWeights)
    real = torchvision.models.get_model
    monkeypatch.setattr(
        torchvision.models, "get_model", lambda name, weights: real(name, weights=None)
    )
    backbone = get_backbone("torchvision:resnet18")
    assert backbone.feature_dim == 512


class _NoWeights:
    class DEFAULT:
        @staticmethod
        def transforms():
            return types.SimpleNamespace(
                crop_size=[64], mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]
            )


@pytest.mark.skipif(not _importable("timm"), reason="timm does not import here")
def test_real_timm_model_without_downloading(monkeypatch, fresh_specs):
    import timm

    real = timm.create_model
    monkeypatch.setattr(
        timm, "create_model", lambda name, pretrained, num_classes: real(name, num_classes=0)
    )
    backbone = get_backbone("timm:resnet18")
    assert backbone.feature_dim == 512


def test_specs_are_told_apart_from_names():
    assert is_spec("timm:resnet18") and is_spec("torchvision:resnet50") and is_spec("m.onnx")
    assert is_spec("pkg.nets:build") and is_spec("nets.py:build") and is_spec("m.pt?size=3")
    assert not is_spec("efficientnet-lite0") and not is_spec("resnet50")
    assert check_spec("timm:resnet18") is None  # checked without importing timm


def test_unknown_backbone_lists_names_and_specs():
    with pytest.raises(ConfigError, match="timm:NAME, torchvision:NAME"):
        get_backbone("resnet-51")


def test_a_run_on_an_onnx_file_exports_one_joined_onnx_model(
    models, faces_folder, feature_cache, tmp_path, fresh_specs, caplog
):
    """An ONNX backbone has no torch graph: the export joins its graph to the head's (tracing
    the onnxruntime call would have frozen one batch's answer into the file)."""
    root, _ = models
    out = tmp_path / "run"
    spec = f"{root / 'tiny.onnx'}?size=32"
    args = ["run", "--data", str(faces_folder), "--backbone", spec, "--out", str(out)]
    args += ["--evaluations", "6", "--population", "6", "--cache-dir", str(feature_cache)]
    assert main([*args, "--no-progress"]) == 0
    model = evoprune.load(out)
    images = sorted(str(p) for p in (faces_folder / "face").glob("*.png"))[:5]
    assert main(["export", str(out), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 0
    import onnxruntime
    from PIL import Image

    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"))
    assert [i.name for i in session.get_inputs()] == ["images"]
    backbone = get_backbone(model.backbone_)
    batch = np.stack([backbone.preprocess(Image.open(p).convert("RGB")) for p in images])
    proba = session.run(None, {"images": batch})[0]
    np.testing.assert_allclose(proba, model.predict_proba(images), atol=1e-4)
    code = main(["export", str(out), "--format", "torchscript", "--out", str(tmp_path / "m.pt")])
    assert code == 2 and "no TorchScript form" in caplog.text
    assert not (tmp_path / "m.pt").exists()


def test_default_folders_name_a_spec_by_its_model(models):
    from evoprune.runs.config import RunConfig, default_out_dir

    root, _ = models
    for spec, word in [
        (f"{root / 'tiny.pt'}?size=32", "_tiny_"),
        ("timm:resnet18", "_timm-resnet18_"),
        ("efficientnet-lite0", "_efficientnet-lite0_"),
    ]:
        out = default_out_dir(RunConfig(data="elpv", backbone=spec))
        assert out.parent.name == "runs" and word in out.name, out
