"""ResNet-50, DenseNet-121 and VGG-19 through torchvision: an optional extra, never a requirement.

torchvision is imported only when one of these is asked for; its ImageNet weights come from the
torch hub cache ($TORCH_HOME) or are downloaded there on first use.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
from types import ModuleType

from torch import nn

from evoprune.backbones.base import Backbone, GlobalPool
from evoprune.errors import BackboneError

logger = logging.getLogger(__name__)

SOURCE = "torchvision (optional extra)"
IMAGE_SIZE = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _import_torchvision(name: str) -> ModuleType:
    try:
        return importlib.import_module("torchvision")
    except Exception as exc:  # the pip wheels can fail with RuntimeError beside a CPU torch
        raise BackboneError(
            f'Backbone "{name}" needs torchvision, which cannot be imported here ({exc}). '
            'Install the optional extra with: pip install "evoprune[torchvision]" '
            "(a torchvision build matching the installed torch); its ImageNet weights must then "
            "be downloadable on first use or already be in the torch hub cache ($TORCH_HOME). "
            "The efficientnet-lite backbones work offline without it."
        ) from exc


def is_available() -> bool:
    """Whether torchvision imports on this machine (weights may still need a download)."""
    try:
        importlib.import_module("torchvision")
    except Exception:
        return False
    return True


def _state_dict_id(model: nn.Module) -> str:
    """First 16 hex digits of a sha256 over the state dict's names and tensor bytes."""
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _pretrained(name: str) -> nn.Module:
    models = _import_torchvision(name).models
    try:
        return getattr(models, name)(weights="DEFAULT")
    except Exception as exc:
        raise BackboneError(
            f'Cannot get the ImageNet weights of "{name}" from torchvision ({exc}). They must be '
            "downloadable on first use or already be in the torch hub cache ($TORCH_HOME)."
        ) from exc


def _backbone(
    name: str,
    model: nn.Module,
    feature_module: nn.Module,
    feature_dim: int,
    forward_batch: int = 4,
) -> Backbone:
    return Backbone(
        name=name,
        feature_dim=feature_dim,
        image_size=IMAGE_SIZE,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        weights_id=_state_dict_id(model),
        feature_module=feature_module,
        classifier_module=model,
        forward_batch=forward_batch,
    )


def build_resnet50() -> Backbone:
    model = _pretrained("resnet50")
    body = nn.Sequential(*list(model.children())[:-2])  # up to layer4; drops avgpool and fc
    return _backbone("resnet50", model, GlobalPool(body), 2048)


def build_densenet121() -> Backbone:
    model = _pretrained("densenet121")
    return _backbone("densenet121", model, GlobalPool(model.features, relu=True), 1024)


def build_vgg19() -> Backbone:
    model = _pretrained("vgg19")
    # Its first block holds 64 x 224 x 224 maps (12.8 MB an image): two images per pass.
    return _backbone("vgg19", model, GlobalPool(model.features), 512, forward_batch=2)
