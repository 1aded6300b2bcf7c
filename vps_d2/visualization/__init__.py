"""Drawing predictions: overlays, side-by-side GT, contact sheets, worst-case dumps."""

from .visualizer import *  # noqa: F403  (the public names are visualizer.__all__)
from .visualizer import __all__  # noqa: F401
