from .base import VideoMetaArch
from .build import META_ARCH_REGISTRY, build_model, get_meta_arch, resolve_device
from .clip import STREAM_MODES, ClipVideoMetaArch, WindowMemory

__all__ = [
    "META_ARCH_REGISTRY",
    "STREAM_MODES",
    "ClipVideoMetaArch",
    "VideoMetaArch",
    "WindowMemory",
    "build_model",
    "get_meta_arch",
    "resolve_device",
]
