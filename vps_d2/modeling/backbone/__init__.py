"""Backbones: BACKBONE_REGISTRY, ShapeSpec, timm-based multi-scale feature extractors."""

from . import convert  # noqa: F401  (registers the backbone converters)
from .build import BACKBONE_REGISTRY, Backbone, ShapeSpec, build_backbone
from .timm_backbone import SmallCNN, TimmBackbone, load_backbone_weights

__all__ = [
    "BACKBONE_REGISTRY",
    "Backbone",
    "ShapeSpec",
    "SmallCNN",
    "TimmBackbone",
    "build_backbone",
    "load_backbone_weights",
]
