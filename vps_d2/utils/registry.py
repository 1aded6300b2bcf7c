"""fvcore's Registry plus registration under a given name (an alias or a config value)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fvcore.common.registry import Registry as _FvRegistry

__all__ = ["Registry"]

logger = logging.getLogger(__name__)


class Registry(_FvRegistry):
    """fvcore Registry (what Detectron2 uses) with :meth:`register_as`.

    ``@REG.register()`` registers under the class name, as in Detectron2;
    ``@REG.register_as("online")`` registers under a chosen name (e.g. a config value that
    is not a class name, or a second name of the same class); ``REG.get_for(name, key)``
    is ``get`` with an error that names the config key; ``REG.register_alias(old, name)``
    keeps a former name working (one deprecation warning, never listed among the names).
    """

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._aliases: dict[str, str] = {}

    def register_alias(self, alias: str, name: str) -> None:
        """``get(alias)`` returns the object registered as ``name`` (a deprecated name)."""
        self._aliases[alias] = name

    def get(self, name: str) -> Any:
        if name not in self._obj_map and name in self._aliases:
            new = self._aliases[name]
            logger.warning("%s name %r is deprecated: use %r", self._name, name, new)
            name = new
        return super().get(name)

    def __contains__(self, name: str) -> bool:
        return super().__contains__(name) or name in self._aliases

    def get_for(self, name: str, key: str, hint: str = "") -> Any:
        """``get(name)``, or a KeyError naming the config ``key`` and the registered names."""
        try:
            return self.get(name)
        except KeyError as e:
            raise KeyError(
                f"{key} = {name!r} is not registered; available: {sorted(k for k, _ in self)}"
                + (f" ({hint})" if hint else "")
            ) from e

    def register_as(self, name: str) -> Callable[[Any], Any]:
        def deco(obj: Any) -> Any:
            self._do_register(name, obj)
            return obj

        return deco
