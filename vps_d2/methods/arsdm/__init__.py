"""ArSDM (MICCAI 2023): mask-conditioned colonoscopy frame synthesis with an adaptive
diffusion loss and refinement through a frozen vps_d2 segmenter; synthetic training data
for every method (tools/synthesize.py)."""

from . import config, train_step  # noqa: F401  (MODEL.ARSDM; ArSDMTrainStep)
from .model import ArSDM

__all__ = ["ArSDM"]
