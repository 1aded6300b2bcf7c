"""The datasets root: DATASETS.ROOT, else $VPS_DATASETS, else $DETECTRON2_DATASETS, else
"datasets" (set from the config by :func:`~vps_d2.data.datasets.configure_datasets`)."""

from __future__ import annotations

import os

__all__ = ["get_datasets_root", "set_datasets_root"]

_ROOT: dict[str, str] = {}


def set_datasets_root(root: str) -> None:
    """Use ``root`` (DATASETS.ROOT; "" = the environment variables) from now on."""
    _ROOT["root"] = str(root)


def get_datasets_root() -> str:
    """DATASETS.ROOT (via configure_datasets), $VPS_DATASETS, $DETECTRON2_DATASETS or
    "datasets", as an absolute path."""
    root = (
        _ROOT.get("root")
        or os.environ.get("VPS_DATASETS")
        or os.environ.get("DETECTRON2_DATASETS")
        or "datasets"
    )
    return os.path.abspath(os.path.expanduser(root))
