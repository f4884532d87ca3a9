"""Frozen pretrained CNN feature extractors by name (see :func:`get_backbone`)."""

from evoprune.backbones.base import Backbone, BackboneInfo
from evoprune.backbones.registry import DEFAULT_BACKBONE, get_backbone, list_backbones

__all__ = ["DEFAULT_BACKBONE", "Backbone", "BackboneInfo", "get_backbone", "list_backbones"]
