"""SUN-SEG (re-organized release) reader; also reads the synthetic ``vps-sample`` data.

Layout of one split (``root/<split_dir>``, e.g. ``SUN-SEG/TestEasyDataset/Seen``)::

    Frame/<case>/<stem>.jpg              # frames (SUN stems, ordered by frame_order)
    GT/<case>/<stem>.png                 # masks 0/255 (0/1 accepted, see vps_d2.data.io)
    Classification/classification.txt    # optional: "<frame>.jpg<TAB><class>" per line
    Classification/cases.csv             # optional: case-level table "case,class_name"
    Detection/bbox_annotation.json       # optional: COCO-like boxes [x, y, w, h]

Classes: ``classification.txt`` is looked for in the split folder, the dataset root and
``TrainDataset/`` (some copies ship it there only); frames are matched by stem (and case
when the line names one). Class names are parsed case-insensitively (spaces and hyphens =
underscores); ``invasive_carcinoma`` is read as ``invasive_cancer``. A video's class is the
class of its frames (the most frequent one, with a warning, if they disagree).

A video with no classified frame takes its class from a case-level table: first
``Classification/cases.csv`` (same search; CSV with a header naming at least ``case`` and
``class_name``, ``#`` comment lines allowed; the sample data writes one per test split), then,
when ``packaged_case_classes`` is set (the built-in ``sun_seg_*`` test splits), the table of
the 285 SUN-SEG positive cases shipped with vps_d2 (:func:`sun_seg_cases`, package data
``sun_seg_cases.csv``). Case names are matched by number: ``case12_3``, ``Case12_3``,
``case_12_3`` and the benchmark ID ``12_3`` are the same case; a case missing from a table
whose other clips of the same source video ``case12`` all share one class gets that class
(with a warning). A case found nowhere has ``class_id`` -1 and ``class_name`` "" (a warning
lists such cases whenever a case table was consulted).

Boxes: ``bbox_annotation.json`` is looked for in the same places. Its ``images`` entries
({id, case_name, file_name}) are linked to the boxes under ``annotation`` (or
``annotations``) by ``image_id`` (or the box's own ``id``), and to frames by (case_name,
file_name stem). Several boxes of one image are merged into their enclosing box. Frames
without a box from the file (or every frame, when there is no file) get their box from the
GT mask lazily (:class:`~vps_d2.data.datasets.folder.MaskBoxes`), so loading never reads
every mask.
"""

from __future__ import annotations

import csv
import functools
import importlib.resources
import json
import logging
import math
import os
import re
from collections import Counter

import numpy as np

from .. import CLASS_NAMES
from ..frame_order import case_sort_key
from ..io import IMAGE_EXTENSIONS
from .folder import MaskBoxes, find_subdir, make_video_record, scan_video_folder

