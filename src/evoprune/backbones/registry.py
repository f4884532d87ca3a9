"""Backbones by name: one entry per model says how to build it and what it gives."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from evoprune.backbones import efficientnet_lite, torchvision_models
from evoprune.backbones.base import Backbone, BackboneInfo
from evoprune.errors import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_BACKBONE = "efficientnet-lite0"


@dataclass(frozen=True)
class _Entry:
    build: Callable[[], Backbone]
    is_available: Callable[[], bool]
    feature_dim: int
    image_size: int
    source: str
    description: str


def _lite(name: str, description: str) -> _Entry:
    return _Entry(
        build=functools.partial(efficientnet_lite.build, name),
        is_available=functools.partial(efficientnet_lite.is_available, name),
        feature_dim=efficientnet_lite.FEATURE_DIM,
        image_size=efficientnet_lite.IMAGE_SIZES[name],
        source=efficientnet_lite.SOURCE,
        description=description,
    )


def _torchvision(build: Callable[[], Backbone], feature_dim: int, description: str) -> _Entry:
    return _Entry(
        build=build,
        is_available=torchvision_models.is_available,
        feature_dim=feature_dim,
        image_size=torchvision_models.IMAGE_SIZE,
        source=torchvision_models.SOURCE,
        description=description,
    )


# To add a backbone: write a builder returning a Backbone and register it here.
REGISTRY: dict[str, _Entry] = {
    "efficientnet-lite0": _lite(
        "efficientnet-lite0", "EfficientNet-Lite0, ImageNet; offline default"
    ),
    "efficientnet-lite1": _lite("efficientnet-lite1", "EfficientNet-Lite1, ImageNet; offline"),
    "efficientnet-lite2": _lite("efficientnet-lite2", "EfficientNet-Lite2, ImageNet; offline"),
    "resnet50": _torchvision(
        torchvision_models.build_resnet50, 2048, "ResNet-50, ImageNet (paper backbone)"
    ),
    "densenet121": _torchvision(
        torchvision_models.build_densenet121, 1024, "DenseNet-121, ImageNet"
    ),
    "vgg19": _torchvision(
        torchvision_models.build_vgg19, 512, "VGG-19, ImageNet, last conv block average-pooled"
    ),
}

_built: dict[str, Backbone] = {}
_lock = threading.Lock()


def list_backbones() -> list[BackboneInfo]:
    """Every registered backbone, with whether it can be built on this machine."""
    return [
        BackboneInfo(
            name=name,
            feature_dim=entry.feature_dim,
            image_size=entry.image_size,
            source=entry.source,
            available=entry.is_available(),
            description=entry.description,
        )
        for name, entry in REGISTRY.items()
    ]


def get_backbone(name: str) -> Backbone:
    """The backbone called ``name``, built once per process.

    Raises ConfigError for an unknown name and BackboneError when it cannot be built here.
    """
    key = str(name).strip().lower()
    entry = REGISTRY.get(key)
    if entry is None:
        raise ConfigError(
            f"Unknown backbone {name!r}; known backbones: {', '.join(REGISTRY)}"
        )
    with _lock:
        if key not in _built:
            logger.info("Building backbone %s", key)
            _built[key] = entry.build()
        return _built[key]
