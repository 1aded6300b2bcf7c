"""Dataset readers; importing this package registers every built-in dataset name.

See :mod:`vps_d2.data.datasets.builtin` for the names and the datasets root,
:mod:`.sun_seg`, :mod:`.cvc612` and :mod:`.folder` for the layouts, and
``datasets/README.md`` for how to obtain and prepare the data.
"""

from .builtin import (
    BUILTIN_DATASETS,
    HOLDOUT_VAL,
    configure_datasets,
    exclude_holdout,
    get_datasets_root,
    is_validation_split,
)
from .cvc612 import CVC612_SEQUENCES, find_cvc612_files, load_cvc612, validate_cvc612_splits
from .folder import MaskBoxes, load_video_folder, register_video_folder, scan_video_folder
from .sun_seg import SUN_SEG_SPLITS, holdout_videos, load_sun_seg
from .synthetic import SYNTHETIC_MANIFEST, read_synthetic_manifest, register_synthetic_dataset

__all__ = [
    "HOLDOUT_VAL",
    "exclude_holdout",
    "is_validation_split",
    "BUILTIN_DATASETS",
    "CVC612_SEQUENCES",
    "MaskBoxes",
    "SUN_SEG_SPLITS",
    "SYNTHETIC_MANIFEST",
    "configure_datasets",
    "find_cvc612_files",
    "get_datasets_root",
    "holdout_videos",
    "load_cvc612",
    "load_sun_seg",
    "load_video_folder",
    "read_synthetic_manifest",
    "register_synthetic_dataset",
    "register_video_folder",
    "scan_video_folder",
    "validate_cvc612_splits",
]
