"""Backbones by name: one entry per model says how to build it, what it gives and how its
images are preprocessed. :func:`register_backbone` adds one from outside the package."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from evoprune.backbones import efficientnet_lite, specs, torchvision_models
from evoprune.backbones.base import (
    Backbone,
    BackboneInfo,
    Extractor,
    Preprocessing,
    state_dict_id,
)
from evoprune.errors import BackboneError, ConfigError

logger = logging.getLogger(__name__)

DEFAULT_BACKBONE = "efficientnet-lite0"


@dataclass(frozen=True)
class BackboneEntry:
    """A registered backbone: everything about it but its weights, which ``build`` loads."""

    name: str
    build: Callable[[], Extractor | nn.Module]
    feature_dim: int
    preprocessing: Preprocessing
    description: str
    source: str
    is_available: Callable[[], bool]

    def info(self) -> BackboneInfo:
        return BackboneInfo(
            name=self.name,
            feature_dim=self.feature_dim,
            image_size=self.preprocessing.image_size,
            source=self.source,
            available=bool(self.is_available()),
            description=self.description,
            preprocessing=self.preprocessing,
        )


REGISTRY: dict[str, BackboneEntry] = {}
_built: dict[str, Backbone] = {}
_lock = threading.Lock()


def _always() -> bool:
    return True


def _key(name: str) -> str:
    return str(name).strip().lower()


def register_backbone(
    name: str,
    build: Callable[[], Extractor | nn.Module],
    *,
    feature_dim: int,
    preprocessing: Preprocessing,
    description: str,
    source: str = "registered at run time",
    is_available: Callable[[], bool] | None = None,
    replace: bool = False,
) -> None:
    """Make ``name`` (case-insensitive) a backbone that every command of this process can use.

    ``build()`` is called once, on first use, and returns either a torch module mapping a
    (N, 3, H, W) batch of preprocessed images to (N, ``feature_dim``) features, or an
    :class:`~evoprune.backbones.base.Extractor` (the module plus an ImageNet classifier, a
    weights id and the images per forward pass). ``preprocessing`` says how images become its
    input; feature extraction, prediction and exported models' metadata all read it from here.
    ``is_available()`` tells ``evoprune backbones`` whether it can be built here (default: yes).

    Raises ConfigError for a name already registered (unless ``replace``) or bad settings.

    Example::

        register_backbone("tiny", lambda: MyNet(), feature_dim=64,
                          preprocessing=Preprocessing(image_size=32, mean=(0.5,) * 3,
                                                      std=(0.5,) * 3),
                          description="my 64-feature network")
    """
    key = _key(name)
    _check_new_backbone(key, build, feature_dim, preprocessing, replace)
    with _lock:
        REGISTRY[key] = BackboneEntry(
            name=key,
            build=build,
            feature_dim=feature_dim,
            preprocessing=preprocessing,
            description=str(description),
            source=str(source),
            is_available=is_available or _always,
        )
        _built.pop(key, None)


def _check_new_backbone(
    key: str, build: Callable, feature_dim: int, preprocessing: Preprocessing, replace: bool
) -> None:
    """The checks of :func:`register_backbone`'s arguments (ConfigError naming the fix)."""
    if not key:
        raise ConfigError("register_backbone: name is empty; give the backbone a name")
    if key in REGISTRY and not replace:
        raise ConfigError(
            f"backbone {key!r} is registered already; pick another name or pass replace=True"
        )
    if not callable(build):
        raise ConfigError(
            f"register_backbone({key!r}): build must be a function that returns "
            f"the feature module, got {type(build).__name__}"
        )
    if isinstance(feature_dim, bool) or not isinstance(feature_dim, int) or feature_dim < 1:
        raise ConfigError(
            f"register_backbone({key!r}): feature_dim={feature_dim!r} must be a positive integer"
        )
    if not isinstance(preprocessing, Preprocessing):
        raise ConfigError(
            f"register_backbone({key!r}): preprocessing must be a Preprocessing, "
            f"got {type(preprocessing).__name__}"
        )


def _lite(name: str, description: str) -> None:
    register_backbone(
        name,
        functools.partial(efficientnet_lite.build, name),
        feature_dim=efficientnet_lite.FEATURE_DIM,
        preprocessing=efficientnet_lite.PREPROCESSING[name],
        description=description,
        source=efficientnet_lite.SOURCE,
        is_available=functools.partial(efficientnet_lite.is_available, name),
    )


def _torchvision(
    name: str, build: Callable[[], Extractor], feature_dim: int, description: str
) -> None:
    register_backbone(
        name,
        build,
        feature_dim=feature_dim,
        preprocessing=torchvision_models.PREPROCESSING,
        description=description,
        source=torchvision_models.SOURCE,
        is_available=torchvision_models.is_available,
    )


_lite("efficientnet-lite0", "EfficientNet-Lite0, ImageNet; offline default")
_lite("efficientnet-lite1", "EfficientNet-Lite1, ImageNet; offline")
_lite("efficientnet-lite2", "EfficientNet-Lite2, ImageNet; offline")
_torchvision(
    "resnet50", torchvision_models.build_resnet50, 2048, "ResNet-50, ImageNet (paper backbone)"
)
_torchvision("densenet121", torchvision_models.build_densenet121, 1024, "DenseNet-121, ImageNet")
_torchvision(
    "vgg19", torchvision_models.build_vgg19, 512, "VGG-19, ImageNet, last conv block average-pooled"
)


def list_backbones() -> list[BackboneInfo]:
    """Every registered backbone, with whether it can be built on this machine."""
    return [entry.info() for entry in REGISTRY.values()]


def _build(entry: BackboneEntry) -> Backbone:
    made = entry.build()
    if isinstance(made, nn.Module):
        made = Extractor(feature_module=made)
    if not isinstance(made, Extractor):
        raise BackboneError(
            f'Backbone "{entry.name}": its build function returned '
            f"{type(made).__name__}, not a torch module or an Extractor"
        )
    return Backbone(
        name=entry.name,
        feature_dim=entry.feature_dim,
        preprocessing=entry.preprocessing,
        weights_id=made.weights_id or state_dict_id(made.feature_module),
        feature_module=made.feature_module,
        classifier_module=made.classifier_module,
        forward_batch=made.forward_batch,
    )


def get_backbone(name: str) -> Backbone:
    """The backbone called ``name``, built once per process: a registered name, or a spec
    (``timm:NAME``, ``torchvision:NAME``, a ``.pt``/``.pth``/``.onnx`` file, ``module:factory``;
    see :mod:`evoprune.backbones.specs`).

    Raises ConfigError for an unknown name or a wrong spec and BackboneError when it cannot be
    built here.
    """
    key = _key(name)
    entry = REGISTRY.get(key)
    if entry is None:
        if specs.is_spec(name):
            spec = str(name).strip()  # paths and modules keep their case
            with _lock:
                if spec not in _built:
                    logger.info("Building backbone %s", spec)
                    _built[spec] = specs.build_spec(spec)
                return _built[spec]
        raise ConfigError(
            f"Unknown backbone {name!r}; known backbones: {', '.join(REGISTRY)}, or a spec: "
            f"{specs.SPEC_FORMS} (others can be added with "
            "evoprune.backbones.register_backbone)"
        )
    with _lock:
        if key not in _built:
            logger.info("Building backbone %s", key)
            _built[key] = _build(entry)
        return _built[key]
