"""Configs: fvcore CfgNode with Detectron2's keys, ``_BASE_`` YAML and strict errors."""

from .config import CfgNode, ConfigError, configurable, register_renamed_key
from .defaults import _C
from .vps import add_vps_config, register_config_section, register_section_provider

__all__ = [
    "CfgNode",
    "ConfigError",
    "add_vps_config",
    "configurable",
    "get_cfg",
    "register_config_section",
    "register_renamed_key",
    "register_section_provider",
]


def get_cfg() -> CfgNode:
    """A fresh copy of the default config (Detectron2-compatible keys only).

    Call :func:`add_vps_config` on it for the video and method sections; the tools do.
    """
    return _C.clone()
