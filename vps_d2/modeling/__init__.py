"""Models: registries, backbones, the meta-architecture protocol, shared layers and losses."""

from .backbone import BACKBONE_REGISTRY, Backbone, ShapeSpec, build_backbone
from .meta_arch import (
    META_ARCH_REGISTRY,
    ClipContract,
    ClipVideoMetaArch,
    VideoMetaArch,
    WindowMemory,
    build_model,
    clip_contract,
    get_meta_arch,
    resolve_clip_config,
    stream_video,
)

__all__ = [
    "BACKBONE_REGISTRY",
    "META_ARCH_REGISTRY",
    "Backbone",
    "ClipContract",
    "ClipVideoMetaArch",
    "ShapeSpec",
    "VideoMetaArch",
    "WindowMemory",
    "build_backbone",
    "build_model",
    "clip_contract",
    "get_meta_arch",
    "resolve_clip_config",
    "stream_video",
]
