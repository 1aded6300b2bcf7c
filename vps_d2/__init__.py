"""vps_d2: video polyp segmentation in Detectron2 style.

``import vps_d2`` is cheap: it imports no torch model, method, timm or evaluation code. The
sub-packages load on first use (``vps_d2.modeling``, ``from vps_d2.engine import ...``), and
the built-in methods register their config sections, models and parts the first time a
config is made (:func:`vps_d2.config.add_vps_config`), so every process (DDP workers,
data-loader workers) that builds a config or a model sees the same registries.
:func:`register_all` imports everything at once.
"""

from . import config
from .utils.lazy import lazy_import, load

__version__ = "0.1.0"

data = lazy_import("vps_d2.data")
methods = lazy_import("vps_d2.methods")
modeling = lazy_import("vps_d2.modeling")


def register_all() -> None:
    """Import the data, modeling and every built-in method (what they register, registered)."""
    for module in (data, modeling, methods):
        load(module)


# The methods register their config sections when imported: add_vps_config imports them first.
config.register_section_provider(lambda: load(methods))
