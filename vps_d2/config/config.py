"""CfgNode with strict, file-naming errors, and Detectron2's ``@configurable`` idiom.

The node is fvcore's CfgNode (the one Detectron2 builds on). Two behaviours are added:

* ``merge_from_file`` validates every file of a ``_BASE_`` chain on its own, so an
  unknown key or a wrong type is reported with the file that holds it.
* ``merge_from_list`` (the trailing ``KEY VALUE`` opts of the tools) names the key and
  says that it came from the command line.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
from collections.abc import Callable
from typing import Any

import yaml
from fvcore.common.config import CfgNode as _FvCfgNode

__all__ = ["CfgNode", "ConfigError", "configurable", "register_renamed_key"]

logger = logging.getLogger(__name__)

BASE_KEY = "_BASE_"
#: The source :meth:`CfgNode.set_keys` gives keys of ``merge_from_list`` (command-line opts).
COMMAND_LINE = "the command line"

# Keys that moved: old full key -> (new full key, note, alias). A config that still uses
# the old key gets an error naming the new one (strict configs never silently ignore a
# key), or, for an alias, is read as the new key with a one-line deprecation warning.
_RENAMED_KEYS: dict[str, tuple[str, str, bool]] = {}


def register_renamed_key(old: str, new: str, note: str = "", *, alias: bool = False) -> None:
    """Declare that config key ``old`` is now ``new`` (e.g. moved into a method's section).

    ``alias=True``: the old key keeps working (read as ``new``, one deprecation warning per
    use); ``old`` may then name a whole section (``MODEL.BASELINE`` -> ``MODEL.FRAME_BASELINE``
    renames every key under it). Otherwise using ``old`` is a :class:`ConfigError`.
    """
    _RENAMED_KEYS[old] = (new, note, alias)


def _renamed(key: str) -> tuple[str, str, bool] | None:
    """(new key, note, alias) for ``key``: an exact rename, else an alias of a section above it."""
    if key in _RENAMED_KEYS:
        return _RENAMED_KEYS[key]
    parts = key.split(".")
    for n in range(len(parts) - 1, 0, -1):
        hit = _RENAMED_KEYS.get(".".join(parts[:n]))
        if hit is not None and hit[2]:
            return f"{hit[0]}.{'.'.join(parts[n:])}", hit[1], True
    return None


def _resolve_key(key: str, where: str) -> str:
    """The current name of ``key``: aliases followed (warning once each), renames refused."""
    seen = [key]
    while (hit := _renamed(key)) is not None:
        new, note, alias = hit
        why = f" ({note})" if note else ""
        if not alias:
            raise ConfigError(f"{where}: {key} was renamed to {new}; use {new} instead{why}")
        if new in seen:
            raise ConfigError(f"{where}: renamed keys form a loop: {' -> '.join(seen + [new])}")
        seen.append(new)
        key = new
    if len(seen) > 1:
        logger.warning("%s: %s is deprecated, read as %s", where, seen[0], key)
    return key


def _unflatten(flat: dict[str, Any]) -> dict:
    out: dict = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def _flat_items(d: dict, prefix: str = "") -> list[tuple[str, Any]]:
    items = []
    for k, v in d.items():
        full = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            items.extend(_flat_items(v, full + "."))
        else:
            items.append((full, v))
    return items


def _translate_renamed(data: dict, where: str) -> dict:
    """``data`` with deprecated aliases read as their new keys (renamed keys raise)."""
    _check_renamed(_flat_keys(data), where)
    flat = _flat_items(data)
    if not any(_renamed(k) for k, _ in flat):
        return data
    return _unflatten({_resolve_key(k, where): v for k, v in flat})


def _flat_keys(d: dict, prefix: str = "") -> list[str]:
    keys = []
    for k, v in d.items():
        full = f"{prefix}{k}"
        keys.append(full)
        if isinstance(v, dict):
            keys.extend(_flat_keys(v, full + "."))
    return keys


def _check_renamed(keys: list[str], where: str) -> None:
    """Refuse keys that were renamed without an alias (sections included)."""
    for key in keys:
        hit = _RENAMED_KEYS.get(key)
        if hit is not None and not hit[2]:
            new, note, _ = hit
            why = f" ({note})" if note else ""
            raise ConfigError(f"{where}: {key} was renamed to {new}; use {new} instead{why}")


class ConfigError(KeyError):
    """An unknown key, a wrong type or an unreadable file in a config."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class CfgNode(_FvCfgNode):
    """fvcore CfgNode whose merge errors name the offending key and file."""

    @classmethod
    def _load_chain(cls, filename: str, _seen: tuple[str, ...] = ()) -> list[tuple[str, dict]]:
        """Return ``[(file, dict)]`` for the ``_BASE_`` chain of ``filename``, base first."""
        filename = os.path.abspath(os.path.expanduser(filename))
        if filename in _seen:
            raise ConfigError(f"{filename}: circular _BASE_ chain {' -> '.join(_seen)}")
        if not os.path.isfile(filename):
            where = f" (the _BASE_ of {_seen[-1]})" if _seen else ""
            raise ConfigError(f"Config file not found: {filename}{where}")
        try:
            with open(filename, encoding="utf-8") as f:
                data = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise ConfigError(f"{filename}: not valid YAML: {e}") from e
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{filename}: a config file must hold a mapping, got {type(data)}")
        chain: list[tuple[str, dict]] = []
        base = data.pop(BASE_KEY, None)
        if base is not None:
            if not isinstance(base, str):
                raise ConfigError(f"{filename}: {BASE_KEY} must be a file path, got {base!r}")
            base = os.path.expanduser(base)
            if not os.path.isabs(base):
                base = os.path.join(os.path.dirname(filename), base)
            chain.extend(cls._load_chain(base, _seen + (filename,)))
        chain.append((filename, data))
        return chain

    def merge_from_file(self, cfg_filename: str, allow_unsafe: bool = False) -> None:
        """Merge a YAML file (and its ``_BASE_`` chain) into this config.

        Raises:
            ConfigError: naming the file and the key when a key does not exist, a value has
                the wrong type, a file is missing or is not valid YAML.
        """
        for filename, data in self._load_chain(cfg_filename):
            data = _translate_renamed(data, filename)
            self._note_set_keys(filename, [k for k, _ in _flat_items(data)])
            try:
                self.merge_from_other_cfg(type(self)(data))
            except (KeyError, ValueError, AssertionError) as e:
                msg = e.args[0] if e.args else str(e)
                raise ConfigError(f"{filename}: {msg}") from e

    def merge_from_list(self, cfg_list: list) -> None:
        """Merge ``[KEY, VALUE, ...]`` from the command line; errors name the key."""
        if len(cfg_list) % 2 != 0:
            raise ConfigError(
                f"Command-line opts must be KEY VALUE pairs, got an odd number: {cfg_list}"
            )
        for key, value in zip(cfg_list[0::2], cfg_list[1::2]):
            key = _resolve_key(str(key), "command-line opts")
            self._note_set_keys(COMMAND_LINE, [key])
            try:
                super().merge_from_list([key, value])
            except (KeyError, ValueError, AssertionError) as e:
                msg = e.args[0] if e.args else str(e)
                raise ConfigError(f"command-line opts: {key} {value}: {msg}") from e

    def _note_set_keys(self, source: str, keys: list[str]) -> None:
        self.__dict__.setdefault("_set_keys", []).append((source, list(keys)))

    def set_keys(self) -> list[tuple[str, list[str]]]:
        """``[(source, [full key, ...])]``: the keys each merge into this config set, in
        order; source is a file name or :data:`COMMAND_LINE` (copied by ``clone``)."""
        return list(self.__dict__.get("_set_keys", []))

    def dump(self, *args: Any, **kwargs: Any) -> str:  # noqa: D102 (same as fvcore)
        return super().dump(*args, **kwargs)


def configurable(init_func: Callable) -> Callable:
    """Let ``__init__`` take either explicit keyword arguments or a config.

    ``Model(cfg)`` calls ``Model.from_config(cfg)`` and passes the returned dict to
    ``__init__``; ``Model(a=..., b=...)`` calls ``__init__`` directly, as in Detectron2.
    """
    assert inspect.isfunction(init_func) and init_func.__name__ == "__init__"

    @functools.wraps(init_func)
    def wrapped(self, *args, **kwargs):
        cfg = args[0] if args and isinstance(args[0], _FvCfgNode) else kwargs.get("cfg")
        if isinstance(cfg, _FvCfgNode):
            from_config = getattr(type(self), "from_config", None)
            if from_config is None:
                raise AttributeError(f"{type(self).__name__} has no from_config(cfg) classmethod")
            explicit = from_config(*args, **kwargs)
            init_func(self, **explicit)
        else:
            init_func(self, *args, **kwargs)

    return wrapped
