"""Module-level lazy imports, for start-up speed only.

``engine = lazy_import("vps_d2.engine")`` at the top of a module binds a stand-in that imports
``vps_d2.engine`` at its first attribute access, so ``import vps_d2`` and a command's
``--help`` do not pay for torch, timm, the methods or the evaluation. Use it at module level
only, like an import statement: tests/test_import_structure.py reads these calls as imports
(the layering rules apply to them) and refuses them inside functions.
"""

from __future__ import annotations

import importlib
import types

__all__ = ["lazy_import", "load"]


class _LazyModule(types.ModuleType):
    """Stand-in for the module ``__name__``: the first attribute read imports it."""

    def __getattr__(self, attr: str):
        return getattr(load(self), attr)

    def __dir__(self) -> list[str]:
        return dir(load(self))

    def __repr__(self) -> str:
        return f"<lazy module {self.__name__!r}>"


def lazy_import(name: str) -> types.ModuleType:
    """The module ``name`` if it is imported already, else a stand-in importing it on use."""
    module = importlib.sys.modules.get(name)
    return module if module is not None else _LazyModule(name)


def load(module: types.ModuleType) -> types.ModuleType:
    """The real module behind ``module`` (a stand-in from :func:`lazy_import`), imported now."""
    return importlib.import_module(module.__name__)
