from .base import VideoMetaArch
from .build import META_ARCH_REGISTRY, build_model, resolve_device

__all__ = ["META_ARCH_REGISTRY", "VideoMetaArch", "build_model", "resolve_device"]
