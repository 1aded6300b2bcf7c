"""Module-level lazy imports, for start-up speed only.

``engine = lazy_import("vps_d2.engine")`` at the top of a module binds a stand-in that imports
``vps_d2.engine`` at its first attribute access, so ``import vps_d2`` and a command's
``--help`` do not pay for torch, timm, the methods or the evaluation. Use it at module level
only, like an import statement: tests/test_import_structure.py reads these calls as imports
(the layering rules apply to them) and refuses them inside functions.

A Ctrl-C while such an import runs is held until the import is over, then raised as
``KeyboardInterrupt``: interrupting an import midway leaves half-initialised modules behind
(NumPy's lazy ``numpy.exceptions`` then recurses without end inside SciPy's import), and
the command's own ``except KeyboardInterrupt`` would never see it.
"""

from __future__ import annotations

import contextlib
import importlib
import signal
import sys
import threading
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
    module = sys.modules.get(name)
    return module if module is not None else _LazyModule(name)


@contextlib.contextmanager
def _ctrl_c_after_import():
    """Hold a SIGINT that arrives inside the block; raise it as KeyboardInterrupt at the end.

    Only where Python's own handler is installed (the main thread of a command that did not
    set another one); an exception from the block wins over a held Ctrl-C.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    held = []
    signal.signal(signal.SIGINT, lambda *_: held.append(True))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if held:
        raise KeyboardInterrupt


def load(module: types.ModuleType) -> types.ModuleType:
    """The real module behind ``module`` (a stand-in from :func:`lazy_import`), imported now
    (a Ctrl-C meanwhile is raised once the import is over)."""
    name = module.__name__
    if name in sys.modules:
        return sys.modules[name]
    with _ctrl_c_after_import():
        return importlib.import_module(name)