__all__ = [
    "CASE_TABLE_FILE",
    "SUN_SEG_SPLITS",
    "case_key",
    "holdout_videos",
    "load_bbox_annotations",
    "load_case_table",
    "load_classification",
    "load_sun_seg",
    "parse_case_table",
    "parse_class_name",
    "sun_seg_case_classes",
    "sun_seg_cases",
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

# Case-level class table looked for in a split's Classification/ folder (see module doc).
CASE_TABLE_FILE = "cases.csv"
# The 285 SUN-SEG positive cases (package data of vps_d2.data.datasets), made by
# tools/make_sun_seg_case_table.py from the benchmark's list; class names are CLASS_NAMES.
_PACKAGED_CASES = "sun_seg_cases.csv"
# "case12_3", "Case12_3", "case_12_3", "12_3" -> (12, 3); "case12", "12" -> (12, None).
_CASE_ID_RE = re.compile(r"^(?:case)?[_-]?(\d+)(?:[_-](\d+))?$", re.IGNORECASE)
_MAX_LISTED = 20  # most case names a warning lists


def parse_class_name(text: str) -> int | None:
    """CLASS_NAMES index of a class spelling (any case, spaces/hyphens as underscores).

    A parenthesised remark is ignored (``"Invasive cancer (T1b)"`` -> invasive_cancer).
    """
    text = re.sub(r"\([^)]*\)", " ", text)
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
            f"{path}: no 'annotation' (or 'annotations') list of boxes; keys found: {sorted(data)}"
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


def parse_case_table(text: str, source: str) -> list[dict[str, str]]:
    """Rows of a case-level class table (CSV text) as dicts of the header's columns.

    Lines starting with ``#`` and blank lines are skipped; the first other line is the
    header and must name ``case`` and ``class_name`` (``class`` is accepted for the latter).
    Every row gets ``"class_id"`` (int, the CLASS_NAMES index) and its ``"class_name"``
    normalised to the CLASS_NAMES spelling.

    Raises:
        ValueError: naming ``source`` and the line for a missing column, a row with the
            wrong number of cells, an unknown class or a case listed twice.
    """
    lines = [(i, ln) for i, ln in enumerate(text.splitlines(), 1) if ln.strip()]
    lines = [(i, ln) for i, ln in lines if not ln.lstrip().startswith("#")]
    if not lines:
        raise ValueError(f"{source}: empty case table (expected a header 'case,class_name')")
    (head_no, head), body = lines[0], lines[1:]
    header = [h.strip().lower() for h in next(csv.reader([head]))]
    cls_col = "class_name" if "class_name" in header else "class"
    if "case" not in header or cls_col not in header:
        raise ValueError(
            f"{source}:{head_no}: the header must name the columns 'case' and 'class_name', "
            f"got {header}"
        )
    rows, seen = [], set()
    for lineno, line in body:
        cells = [c.strip() for c in next(csv.reader([line]))]
        if len(cells) != len(header):
            raise ValueError(
                f"{source}:{lineno}: expected {len(header)} cells ({','.join(header)}), "
                f"got {len(cells)}: {line!r}"
            )
        row = dict(zip(header, cells))
        class_id = parse_class_name(row[cls_col])
        if class_id is None:
            raise ValueError(
                f"{source}:{lineno}: unknown class {row[cls_col]!r}; expected one of "
                f"{', '.join(CLASS_NAMES)} (any case)"
            )
        if not row["case"]:
            raise ValueError(f"{source}:{lineno}: empty case name")
        if row["case"] in seen:
            raise ValueError(f"{source}:{lineno}: case {row['case']!r} is listed twice")
        seen.add(row["case"])
        row["class_name"] = CLASS_NAMES[class_id]
        row["class_id"] = class_id
        rows.append(row)
    return rows


def load_case_table(path: str) -> dict[str, int]:
    """Parse a case-level class table file (see :func:`parse_case_table`) -> {case: class id}."""
    with open(path, encoding="utf-8-sig") as f:
        rows = parse_case_table(f.read(), path)
    return {r["case"]: r["class_id"] for r in rows}


@functools.lru_cache(maxsize=1)
def _packaged_rows() -> tuple[dict, ...]:
    resource = importlib.resources.files(__package__).joinpath(_PACKAGED_CASES)
    rows = parse_case_table(resource.read_text(encoding="utf-8"), str(resource))
    for r in rows:
        r["frames"] = int(r["frames"])
    return tuple(rows)


def sun_seg_cases() -> list[dict]:
    """The 285 SUN-SEG positive cases shipped with vps_d2 (package data).

    One dict per case, in the benchmark's order: ``case`` (folder name, ``case1_1``),
    ``id`` (benchmark ID, ``1_1``), ``class_name`` (a CLASS_NAMES entry), ``class_id``,
    ``frames`` (int), ``shape`` (Paris: Ip, Isp, Is, IIa), ``size`` (e.g. ``6mm``,
    ``15mm-``), ``location`` (C A T D S R: cecum, ascending, transverse, descending,
    sigmoid colon, rectum).
    """
    return [dict(r) for r in _packaged_rows()]


def sun_seg_case_classes() -> dict[str, int]:
    """{case folder name: CLASS_NAMES index} of the 285 SUN-SEG positive cases."""
    return {r["case"]: r["class_id"] for r in _packaged_rows()}


def case_key(name: str) -> tuple[int, int | None] | str:
    """The key by which case names match across tables: ``case12_3``, ``Case12_3``,
    ``case_12_3`` and the benchmark ID ``12_3`` give ``(12, 3)``; ``case12`` gives
    ``(12, None)``; a name of another form is returned stripped."""
    m = _CASE_ID_RE.match(name.strip())
    if m is None:
        return name.strip()
    return int(m.group(1)), (int(m.group(2)) if m.group(2) is not None else None)


class _CaseClasses:
    """Case -> class lookup matching names by number, with a source-video fallback."""

    def __init__(self, table: dict[str, int]) -> None:
        self.exact: dict[object, int] = {}
        per_video: dict[int, set[int]] = {}
        for name, cls in table.items():
            key = case_key(name)
            self.exact[key] = cls
            if isinstance(key, tuple):
                per_video.setdefault(key[0], set()).add(cls)
        self.video = {n: next(iter(c)) for n, c in per_video.items() if len(c) == 1}

    def __bool__(self) -> bool:
        return bool(self.exact)

    def lookup(self, case: str) -> tuple[int | None, bool]:
        """(class id or None, True when only the source video matched)."""
        key = case_key(case)
        if key in self.exact:
            return self.exact[key], False
        if isinstance(key, tuple) and key[0] in self.video:
            return self.video[key[0]], True
        return None, False


def _listing(names: list[str]) -> str:
    more = len(names) - _MAX_LISTED
    return ", ".join(names[:_MAX_LISTED]) + (f", ... and {more} more" if more > 0 else "")


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


def load_sun_seg(
    root: str, split_dir: str, dataset_name: str, *, packaged_case_classes: bool = False
) -> list[dict]:
    """Video records of one SUN-SEG split (one record per case, see :mod:`vps_d2.data`).

    Args:
        root: the SUN-SEG folder (holding ``TrainDataset/`` ...).
        split_dir: e.g. "TrainDataset" or "TestEasyDataset/Seen".
        dataset_name: the registered name written into every record.
        packaged_case_classes: classify the cases that neither ``classification.txt`` nor
            ``cases.csv`` classifies with the SUN-SEG positive-case table shipped with
            vps_d2 (:func:`sun_seg_cases`). Set for the real SUN-SEG test splits only: the
            table's case names mean nothing in other datasets.
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
    split_cases: dict[str, int] = {}
    case_files = _annotation_files(root, split_dir, "Classification", CASE_TABLE_FILE)
    for path in reversed(case_files):
        split_cases.update(load_case_table(path))  # the split's own file wins
    case_tables = [(_CaseClasses(split_cases), ", ".join(case_files))]
    if packaged_case_classes:
        case_tables.append((_CaseClasses(sun_seg_case_classes()), "vps_d2's SUN-SEG case table"))
    case_tables = [(t, name) for t, name in case_tables if t]
    by_video: list[str] = []
    unclassified: list[str] = []
    disagree: list[str] = []
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
        if class_id < 0:
            for table, _ in case_tables:
                found, video_only = table.lookup(case)
                if found is not None:
                    class_id, class_name = found, CLASS_NAMES[found]
                    if video_only:
                        by_video.append(case)
                    break
            else:
                unclassified.append(case)
        elif packaged_case_classes:
            found, _ = case_tables[-1][0].lookup(case)
            if found is not None and found != class_id:
                disagree.append(f"{case} ({class_name} vs {CLASS_NAMES[found]})")
        known = {i: b for i, s in enumerate(stems) if (b := _lookup(boxes, case, s)) is not None}
        if len(known) == len(stems):
            video_boxes = [known[i] for i in range(len(stems))]
        else:
            video_boxes = MaskBoxes(v["gt_file_names"], known)
        records.append(
            make_video_record(dataset_name, split_dir, v, class_id, class_name, video_boxes)
        )
    if by_video:
        logger.warning(
            "%s: %d case(s) are not named in the case table; classified by their source "
            "video (every listed clip of it has one class): %s",
            split_path,
            len(by_video),
            _listing(by_video),
        )
    if case_tables and unclassified:
        logger.warning(
            "%s: %d case(s) have no class (not in classification.txt nor in %s); class_id "
            "-1 (not scored by the classification evaluator): %s",
            split_path,
            len(unclassified),
            " nor ".join(n for _, n in case_tables),
            _listing(unclassified),
        )
    if disagree:
        logger.warning(
            "%s: classification.txt disagrees with vps_d2's SUN-SEG case table for %d "
            "case(s) (classification.txt is used): %s",
            split_path,
            len(disagree),
            _listing(disagree),
        )
    return records


def video_of_case(case: str) -> str:
    """The source video of a clip: ``case12_3`` -> ``case12``; other names are their own."""
    key = case_sort_key(case)
    return f"case{key[1]}" if key[0] == 0 else case


def holdout_videos(
    cases: list[str], fraction: float, seed: int, key: str = "DATASETS.SUN_SEG.HOLDOUT_VAL"
) -> set[str]:
    """Cases held out for validation: whole source videos, chosen deterministically.

    ``round(fraction * number of videos)`` videos (at least one) are drawn with
    ``numpy.random.RandomState(seed)`` from the videos sorted by number; every clip
    (``case<N>_<M>``) of a chosen video ``case<N>`` is held out. Returns their case names.

    Raises:
        ValueError: ``fraction`` outside [0, 1), or nothing would be left for training.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"{key} must be in [0, 1), got {fraction}")
    if fraction == 0.0:
        return set()
    videos = sorted({video_of_case(c) for c in cases}, key=case_sort_key)
    n_val = max(1, int(round(fraction * len(videos))))
    if n_val >= len(videos):
        raise ValueError(
            f"{key}={fraction} holds out {n_val} of {len(videos)} "
            f"source videos, leaving none for training: set {key} 0 (or another fraction)"
        )
    order = np.random.RandomState(seed).permutation(len(videos))
    chosen = {videos[i] for i in order[:n_val]}
    return {c for c in cases if video_of_case(c) in chosen}
