"""META_ARCH_REGISTRY and build_model, as in Detectron2."""

from __future__ import annotations

import logging

import torch

from vps_d2.utils.registry import Registry

__all__ = [
    "META_ARCH_REGISTRY",
    "build_model",
    "clip_contract",
    "get_meta_arch",
    "resolve_clip_config",
    "resolve_device",
]

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
        cfg.MODEL.META_ARCHITECTURE,
        "MODEL.META_ARCHITECTURE",
        "a method outside vps_d2 is registered by importing it: --plugin MODULE",
    )


def clip_contract(cfg):
    """The :class:`~.base.ClipContract` of ``cfg.MODEL.META_ARCHITECTURE`` for ``cfg``."""
    return get_meta_arch(cfg).clip_contract(cfg)


def resolve_clip_config(cfg):
    """Check INPUT.CLIP.LENGTH / SAMPLING against the model's clip contract; fill them in.

    Unset values (0 / "") become what the model declares (length 1 and "online" where it
    accepts any); a set value that contradicts the contract raises
    :class:`~vps_d2.config.ConfigError` naming the key, its value and what the model needs.
    Returns ``cfg`` itself, written in place, or, when ``cfg`` is frozen and a value has to
    be filled in, a frozen resolved copy. Idempotent.
    """
    arch = get_meta_arch(cfg)
    clip = cfg.INPUT.CLIP
    length, sampling = arch.clip_contract(cfg).resolve(clip.LENGTH, clip.SAMPLING, arch.__name__)
    if (length, sampling) == (clip.LENGTH, clip.SAMPLING):
        return cfg
    frozen = cfg.is_frozen()
    if frozen:
        cfg = cfg.clone()
        cfg.defrost()
    cfg.INPUT.CLIP.LENGTH, cfg.INPUT.CLIP.SAMPLING = length, sampling
    if frozen:
        cfg.freeze()
    return cfg


def build_model(cfg) -> torch.nn.Module:
    """Build ``cfg.MODEL.META_ARCHITECTURE`` on ``cfg.MODEL.DEVICE`` (no weights loaded)."""
    model = get_meta_arch(cfg)(cfg)
    model.to(resolve_device(cfg.MODEL.DEVICE))
    return model
