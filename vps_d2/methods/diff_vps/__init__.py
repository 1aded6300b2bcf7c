"""Diff-VPS (MICCAI 2024): multi-task conditional diffusion (mask, class, box) with an
adversarial temporal reasoning module; online streaming with DDIM sampling."""

from . import config, convert, export, train_step  # noqa: F401  (MODEL.DIFF_VPS; --from; steps)
from .model import DiffVPS

__all__ = ["DiffVPS"]
