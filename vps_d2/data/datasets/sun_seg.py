"""SUN-SEG (re-organized release) reader; also reads the synthetic ``vps-sample`` data.

Layout of one split (``root/<split_dir>``, e.g. ``SUN-SEG/TestEasyDataset/Seen``)::

    Frame/<case>/<stem>.jpg              # frames (SUN stems, ordered by frame_order)
    GT/<case>/<stem>.png                 # masks 0/255 (0/1 accepted, see vps_d2.data.io)
    Classification/classification.txt    # optional: "<frame>.jpg<TAB><class>" per line
    Detection/bbox_annotation.json       # optional: COCO-like boxes [x, y, w, h]

Classes: ``classification.txt`` is looked for in the split folder, the dataset root and
``TrainDataset/`` (some copies ship it there only); frames are matched by stem (and case
when the line names one). Class names are parsed case-insensitively (spaces and hyphens =
underscores); ``invasive_carcinoma`` is read as ``invasive_cancer``. A video's class is the
class of its frames (the most frequent one, with a warning, if they disagree); a video with
no classified frame has ``class_id`` -1 and ``class_name`` "".

Boxes: ``bbox_annotation.json`` is looked for in the same places. Its ``images`` entries
({id, case_name, file_name}) are linked to the boxes under ``annotation`` (or
``annotations``) by ``image_id`` (or the box's own ``id``), and to frames by (case_name,
file_name stem). Several boxes of one image are merged into their enclosing box. Frames
without a box from the file (or every frame, when there is no file) get their box from the
GT mask lazily (:class:`~vps_d2.data.datasets.folder.MaskBoxes`), so loading never reads
every mask.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import Counter

import numpy as np

from .. import CLASS_NAMES
from ..frame_order import case_sort_key
from ..io import IMAGE_EXTENSIONS
from .folder import MaskBoxes, find_subdir, make_video_record, scan_video_folder

__all__ = [
    "SUN_SEG_SPLITS",
    "holdout_videos",
    "load_bbox_annotations",
    "load_classification",
    "load_sun_seg",
    "parse_class_name",
    "video_of_case",
]

logger = logging.getLogger(__name__)

# Registered-name suffix -> split folder inside the SUN-SEG root.
SUN_SEG_SPLITS = {
    "train": "TrainDataset",
    "easy_seen": "TestEasyDataset/Seen",
    "easy_unseen": "TestEasyDataset/Unseen",
    "hard_seen": "TestHardDataset/Seen",
    "hard_unseen": "TestHardDataset/Unseen",
}

_CLASS_ALIASES = {"invasive_carcinoma": "invasive_cancer"}


def parse_class_name(text: str) -> int | None:
    """CLASS_NAMES index of a class spelling (any case, spaces/hyphens as underscores)."""
    key = "_".join(text.strip().lower().replace("-", " ").replace("_", " ").split())
    key = _CLASS_ALIASES.get(key, key)
    try:
        return CLASS_NAMES.index(key)
    except ValueError:
        return None


def _stem_and_case(name: str) -> tuple[str, str]:
    """``"case1_1/abc.jpg"`` -> ("abc", "case1_1"); ``"abc.jpg"`` -> ("abc", "")."""
    name = name.strip().replace("\\", "/")
    parts = [p for p in name.split("/") if p]
    base = parts[-1] if parts else ""
    stem, ext = os.path.splitext(base)
    if ext.lower() not in IMAGE_EXTENSIONS:
        stem = base
    case = parts[-2] if len(parts) >= 2 else ""
    return stem, case


def load_classification(path: str) -> dict[tuple[str, str], int]:
    """Parse ``classification.txt`` -> {(case or "", frame stem): class id}.

    Lines are ``<frame name><TAB><class>`` (whitespace accepted when there is no tab);
    blank lines and lines starting with ``#`` are skipped.

    Raises:
        ValueError: naming the file and line for a malformed line or an unknown class.
    """
    out: dict[tuple[str, str], int] = {}
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            fields = line.split("\t") if "\t" in line else line.rsplit(None, 1)
            fields = [x.strip() for x in fields if x.strip()]
            if len(fields) != 2:
                raise ValueError(
                    f"{path}:{lineno}: expected '<frame name><TAB><class>', got {line!r}"
                )
            cls = parse_class_name(fields[1])
            if cls is None:
                raise ValueError(
                    f"{path}:{lineno}: unknown class {fields[1]!r}; expected one of "
                    f"{', '.join(CLASS_NAMES)} (or invasive_carcinoma), any case"
                )
            stem, case = _stem_and_case(fields[0])
            out[(case, stem)] = cls
    return out


def _box_of(ann: object, path: str) -> list[float]:
    bbox = ann.get("bbox") if isinstance(ann, dict) else None
    ok = isinstance(bbox, (list, tuple)) and len(bbox) == 4
    if ok:
        try:
            box = [float(v) for v in bbox]
        except (TypeError, ValueError):
            ok = False
    if not ok or not all(math.isfinite(v) for v in box) or box[2] < 0 or box[3] < 0:
        raise ValueError(
            f"{path}: annotation {ann!r} has no valid 'bbox' [x_min, y_min, w, h] "
            f"(4 finite numbers, w and h >= 0)"
        )
    return box


def load_bbox_annotations(path: str) -> dict[tuple[str, str], list[float]]:
    """Parse ``bbox_annotation.json`` -> {(case_name or "", frame stem): [x, y, w, h]}.

    Boxes are listed under ``annotation`` (the documented key) and/or ``annotations``; each
    names its image by ``image_id``, else by its own ``id`` (the release numbers a box like
    its image). Boxes of one image are merged into the box enclosing them.

    Raises:
        ValueError: naming the file for invalid JSON, missing keys or a malformed box.
    """
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON: {e}") from e
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ValueError(f"{path}: expected a JSON object with an 'images' list")
    anns = []
    for key in ("annotation", "annotations"):
        if key in data:
            if not isinstance(data[key], list):
                raise ValueError(f"{path}: '{key}' must be a list of {{id, bbox}}")
            anns.extend(data[key])
    if not anns and "annotation" not in data and "annotations" not in data:
        raise ValueError(
            f"{path}: no 'annotation' (or 'annotations') list of boxes; keys found: "
            f"{sorted(data)}"
        )
    images: dict[object, tuple[str, str]] = {}
    for im in data["images"]:
        if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
            raise ValueError(f"{path}: image entry {im!r} needs 'id' and 'file_name'")
        stem, case_in_name = _stem_and_case(str(im["file_name"]))
        images[im["id"]] = (str(im.get("case_name") or case_in_name), stem)
    out: dict[tuple[str, str], list[float]] = {}
    unknown = 0
    for ann in anns:
        box = _box_of(ann, path)
        ref = ann.get("image_id", ann.get("id"))
        key = images.get(ref)
        if key is None:
            unknown += 1
            continue
        if key in out:  # merge into the enclosing box
            x0, y0, w0, h0 = out[key]
            x1, y1 = min(x0, box[0]), min(y0, box[1])
            x2, y2 = max(x0 + w0, box[0] + box[2]), max(y0 + h0, box[1] + box[3])
            box = [x1, y1, x2 - x1, y2 - y1]
        out[key] = box
    if unknown:
        logger.warning("%s: %d box(es) name no image in 'images'; ignored", path, unknown)
    return out


def _annotation_files(root: str, split_dir: str, sub: str, filename: str) -> list[str]:
    """Existing ``<dir>/<sub>/<filename>`` for dir in (split, dataset root, TrainDataset)."""
    found, seen = [], set()
    for d in (os.path.join(root, split_dir), root, os.path.join(root, "TrainDataset")):
        sub_dir = find_subdir(d, [sub]) if os.path.isdir(d) else None
        if sub_dir is None:
            continue
        path = os.path.join(sub_dir, filename)
        if not os.path.isfile(path):
            alt = [e for e in os.listdir(sub_dir) if e.lower() == filename.lower()]
            if not alt:
                continue
            path = os.path.join(sub_dir, alt[0])
        real = os.path.realpath(path)
        if real not in seen:
            seen.add(real)
            found.append(path)
    return found


def _lookup(table: dict[tuple[str, str], object], case: str, stem: str):
    v = table.get((case, stem))
    return table.get(("", stem)) if v is None else v


def load_sun_seg(root: str, split_dir: str, dataset_name: str) -> list[dict]:
    """Video records of one SUN-SEG split (one record per case, see :mod:`vps_d2.data`).

    Args:
        root: the SUN-SEG folder (holding ``TrainDataset/`` ...).
        split_dir: e.g. "TrainDataset" or "TestEasyDataset/Seen".
        dataset_name: the registered name written into every record.
    """
    split_path = os.path.join(root, split_dir)
    if not os.path.isdir(split_path):
        raise FileNotFoundError(
            f"{dataset_name}: split folder not found: {split_path}. Set DATASETS.ROOT (or "
            f"$VPS_DATASETS) to the folder holding {os.path.basename(root)}/; see "
            f"datasets/README.md"
        )
    videos = scan_video_folder(split_path)

    classes: dict[tuple[str, str], int] = {}
    for path in reversed(
        _annotation_files(root, split_dir, "Classification", "classification.txt")
    ):
        classes.update(load_classification(path))  # the split's own file wins
    boxes: dict[tuple[str, str], list[float]] = {}
    for path in reversed(_annotation_files(root, split_dir, "Detection", "bbox_annotation.json")):
        boxes.update(load_bbox_annotations(path))
    if not boxes:
        logger.info("%s: no Detection/bbox_annotation.json; boxes come from the masks", split_path)

    records = []
    for v in videos:
        case, stems = v["video_id"], v["frame_names"]
        counts = Counter(c for s in stems if (c := _lookup(classes, case, s)) is not None)
        class_id, class_name = -1, ""
        if counts:
            class_id = counts.most_common(1)[0][0]
            class_name = CLASS_NAMES[class_id]
            if len(counts) > 1:
                logger.warning(
                    "%s: frames of video '%s' have several classes %s; using %s",
                    split_path,
                    case,
                    {CLASS_NAMES[k]: n for k, n in counts.items()},
                    class_name,
                )
        known = {i: b for i, s in enumerate(stems) if (b := _lookup(boxes, case, s)) is not None}
        if len(known) == len(stems):
            video_boxes = [known[i] for i in range(len(stems))]
        else:
            video_boxes = MaskBoxes(v["gt_file_names"], known)
        records.append(
            make_video_record(dataset_name, split_dir, v, class_id, class_name, video_boxes)
        )
    return records


def video_of_case(case: str) -> str:
    """The source video of a clip: ``case12_3`` -> ``case12``; other names are their own."""
    key = case_sort_key(case)
    return f"case{key[1]}" if key[0] == 0 else case


def holdout_videos(cases: list[str], fraction: float, seed: int) -> set[str]:
    """Cases held out for validation: whole source videos, chosen deterministically.

    ``round(fraction * number of videos)`` videos (at least one) are drawn with
    ``numpy.random.RandomState(seed)`` from the videos sorted by number; every clip
    (``case<N>_<M>``) of a chosen video ``case<N>`` is held out. Returns their case names.

    Raises:
        ValueError: ``fraction`` outside [0, 1), or nothing would be left for training.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"DATASETS.SUN_SEG.HOLDOUT_VAL must be in [0, 1), got {fraction}")
    if fraction == 0.0:
        return set()
    videos = sorted({video_of_case(c) for c in cases}, key=case_sort_key)
    n_val = max(1, int(round(fraction * len(videos))))
    if n_val >= len(videos):
        raise ValueError(
            f"DATASETS.SUN_SEG.HOLDOUT_VAL={fraction} holds out {n_val} of {len(videos)} "
            f"source videos, leaving none for training"
        )
    order = np.random.RandomState(seed).permutation(len(videos))
    chosen = {videos[i] for i in order[:n_val]}
    return {c for c in cases if video_of_case(c) in chosen}
