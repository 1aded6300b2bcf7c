"""Configs shipped with vps_d2, found by file name (Detectron2's ``model_zoo.get_config_file``).

Every built-in config lives in its method's folder (``vps_d2/methods/<method>/configs/``);
the shared base is ``vps_d2/config/Base-VPS.yaml``. They are package data, so the lookup
works from a clone and from an installed wheel alike::

    from vps_d2 import model_zoo
    model_zoo.get_config_file("sali_sample.yaml")      # absolute path
    model_zoo.get_config_file("configs/sali_sample.yaml")  # the same: "configs/" is optional

The tools accept ``--config-file configs/<name>.yaml`` for any of them: a path that exists is
used as it is; otherwise the name is looked up here.
"""

from __future__ import annotations

import glob
import os

__all__ = ["PACKAGE_DIR", "get_config_file", "list_configs", "resolve_config_path"]

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def list_configs() -> dict[str, str]:
    """{file name: absolute path} of every config shipped in the package, sorted by name."""
    paths = glob.glob(os.path.join(PACKAGE_DIR, "config", "*.yaml"))
    paths += glob.glob(os.path.join(PACKAGE_DIR, "methods", "*", "configs", "*.yaml"))
    found: dict[str, str] = {}
    for path in sorted(paths):
        name = os.path.basename(path)
        if name in found:
            raise RuntimeError(f"two shipped configs are named {name}: {found[name]} and {path}")
        found[name] = path
    return dict(sorted(found.items()))


def get_config_file(name: str) -> str:
    """Absolute path of the shipped config ``name`` (``x.yaml`` or ``configs/x.yaml``).

    Raises:
        FileNotFoundError: naming the config and listing the shipped ones.
    """
    key = name.replace("\\", "/")
    if key.startswith("configs/"):
        key = key[len("configs/") :]
    configs = list_configs()
    if "/" not in key and key in configs:
        return configs[key]
    raise FileNotFoundError(
        f"{name}: no such config file, and no shipped config of that name "
        f"(shipped: {', '.join(configs)})"
    )


def resolve_config_path(path: str) -> str:
    """``path`` if it is a file, else the shipped config of that name (FileNotFoundError)."""
    if os.path.isfile(path):
        return path
    return get_config_file(path)
