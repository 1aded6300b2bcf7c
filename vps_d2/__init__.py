"""vps_d2: video polyp segmentation in Detectron2 style.

Importing the package registers every dataset, backbone, meta-architecture and config
section, so processes spawned for DDP and data-loader workers see the same registries.
"""

from . import (  # noqa: F401
    config,
    data,
    methods,  # noqa: F401
    modeling,
)

__version__ = "0.1.0"
