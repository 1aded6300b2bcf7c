"""Detectron2's config extended with vps_d2's keys (every configs/*.yaml then merges)."""

from __future__ import annotations

import logging

from detectron2.config import CfgNode as D2CfgNode
from detectron2.config import defaults as d2_defaults
from detectron2.config import get_cfg as d2_get_cfg

from vps_d2 import config as vps_config

__all__ = ["add_vps_config", "extend_detectron2_defaults", "get_cfg"]

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


def _vps_defaults():
    return vps_config.add_vps_config(vps_config.get_cfg())


def _add_missing(dst, src) -> list[str]:
    """Add the keys of ``src`` missing in ``dst`` (as ``type(dst)`` nodes), keep the others."""
    added = []
    for key, value in src.items():
        if key not in dst:
            dst[key] = type(dst)(value) if isinstance(value, dict) else value
            added.append(key)
        elif isinstance(value, dict) and isinstance(dst[key], dict):
            added += [f"{key}.{k}" for k in _add_missing(dst[key], value)]
    return added


def extend_detectron2_defaults() -> list[str]:
    """Add every vps_d2 key that Detectron2 lacks to Detectron2's own defaults, so a plain
    ``detectron2.config.get_cfg()`` merges a vps_d2 config (``import vps_d2.d2`` does it).

    Keys both define keep Detectron2's default there (Detectron2's models are unchanged);
    vps_d2's Base-VPS.yaml sets every one of them whose defaults differ, so a project config
    (and any ``cfg.dump()``) means the same under both ``get_cfg``. Idempotent; call it again
    after loading a plug-in that adds a config section. Returns the keys added.
    """
    return _add_missing(d2_defaults._C, _vps_defaults())


def add_vps_config(cfg: D2CfgNode) -> D2CfgNode:
    """Turn Detectron2's ``get_cfg()`` into one that accepts every vps_d2 config, in place.

    Every key of vps_d2's defaults (``vps_d2.config.get_cfg()`` + ``add_vps_config`` with every
    registered method section, so load plug-ins first) that Detectron2 lacks is created with
    the type of ``cfg``; keys both define but with other defaults (MODEL.BACKBONE.FREEZE_AT,
    INPUT.FORMAT, MODEL.PIXEL_MEAN, ...) get vps_d2's value, so a vps_d2 config means the same
    thing under both engines. Idempotent. Returns ``cfg``.
    """
    vps = _vps_defaults()
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
