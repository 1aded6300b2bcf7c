"""Frame-wise baseline (image-only ablation)."""

from . import (
    config,  # noqa: F401
    export,  # noqa: F401
)
from .model import FrameBaseline

__all__ = ["FrameBaseline"]
