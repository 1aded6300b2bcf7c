from .base import ClipContract, VideoMetaArch
from .build import (
    META_ARCH_REGISTRY,
    build_model,
    clip_contract,
    get_meta_arch,
    resolve_clip_config,
    resolve_device,
)
from .clip import STREAM_MODES, ClipVideoMetaArch, WindowMemory
from .streaming import stream_video

__all__ = [
    "META_ARCH_REGISTRY",
    "STREAM_MODES",
    "ClipContract",
    "ClipVideoMetaArch",
    "VideoMetaArch",
    "WindowMemory",
    "build_model",
    "clip_contract",
    "get_meta_arch",
    "resolve_clip_config",
    "resolve_device",
    "stream_video",
]
