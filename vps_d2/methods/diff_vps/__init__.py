"""Diff-VPS (MICCAI 2024): multi-task conditional diffusion (mask, class, box) with an
adversarial temporal reasoning module; online streaming with DDIM sampling."""

from . import config, convert, train_step  # noqa: F401  (MODEL.DIFF_VPS; --from diff-vps; the step)
from .model import DiffVPS

__all__ = ["DiffVPS"]
