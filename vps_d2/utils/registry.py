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
    is not a class name, or a second name of the same class).
    """

    def register_as(self, name: str) -> Callable[[Any], Any]:
        def deco(obj: Any) -> Any:
            self._do_register(name, obj)
            return obj

        return deco
