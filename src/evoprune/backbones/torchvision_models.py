"""ResNet-50, DenseNet-121 and VGG-19 through torchvision: an optional extra, never a requirement.

torchvision is imported only when one of these is asked for; its ImageNet weights come from the
torch hub cache ($TORCH_HOME) or are downloaded there on first use.
"""

from __future__ import annotations

import importlib
import logging
from types import ModuleType
from typing import Any

from torch import nn

from evoprune.backbones.base import (
    Extractor,
    GlobalPool,
    Preprocessing,
    import_optional,
    state_dict_id,
)
from evoprune.errors import BackboneError

logger = logging.getLogger(__name__)

SOURCE = "torchvision (optional extra)"
#: torchvision's ImageNet models: 224 px, ImageNet mean and std (resized whole, no crop).
PREPROCESSING = Preprocessing(image_size=224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


def _import_torchvision(name: str) -> ModuleType:
    return import_optional(
        "torchvision",
        f'Backbone "{name}"',
        '"evoprune[torchvision]"',
        "Its ImageNet weights must then be downloadable on first use or already be in the torch "
        "hub cache ($TORCH_HOME). The efficientnet-lite backbones work offline without it.",
        torch_build=True,
    )


def is_available() -> bool:
    """Whether torchvision imports on this machine (weights may still need a download)."""
    try:
        importlib.import_module("torchvision")
    except Exception:
        return False
    return True


def _pretrained(name: str) -> Any:
    """torchvision's ``name`` model with its ImageNet weights (torchvision is imported at run
    time, so its model classes are unknown to a type checker)."""
    models = _import_torchvision(name).models
    try:
        return getattr(models, name)(weights="DEFAULT")
    except Exception as exc:
        raise BackboneError(
            f'Cannot get the ImageNet weights of "{name}" from torchvision ({exc}). They must be '
            "downloadable on first use or already be in the torch hub cache ($TORCH_HOME)."
        ) from exc


def _extractor(model: nn.Module, feature_module: nn.Module, forward_batch: int = 4) -> Extractor:
    return Extractor(
        feature_module=feature_module,
        classifier_module=model,
        weights_id=state_dict_id(model),
        forward_batch=forward_batch,
    )


def build_resnet50() -> Extractor:
    model = _pretrained("resnet50")
    body = nn.Sequential(*list(model.children())[:-2])  # up to layer4; drops avgpool and fc
    return _extractor(model, GlobalPool(body))


def build_densenet121() -> Extractor:
    model = _pretrained("densenet121")
    return _extractor(model, GlobalPool(model.features, relu=True))


def build_vgg19() -> Extractor:
    model = _pretrained("vgg19")
    # Its first block holds 64 x 224 x 224 maps (12.8 MB an image): two images per pass.
    return _extractor(model, GlobalPool(model.features), forward_batch=2)
