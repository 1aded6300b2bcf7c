"""fvcore's Registry plus registration under a given name (an alias or a config value)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fvcore.common.registry import Registry as _FvRegistry

__all__ = ["Registry"]


class Registry(_FvRegistry):
    """fvcore Registry (what Detectron2 uses) with :meth:`register_as`.

    ``@REG.register()`` registers under the class name, as in Detectron2;
    ``@REG.register_as("online")`` registers under a chosen name (e.g. a config value that
    is not a class name, or a second name of the same class); ``REG.get_for(name, key)``
    is ``get`` with an error that names the config key.
    """

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
