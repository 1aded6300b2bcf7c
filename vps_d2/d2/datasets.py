"""vps_d2's datasets in Detectron2's standard per-frame form (``detectron2.data``'s catalog).

vps_d2's own catalog (:mod:`vps_d2.data`) keeps one *video record* per video, which vps_d2's
loaders need. Detectron2's loaders, ``DatasetMapper``, ``SemSegEvaluator`` and
``COCOEvaluator`` need one dict per image, so :func:`register_frame_datasets` registers every
vps_d2 dataset under the same name in Detectron2's ``DatasetCatalog`` as the flattened view
(:func:`frame_dicts`), one dict per frame in temporal order::

    {
        "file_name": str, "height": int, "width": int,
        "image_id": int,                  # running index over the dataset's frames
        "video_id": str, "frame_index": int, "video_length": int, "frame_name": str,
        "sem_seg_file_name": str,         # 0 = background, 1 = polyp, 255 = ignore (no GT)
        "annotations": [                  # one per frame whose GT (or box file) has a polyp
            {"bbox": [x0, y0, x1, y1], "bbox_mode": BoxMode.XYXY_ABS,
             "category_id": int,          # the video's class (thing_classes index)
             "segmentation": [[x, y, ...], ...],   # the GT mask's outline (absent: no mask)
             "iscrowd": 0},
        ],
        "gt_file_name": str | None,       # the original mask (vps_d2's evaluators)
    }

Masks are read with vps_d2's rule (:func:`vps_d2.data.io.read_mask`: a mask whose maximum
is 1 is a 0/1 mask, otherwise foreground is > 128), so 0/1 and 0/255 GT both mean the same
thing. Detectron2 reads ``sem_seg_file_name`` literally (255 would be its ignore label), so
the label maps are written once, as 0/1 PNGs, into a cache (:func:`cache_dir`), never next to
the data; a frame without GT gets an all-ignore map. The bbox is the tight box of the GT mask
(its polygons and box agree, as in COCO); a frame with an empty mask but a box in the
dataset's ``bbox_annotation.json`` keeps that box, without segmentation. A video of unknown
class (``class_id`` -1) has no annotations (its frames still have ``sem_seg_file_name``).

The per-frame results (sizes, boxes, polygons, label paths) are cached per dataset in one
JSON file keyed by the masks' paths, sizes and modification times, so only the first
``DatasetCatalog.get`` of a split reads its masks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os

import cv2
import numpy as np
from detectron2.data import DatasetCatalog as D2DatasetCatalog
from detectron2.data import MetadataCatalog as D2MetadataCatalog
from detectron2.structures import BoxMode
from PIL import Image

from vps_d2.data import CLASS_NAMES, DatasetCatalog, MetadataCatalog
from vps_d2.data.io import mask_to_box, read_mask
from vps_d2.utils.file_io import atomic_write_bytes, atomic_write_json

__all__ = [
    "IGNORE_LABEL",
    "STUFF_CLASSES",
    "cache_dir",
    "d2_metadata",
    "frame_dicts",
    "register_frame_datasets",
]

logger = logging.getLogger(__name__)

#: Semantic classes of ``sem_seg`` outputs and label maps (index = label value).
STUFF_CLASSES = ("background", "polyp")
#: Label of pixels without ground truth in the label maps (Detectron2's default).
IGNORE_LABEL = 255
_STUFF_COLORS = [[0, 0, 0], [0, 220, 80]]
# One colour per pathological class (Visualizer / VideoVisualizer boxes and masks).
_THING_COLORS = [[230, 25, 75], [245, 130, 48], [255, 225, 25], [60, 180, 75], [0, 130, 200]]
_THING_COLORS += [[145, 30, 180]]
_CACHE_VERSION = 1
# Environment variable naming the cache folder of the label maps and frame indexes.
CACHE_ENV = "VPS_D2_CACHE"


def cache_dir() -> str:
    """``$VPS_D2_CACHE``, else ``$XDG_CACHE_HOME/vps_d2`` (``~/.cache/vps_d2``)."""
    path = os.environ.get(CACHE_ENV)
    if not path:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        path = os.path.join(base, "vps_d2")
    return os.path.abspath(path)


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def _write_png(path: str, image: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise RuntimeError(f"Could not encode the label map {path}")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write_bytes(path, buf.tobytes())


def _ignore_map(root: str, height: int, width: int) -> str:
    path = os.path.join(root, "sem_seg", f"ignore_{height}x{width}.png")
    if not os.path.isfile(path):
        _write_png(path, np.full((height, width), IGNORE_LABEL, np.uint8))
    return path


def _polygons(mask: np.ndarray) -> list[list[float]]:
    """Outer outlines of a bool (H, W) mask as COCO polygons along the pixels' edges.

    The contours of the mask upsampled 2x (nearest) map back to pixel corners
    (``(u + 1) // 2``), so the polygons rasterise to the mask itself (holes are filled)."""
    up = cv2.resize(mask.astype(np.uint8), None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(up, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [((c.reshape(-1) + 1) // 2).astype(float).tolist() for c in contours if len(c) >= 3]


def _frame_entry(root: str, gt: str) -> dict:
    """Read one GT mask -> {height, width, label, box (XYXY or None), polygons}."""
    mask = read_mask(gt)  # H, W bool, vps_d2's 0/1 rule
    key = _sha1(os.path.abspath(gt))
    label = os.path.join(root, "sem_seg", key[:2], key + ".png")
    _write_png(label, mask.astype(np.uint8))
    box = mask_to_box(mask)  # [x, y, w, h] or None
    return {
        "height": int(mask.shape[0]),
        "width": int(mask.shape[1]),
        "label": label,
        "box": None if box is None else [box[0], box[1], box[0] + box[2], box[1] + box[3]],
        "polygons": _polygons(mask) if box is not None else [],
    }


def _fingerprint(name: str, records: list[dict]) -> str:
    h = hashlib.sha1(f"{_CACHE_VERSION}|{name}".encode())
    for r in records:
        for f, gt in zip(r["file_names"], r["gt_file_names"]):
            st = os.stat(gt) if gt else None
            stat = (st.st_size, st.st_mtime_ns) if st else None
            h.update(repr((os.path.abspath(f), gt and os.path.abspath(gt), stat)).encode())
    return h.hexdigest()[:20]


def _load_entries(name: str, records: list[dict], root: str) -> list[dict]:
    """Per-frame entries of ``records`` (cached as ``<root>/frames/<name>-<fingerprint>.json``)."""
    index = os.path.join(root, "frames", f"{name}-{_fingerprint(name, records)}.json")
    if os.path.isfile(index):
        with open(index, encoding="utf-8") as f:
            entries = json.load(f)
        if all(os.path.isfile(e["label"]) for e in entries):
            return entries
    n = sum(len(r["file_names"]) for r in records)
    logger.info(
        "%s: reading %d masks once for Detectron2's frame dicts (cached in %s)", name, n, root
    )
    entries = []
    for r in records:
        for f, gt in zip(r["file_names"], r["gt_file_names"]):
            if gt:
                entries.append(_frame_entry(root, gt))
            else:
                with Image.open(f) as im:
                    w, h = im.size
                entries.append(
                    {"height": h, "width": w, "label": _ignore_map(root, h, w), "box": None}
                )
                entries[-1]["polygons"] = []
    os.makedirs(os.path.dirname(index), exist_ok=True)
    atomic_write_json(index, entries)
    return entries


def frame_dicts(name: str, records: list[dict] | None = None) -> list[dict]:
    """Detectron2's standard dicts of every frame of vps_d2's dataset ``name`` (module doc).

    Args:
        name: a dataset registered in vps_d2's :data:`~vps_d2.data.DatasetCatalog`.
        records: its video records (default: loaded from vps_d2's catalog).
    """
    if records is None:
        records = DatasetCatalog.get(name)
    entries = _load_entries(name, records, cache_dir())
    out: list[dict] = []
    k = 0
    for r in records:
        class_id = int(r.get("class_id", -1))
        for i, (f, gt) in enumerate(zip(r["file_names"], r["gt_file_names"])):
            e = entries[k]
            box = e["box"]
            if box is None and gt and class_id >= 0:
                b = r["boxes"][i]  # a box from bbox_annotation.json on an empty mask
                box = None if b is None else [b[0], b[1], b[0] + b[2], b[1] + b[3]]
            anns = []
            if box is not None and class_id >= 0:
                ann = {"bbox": box, "bbox_mode": BoxMode.XYXY_ABS, "category_id": class_id}
                if e["polygons"]:
                    ann["segmentation"] = e["polygons"]
                ann["iscrowd"] = 0
                anns.append(ann)
            out.append(
                {
                    "file_name": f,
                    "height": e["height"],
                    "width": e["width"],
                    "image_id": k,
                    "video_id": r["video_id"],
                    "frame_index": i,
                    "video_length": int(r["length"]),
                    "frame_name": r["frame_names"][i],
                    "sem_seg_file_name": e["label"],
                    "gt_file_name": gt,
                    "annotations": anns,
                }
            )
            k += 1
    if k != len(entries):
        raise RuntimeError(f"{name}: frame index out of date ({len(entries)} != {k} frames)")
    return out


def d2_metadata(name: str) -> dict:
    """Detectron2 metadata of ``name``: vps_d2's (``class_names`` as ``thing_classes``) plus
    ``stuff_classes``, ``ignore_label``, colours, ``thing_dataset_id_to_contiguous_id`` and
    ``evaluator_type`` "sem_seg" (what Detectron2's own tools pick an evaluator by; vps_d2's
    evaluators are chosen by TEST.EVALUATORS)."""
    md = MetadataCatalog.get(name).as_dict_without_name()
    md.pop("class_names", None)
    md.update(
        thing_classes=list(CLASS_NAMES),
        thing_colors=[list(c) for c in _THING_COLORS],
        thing_dataset_id_to_contiguous_id={i: i for i in range(len(CLASS_NAMES))},
        stuff_classes=list(STUFF_CLASSES),
        stuff_colors=[list(c) for c in _STUFF_COLORS],
        ignore_label=IGNORE_LABEL,
        evaluator_type="sem_seg",
    )
    return md


def _loader(name: str):
    def load() -> list[dict]:
        dicts = frame_dicts(name)
        _sync_metadata(name)  # the root is resolved when the dataset is loaded
        return dicts

    load.__name__ = f"frame_dicts_{name}"
    return load


def _sync_metadata(name: str) -> None:
    wanted = d2_metadata(name)
    current = D2MetadataCatalog.get(name).as_dict()
    current.pop("name", None)
    if current != wanted:
        D2MetadataCatalog.remove(name)
        D2MetadataCatalog.get(name).set(**wanted)


def register_frame_datasets() -> list[str]:
    """Register every vps_d2 dataset in Detectron2's catalogs as its per-frame view, with
    Detectron2's metadata (re-synchronised at every call; names Detectron2 already has for
    something else are skipped, logged). Returns the names newly registered."""
    done = []
    for name in DatasetCatalog.list():
        if name not in D2DatasetCatalog.list():
            D2DatasetCatalog.register(name, _loader(name))
            done.append(name)
        elif getattr(D2DatasetCatalog[name], "__name__", "") != f"frame_dicts_{name}":
            logger.info("Detectron2 already has a dataset %s: skipped", name)
            continue
        _sync_metadata(name)
    return done
