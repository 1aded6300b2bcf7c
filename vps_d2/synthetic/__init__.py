"""The synthetic, colonoscopy-like sample dataset (SUN-SEG layout, no patient data).

- :mod:`.plan`: which clips, classes and frame stems (:func:`plan_sample_dataset`);
- :mod:`.render`: drawing a clip (:func:`render_clip`);
- :mod:`.sample_dataset`: writing the dataset safely (:func:`make_sample_dataset`).

It sits at the level of :mod:`vps_d2.data` (it uses its class names, frame order and
SUN-SEG table names); nothing in data, modeling or below imports it.
"""

from .plan import SPLITS, ClipPlan, plan_sample_dataset
from .render import render_clip
from .sample_dataset import make_sample_dataset, mask_to_box

__all__ = [
    "SPLITS",
    "ClipPlan",
    "make_sample_dataset",
    "mask_to_box",
    "plan_sample_dataset",
    "render_clip",
]
