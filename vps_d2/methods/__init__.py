"""One folder per method (Detectron2's projects/): each holds its code, configs/, README.md,
benchmark.py and tests/, and registers its model, config section and parts when imported.

Importing this package imports every method folder in it, so adding a built-in method
touches no file outside its folder (only the methods table of README.md lists it).
"""

import importlib
import pkgutil

__all__ = ["BUILTIN_METHODS"]

#: Names of the built-in method packages, sorted (e.g. "diff_vps", "frame_baseline").
BUILTIN_METHODS = tuple(
    sorted(m.name for m in pkgutil.iter_modules(__path__) if m.ispkg and not m.name.startswith("_"))
)
for _name in BUILTIN_METHODS:
    importlib.import_module(f"{__name__}.{_name}")
