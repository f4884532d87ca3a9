"""Frozen pretrained CNN feature extractors by name (see :func:`get_backbone`); add your own
with :func:`register_backbone`, its preprocessing given as a :class:`Preprocessing`."""

from evoprune.backbones.base import Backbone, BackboneInfo, Extractor, Preprocessing
from evoprune.backbones.registry import (
    DEFAULT_BACKBONE,
    get_backbone,
    list_backbones,
    register_backbone,
)

__all__ = [
    "DEFAULT_BACKBONE",
    "Backbone",
    "BackboneInfo",
    "Extractor",
    "Preprocessing",
    "get_backbone",
    "list_backbones",
    "register_backbone",
]
