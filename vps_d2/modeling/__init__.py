"""Models: registries, backbones, the meta-architecture protocol, shared layers and losses."""

from .backbone import BACKBONE_REGISTRY, Backbone, ShapeSpec, build_backbone
from .meta_arch import META_ARCH_REGISTRY, VideoMetaArch, build_model

__all__ = [
    "BACKBONE_REGISTRY",
    "META_ARCH_REGISTRY",
    "Backbone",
    "ShapeSpec",
    "VideoMetaArch",
    "build_backbone",
    "build_model",
]
