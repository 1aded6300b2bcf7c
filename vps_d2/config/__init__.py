"""Configs: fvcore CfgNode with Detectron2's keys, ``_BASE_`` YAML and strict errors."""

from .config import CfgNode, ConfigError, configurable
from .vps import add_vps_config, register_config_section

__all__ = [
    "CfgNode",
    "ConfigError",
    "add_vps_config",
    "configurable",
    "get_cfg",
    "register_config_section",
]


def get_cfg() -> CfgNode:
    """A fresh copy of the default config (Detectron2-compatible keys only).

    Call :func:`add_vps_config` on it for the video and method sections; the tools do.
    """
    from .defaults import _C

    return _C.clone()
