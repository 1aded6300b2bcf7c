"""Synthetic datasets written by a generator (``tools/synthesize.py``), registered by folder.

A synthetic dataset is a SUN-SEG-layout split (``<folder>/<split_dir>/{Frame,GT}/<video>/``)
plus a manifest ``<folder>/synthetic.json`` that names it::

    {"name": "vps_sample_train_arsdm", "split_dir": "TrainDataset", "complete": true,
     "source": "vps_sample_train", "generator": "ArSDM", ...}

``DATASETS.SYNTHETIC`` lists such folders; the engine registers each (in every process,
through :func:`~vps_d2.data.datasets.configure_datasets`) under its manifest's name, so that
``DATASETS.TRAIN: ("vps_sample_train", "vps_sample_train_arsdm")`` trains any method on
real + synthetic frames. Records are those of :func:`~.sun_seg.load_sun_seg`: class ids -1
(a generated frame shows no pathological class), boxes from the masks.
"""

from __future__ import annotations

import json
import logging
import os

from .. import CLASS_NAMES
from ..catalog import DatasetCatalog, MetadataCatalog
from .folder import _resolve_folder, update_metadata
from .sun_seg import load_sun_seg

__all__ = ["SYNTHETIC_MANIFEST", "read_synthetic_manifest", "register_synthetic_dataset"]

logger = logging.getLogger(__name__)

#: File name of the manifest of a synthetic dataset folder.
SYNTHETIC_MANIFEST = "synthetic.json"

# name -> folder of the synthetic datasets registered in this process.
_REGISTERED: dict[str, str] = {}


def read_synthetic_manifest(folder: str, key: str = "DATASETS.SYNTHETIC") -> dict:
    """The manifest of a synthetic dataset folder; one-line errors naming ``key``."""
    path = os.path.join(folder, SYNTHETIC_MANIFEST)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{key}: {folder} holds no {SYNTHETIC_MANIFEST}: not a synthetic dataset written "
            "by tools/synthesize.py (or the folder is wrong)"
        )
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"{key}: cannot read {path}: {e}") from e
    if not isinstance(manifest, dict) or not manifest.get("name"):
        raise ValueError(f"{key}: {path} names no dataset ('name' is missing)")
    if not manifest.get("complete", False):
        raise ValueError(
            f"{key}: the synthesis into {folder} did not finish ({path} says complete: false); "
            "rerun the same tools/synthesize.py command to resume it"
        )
    return manifest


def register_synthetic_dataset(folder: str, key: str = "DATASETS.SYNTHETIC") -> str:
    """Register the synthetic dataset in ``folder`` under its manifest's name; returns it.

    A relative ``folder`` is looked up under the datasets root, then the current directory.
    Registering the same folder again is a no-op; another folder under a registered name
    is an error naming ``key``.
    """
    path = _resolve_folder(folder)
    manifest = read_synthetic_manifest(path, key)
    name = str(manifest["name"])
    split_dir = str(manifest.get("split_dir", "TrainDataset"))
    if _REGISTERED.get(name) == path:
        return name
    if name in DatasetCatalog:
        raise KeyError(
            f"{key}: {folder} is the synthetic dataset {name!r}, but that name is already "
            f"registered ({_REGISTERED.get(name, 'a built-in or user dataset')})"
        )

    def _load() -> list[dict]:
        return load_sun_seg(path, split_dir, name)

    DatasetCatalog.register(name, _load)
    _REGISTERED[name] = path
    MetadataCatalog.get(name).set(
        evaluator_type="vps", split=split_dir, class_names=list(CLASS_NAMES), synthetic=True
    )
    update_metadata(
        name,
        root=path,
        image_root=os.path.join(path, split_dir, "Frame"),
        gt_root=os.path.join(path, split_dir, "GT"),
        source=str(manifest.get("source", "")),
        generator=str(manifest.get("generator", "")),
    )
    logger.info("Registered synthetic dataset %r (%s)", name, path)
    return name
