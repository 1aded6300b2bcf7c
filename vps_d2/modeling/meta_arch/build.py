"""META_ARCH_REGISTRY and build_model, as in Detectron2."""

from __future__ import annotations

import logging

import torch

from vps_d2.utils.registry import Registry

__all__ = ["META_ARCH_REGISTRY", "build_model", "get_meta_arch", "resolve_device"]

logger = logging.getLogger(__name__)

META_ARCH_REGISTRY = Registry("META_ARCH")
META_ARCH_REGISTRY.__doc__ = """
Registry for meta-architectures (whole models). A registered class is built with
``cls(cfg)`` and follows the protocol of :class:`vps_d2.modeling.VideoMetaArch`.
"""


def resolve_device(name: str) -> torch.device:
    """MODEL.DEVICE -> torch.device, falling back to the CPU (with a warning) without CUDA."""
    if name.startswith("cuda") and not torch.cuda.is_available():
        logger.warning("MODEL.DEVICE is %r but CUDA is not available: using the CPU", name)
        return torch.device("cpu")
    return torch.device(name)


def get_meta_arch(cfg) -> type:
    """The class registered as ``cfg.MODEL.META_ARCHITECTURE`` (KeyError listing the names)."""
    return META_ARCH_REGISTRY.get_for(
        cfg.MODEL.META_ARCHITECTURE, "MODEL.META_ARCHITECTURE",
        "a method outside vps_d2 is registered by importing it: --plugin MODULE",
    )  # fmt: skip


def build_model(cfg) -> torch.nn.Module:
    """Build ``cfg.MODEL.META_ARCHITECTURE`` on ``cfg.MODEL.DEVICE`` (no weights loaded)."""
    model = get_meta_arch(cfg)(cfg)
    model.to(resolve_device(cfg.MODEL.DEVICE))
    return model
