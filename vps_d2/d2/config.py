"""Detectron2's config extended with vps_d2's keys (every configs/*.yaml then merges)."""

from __future__ import annotations

import logging

from detectron2.config import CfgNode as D2CfgNode
from detectron2.config import get_cfg as d2_get_cfg

from vps_d2 import config as vps_config

__all__ = ["add_vps_config", "get_cfg"]

logger = logging.getLogger(__name__)


def _merge_defaults(dst, src, prefix: str) -> list[str]:
    """Add keys of ``src`` missing in ``dst`` (as ``type(dst)`` nodes); set shared keys whose
    defaults differ to vps_d2's. Returns the keys whose Detectron2 default was replaced."""
    changed = []
    for key, value in src.items():
        full = f"{prefix}{key}"
        if key not in dst:
            dst[key] = type(dst)(value) if isinstance(value, dict) else value
        elif isinstance(value, dict) and isinstance(dst[key], dict):
            changed += _merge_defaults(dst[key], value, full + ".")
        elif dst[key] != value:
            dst[key] = type(dst)(value) if isinstance(value, dict) else value
            changed.append(full)
    return changed


def add_vps_config(cfg: D2CfgNode) -> D2CfgNode:
    """Turn Detectron2's ``get_cfg()`` into one that accepts every vps_d2 config, in place.

    Every key of vps_d2's defaults (``vps_d2.config.get_cfg()`` + ``add_vps_config`` with every
    registered method section, so load plug-ins first) that Detectron2 lacks is created with
    the type of ``cfg``; keys both define but with other defaults (MODEL.BACKBONE.FREEZE_AT,
    INPUT.FORMAT, MODEL.PIXEL_MEAN, ...) get vps_d2's value, so a vps_d2 config means the same
    thing under both engines. Idempotent. Returns ``cfg``.
    """
    vps = vps_config.add_vps_config(vps_config.get_cfg())
    was_frozen = cfg.is_frozen()
    cfg.defrost()
    changed = _merge_defaults(cfg, vps, "")
    if changed:
        logger.debug("Detectron2 defaults replaced by vps_d2's: %s", changed)
    if was_frozen:
        cfg.freeze()
    return cfg


def get_cfg() -> D2CfgNode:
    """Detectron2's ``get_cfg()`` with :func:`add_vps_config` applied."""
    return add_vps_config(d2_get_cfg())
