"""Models: registries, backbones, the meta-architecture protocol, shared layers and losses."""

from .backbone import BACKBONE_REGISTRY, Backbone, ShapeSpec, build_backbone
from .meta_arch import (
    META_ARCH_REGISTRY,
    ClipVideoMetaArch,
    VideoMetaArch,
    WindowMemory,
    build_model,
    get_meta_arch,
)

__all__ = [
    "BACKBONE_REGISTRY",
    "META_ARCH_REGISTRY",
    "Backbone",
    "ClipVideoMetaArch",
    "ShapeSpec",
    "VideoMetaArch",
    "WindowMemory",
    "build_backbone",
    "build_model",
    "get_meta_arch",
]
