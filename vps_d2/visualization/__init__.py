"""Drawing: overlays, side-by-side GT, contact sheets, worst-case dumps
(:mod:`.visualizer`, OpenCV) and several methods' curves against the threshold and
precision-recall (:mod:`.curves`, matplotlib)."""

from . import curves
from .curves import (
    precision_recall_figure,
    save_figure,
    threshold_curves_figure,
)
from .visualizer import *  # noqa: F403  (the public names are visualizer.__all__)
from .visualizer import __all__ as _visualizer_all

__all__ = [
    *_visualizer_all,
    "curves",
    "precision_recall_figure",
    "save_figure",
    "threshold_curves_figure",
]
