"""META_ARCH_REGISTRY and build_model, as in Detectron2."""

from __future__ import annotations

import logging

import torch

from vps_d2.config.config import COMMAND_LINE
from vps_d2.utils.registry import Registry

__all__ = [
    "META_ARCH_REGISTRY",
    "build_model",
    "clip_contract",
    "get_meta_arch",
    "resolve_clip_config",
    "resolve_device",
    "unread_method_keys",
    "warn_unread_method_keys",
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


def _lookup(cfg, key: str):
    node = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


_MISSING = object()


def _leaves(node, prefix: str) -> set[str]:
    if not isinstance(node, dict) or not node:
        return {prefix}
    out: set[str] = set()
    for k, v in node.items():
        out |= _leaves(v, f"{prefix}.{k}")
    return out


def unread_method_keys(cfg, defaults) -> list[tuple[str, str]]:
    """``[(key, where it was set)]``: keys set in ``cfg`` (by its config files or the command
    line, :meth:`~vps_d2.config.CfgNode.set_keys`) inside the section ``MODEL.<SECTION>`` of
    another meta-architecture than ``cfg.MODEL.META_ARCHITECTURE`` (the sections each one
    declares in ``config_sections``): keys the built model never reads.

    A key of a file that sets every key of that section at its default value (a full
    config dump such as OUTPUT_DIR/config.yaml) is not counted. Empty when the chosen
    meta-architecture declares no section, or ``cfg`` does not record its keys.
    """
    if not hasattr(cfg, "set_keys"):
        return []
    arch = get_meta_arch(cfg)
    own = set(arch.config_sections)
    if not own:
        return []
    others = {s for _, cls in META_ARCH_REGISTRY for s in getattr(cls, "config_sections", ())}
    others -= own
    found: dict[str, str] = {}
    for source, keys in cfg.set_keys():
        complete: dict[str, bool] = {}
        for key in keys:
            parts = key.split(".")
            if len(parts) < 3 or parts[0] != "MODEL" or parts[1] not in others:
                continue
            section = parts[1]
            default = _lookup(defaults, key)
            if source != COMMAND_LINE and default is not _MISSING:
                if section not in complete:
                    every = _leaves(_lookup(defaults, f"MODEL.{section}"), f"MODEL.{section}")
                    complete[section] = every <= set(keys)
                if complete[section] and _lookup(cfg, key) == default:
                    continue  # a full dump at the defaults
            found[key] = source
    return list(found.items())


_WARNED: set[str] = set()


def warn_unread_method_keys(cfg, defaults) -> list[tuple[str, str]]:
    """Log one warning line naming the :func:`unread_method_keys` of ``cfg`` (once per
    process for the same keys); returns them."""
    unread = unread_method_keys(cfg, defaults)
    if not unread:
        return unread
    arch = get_meta_arch(cfg)
    own = ", ".join(f"MODEL.{s}" for s in arch.config_sections)
    listed = []
    for key, source in unread:
        guess = f"MODEL.{arch.config_sections[0]}.{key.split('.', 2)[2]}"
        hint = f"; did you mean {guess}?" if _lookup(defaults, guess) is not _MISSING else ""
        where = "on the command line" if source == COMMAND_LINE else f"in {source}"
        listed.append(f"{key} (set {where}{hint})")
    message = (
        f"Config keys that {cfg.MODEL.META_ARCHITECTURE} does not read (it reads {own}), "
        f"without effect: {', '.join(listed)}"
    )
    if message not in _WARNED:
        _WARNED.add(message)
        logger.warning("%s", message)
    return unread
