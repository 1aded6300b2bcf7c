"""Methods kept outside the package: plug-ins imported before the config is read.

A plug-in is a Python module that registers its parts when imported (a config adder with
``vps_d2.config.register_config_section``, a meta-architecture, clip samplers, mappers,
training steps, evaluators, datasets), exactly as the built-in methods in
``vps_d2/methods/`` do. The tools import, in this order:

1. every entry point of the group ``vps_d2.plugins`` of the installed distributions
   (``[project.entry-points."vps_d2.plugins"] mymethod = "mypkg.method"`` in a
   pyproject.toml), so an installed method needs no flag;
2. the modules of the environment variable ``VPS_D2_PLUGINS`` (comma-separated; inherited
   by spawned DDP processes);
3. the modules given with ``--plugin MODULE`` (repeatable), a dotted module name or a path
   to a ``.py`` file.

Every process of a run (DDP processes, loader workers) sees the same registries, because
each of them reads its config through :func:`vps_d2.engine.setup_cfg`, which calls
:func:`load_plugins` first.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
from collections.abc import Iterable
from importlib.metadata import entry_points
from types import ModuleType

__all__ = ["ENTRY_POINT_GROUP", "ENV_VAR", "PluginError", "load_plugins"]

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "vps_d2.plugins"
ENV_VAR = "VPS_D2_PLUGINS"


class PluginError(ImportError):
    """A plug-in module that cannot be found or fails to import (the message names it)."""


def _import_path(path: str) -> ModuleType:
    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.isfile(path):
        raise PluginError(f"Plug-in file not found: {path}")
    name = "vps_d2_plugin_" + os.path.splitext(os.path.basename(path))[0]
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"Cannot import the plug-in file {path} (not a Python module)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception:
        del sys.modules[name]
        raise
    return module


def _import(spec: str) -> ModuleType:
    try:
        if spec.endswith(".py") or os.sep in spec:
            return _import_path(spec)
        return importlib.import_module(spec)
    except PluginError:
        raise
    except ModuleNotFoundError as e:
        raise PluginError(f"Plug-in {spec!r} cannot be imported: {e}") from e
    except Exception as e:
        raise PluginError(
            f"Plug-in {spec!r} failed while importing: {type(e).__name__}: {e}"
        ) from e


def load_plugins(modules: Iterable[str] | None = (), use_entry_points: bool = True) -> list[str]:
    """Import the plug-ins (entry points, ``$VPS_D2_PLUGINS``, then ``modules``).

    Idempotent (a module is imported once). Returns the names imported or already loaded.

    Raises:
        PluginError: naming the module that is missing or raised while importing.
    """
    loaded: list[str] = []
    if use_entry_points:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                ep.load()
            except Exception as e:
                raise PluginError(
                    f"Plug-in entry point {ep.name} = {ep.value} (group {ENTRY_POINT_GROUP}) "
                    f"failed to load: {type(e).__name__}: {e}"
                ) from e
            loaded.append(ep.value)
    env = [m.strip() for m in os.environ.get(ENV_VAR, "").split(",") if m.strip()]
    for spec in [*env, *(modules or [])]:
        module = _import(spec)
        loaded.append(module.__name__)
    if loaded:
        logger.info("Plug-ins loaded: %s", loaded)
    return loaded
