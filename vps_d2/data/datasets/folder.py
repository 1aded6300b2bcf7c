"""Plain video folders, and the folder scanning every reader shares.

Layout (``root`` is any folder)::

    root/
      Frame/<video>/<stem>.jpg|png|...   # frames; the order comes from the stems
      GT/<video>/<stem>.png              # optional masks, matched to frames by stem

Register one as a dataset with :func:`register_video_folder`::

    from vps_d2.data.datasets import register_video_folder
    register_video_folder("my_videos", "/data/my_videos")   # then DATASETS.TEST=("my_videos",)

How the scan treats real-world quirks (each case either works or is reported):

* extensions match case-insensitively (``.JPG`` = ``.jpg``); a GT file matches the frame
  with the same stem, whatever its extension; two frames with the same stem are an error;
* hidden files (``.DS_Store``, ``._*``) and non-image files are ignored;
* a frame without a GT file is kept with ``gt_file_names[i] = None`` (a warning counts them);
  a GT file without a frame is skipped with a warning naming it;
* an empty video folder is skipped with a warning naming it;
* images are not opened while scanning: a corrupt file raises
  :class:`vps_d2.data.io.ImageReadError` naming it when it is read.

Boxes: when a dataset has no box annotations, ``record["boxes"]`` is a :class:`MaskBoxes`,
a read-only sequence that derives frame ``i``'s box from its GT mask the first time
``boxes[i]`` is read and caches it (so loading a dataset never reads every mask). It
indexes, slices, iterates and pickles like the list the record format describes; use
``list(boxes)`` for a real list (reads the remaining masks).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence

from .. import CLASS_NAMES
from ..catalog import DatasetCatalog, MetadataCatalog
from ..frame_order import case_sort_key, sort_frames
from ..io import is_image_file, mask_to_box, read_mask
from .root import get_datasets_root

__all__ = [
    "MaskBoxes",
    "find_subdir",
    "list_image_files",
    "load_video_folder",
    "make_video_record",
    "register_video_folder",
    "scan_video_folder",
    "update_metadata",
]

logger = logging.getLogger(__name__)

# Most file names a warning lists before it says "... and N more".
_MAX_LISTED = 10
_MISSING = object()


def _listing(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    more = len(items) - _MAX_LISTED
    return shown + (f", ... and {more} more" if more > 0 else "")


def find_subdir(parent: str, names: Iterable[str]) -> str | None:
    """First of ``names`` that exists as a folder in ``parent`` (exact, then any case)."""
    names = list(names)
    for n in names:
        p = os.path.join(parent, n)
        if os.path.isdir(p):
            return p
    try:
        entries = os.listdir(parent)
    except OSError:
        return None
    lowered = {e.lower(): e for e in sorted(entries)}
    for n in names:
        e = lowered.get(n.lower())
        if e is not None and os.path.isdir(os.path.join(parent, e)):
            return os.path.join(parent, e)
    return None


def list_image_files(folder: str) -> dict[str, str]:
    """``{stem: path}`` of the image files in ``folder`` (not recursive).

    Hidden and non-image files are skipped. Raises ValueError naming both files when two
    images share a stem (``a.jpg`` and ``a.png``): which one is the frame is ambiguous.
    """
    out: dict[str, str] = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if not is_image_file(name):
            if not name.startswith(".") and os.path.isfile(path):
                logger.debug("Ignoring non-image file %s", path)
            continue
        if not os.path.isfile(path):
            continue
        stem = os.path.splitext(name)[0]
        if stem in out:
            raise ValueError(
                f"Two image files with the same stem '{stem}' in {folder}: "
                f"{os.path.basename(out[stem])} and {name}. Remove one of them."
            )
        out[stem] = path
    return out


def _subfolders(folder: str) -> list[str]:
    return [
        e
        for e in os.listdir(folder)
        if not e.startswith(".") and os.path.isdir(os.path.join(folder, e))
    ]


def scan_video_folder(root: str, frame_dir: str = "Frame", gt_dir: str = "GT") -> list[dict]:
    """Scan ``root/Frame/<video>/`` (and ``root/GT/<video>/`` when present).

    Returns one dict per video, in :func:`case_sort_key` order, with ``video_id``,
    ``file_names`` (temporal order, :func:`sort_frames`), ``gt_file_names`` (None where a
    frame has no GT) and ``frame_names`` (stems).

    Raises:
        FileNotFoundError: ``root`` or ``root/Frame`` does not exist.
        ValueError: no video folder holds a frame; two frames share a stem.
    """
    if not os.path.isdir(root):
        raise FileNotFoundError(f"Dataset folder not found: {root}")
    frame_root = find_subdir(root, [frame_dir])
    if frame_root is None:
        raise FileNotFoundError(
            f"No '{frame_dir}' folder in {root}: expected {root}/{frame_dir}/<video>/<frames>"
        )
    gt_root = find_subdir(root, [gt_dir])
    if gt_root is None:
        logger.info("No '%s' folder in %s: its frames have no ground truth", gt_dir, root)

    loose = sorted(e for e in os.listdir(frame_root) if is_image_file(e))
    if loose:
        logger.warning(
            "Ignoring %d image file(s) directly in %s (frames must be in %s/<video>/): %s",
            len(loose),
            frame_root,
            frame_dir,
            _listing(loose),
        )

    cases = sorted(_subfolders(frame_root), key=case_sort_key)
    videos = []
    for case in cases:
        case_dir = os.path.join(frame_root, case)
        frames = list_image_files(case_dir)
        gts: dict[str, str] = {}
        if gt_root is not None:
            gt_case = os.path.join(gt_root, case)
            if os.path.isdir(gt_case):
                gts = list_image_files(gt_case)
            else:
                logger.warning(
                    "No GT folder for video '%s' (expected %s): its frames have no ground truth",
                    case,
                    gt_case,
                )
        if not frames:
            logger.warning("Skipping empty video folder (no image files): %s", case_dir)
            continue
        orphans = sorted(gts[s] for s in gts if s not in frames)
        if orphans:
            logger.warning(
                "Skipping %d GT file(s) without a frame in %s: %s",
                len(orphans),
                case_dir,
                _listing(orphans),
            )
        file_names = sort_frames(frames.values(), case)
        stems = [os.path.splitext(os.path.basename(p))[0] for p in file_names]
        gt_file_names = [gts.get(s) for s in stems]
        if gts:
            missing = [s for s, g in zip(stems, gt_file_names) if g is None]
            if missing:
                logger.warning(
                    "%d frame(s) of video '%s' have no GT file (kept without ground truth): %s",
                    len(missing),
                    case,
                    _listing(missing),
                )
        videos.append(
            {
                "video_id": case,
                "file_names": file_names,
                "gt_file_names": gt_file_names,
                "frame_names": stems,
            }
        )
    if gt_root is not None:
        for case in sorted(set(_subfolders(gt_root)) - set(cases), key=case_sort_key):
            logger.warning(
                "Skipping GT folder without a frame folder: %s", os.path.join(gt_root, case)
            )
    if not videos:
        raise ValueError(f"No video with frames found in {frame_root} (expected <video>/<frames>)")
    return videos


class MaskBoxes(Sequence):
    """Per-frame boxes ``[x_min, y_min, w, h]`` (None: no polyp / no GT), derived lazily.

    ``boxes[i]`` returns ``known[i]`` when given, else reads ``gt_file_names[i]`` once,
    computes the tight box of its foreground and caches it. Picklable.
    """

    def __init__(
        self, gt_file_names: Sequence[str | None], known: dict[int, list[float]] | None = None
    ) -> None:
        self._gt = list(gt_file_names)
        self._cache: dict[int, list[float] | None] = dict(known or {})

    def __len__(self) -> int:
        return len(self._gt)

    def __getitem__(self, i):  # int -> box | None; slice -> list
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self._gt)
        if not -n <= i < n:
            raise IndexError(f"frame index {i} out of range for {n} frames")
        i %= n
        if i not in self._cache:
            gt = self._gt[i]
            self._cache[i] = None if gt is None else mask_to_box(read_mask(gt))
        box = self._cache[i]
        return None if box is None else list(box)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str):
            return NotImplemented
        return len(self) == len(other) and list(self) == list(other)

    def __repr__(self) -> str:
        return f"MaskBoxes({len(self)} frames, {len(self._cache)} known)"


def make_video_record(
    dataset_name: str,
    split: str,
    video: dict,
    class_id: int = -1,
    class_name: str = "",
    boxes: Sequence | None = None,
) -> dict:
    """The video record of :mod:`vps_d2.data` from a :func:`scan_video_folder` entry.

    ``boxes`` defaults to :class:`MaskBoxes` over the video's GT files.
    """
    gt = list(video["gt_file_names"])
    return {
        "dataset_name": dataset_name,
        "split": split,
        "video_id": video["video_id"],
        "length": len(video["file_names"]),
        "file_names": list(video["file_names"]),
        "gt_file_names": gt,
        "frame_names": list(video["frame_names"]),
        "class_id": int(class_id),
        "class_name": class_name,
        "boxes": MaskBoxes(gt) if boxes is None else boxes,
    }


def load_video_folder(root: str, dataset_name: str, split: str = "") -> list[dict]:
    """Video records of a plain ``root/Frame/<video>/`` (+ optional ``root/GT/``) folder.

    Class ids are -1 (unknown); boxes come from the masks (:class:`MaskBoxes`).
    """
    return [make_video_record(dataset_name, split, v) for v in scan_video_folder(root)]


def update_metadata(name: str, **values) -> None:
    """Set ``MetadataCatalog.get(name)`` attributes, replacing the entry when one changes.

    Metadata attributes cannot be re-assigned; the dataset root is only known when a loader
    runs (``configure_datasets`` / environment), so a changed value re-creates the entry,
    keeping its other attributes.
    """
    md = MetadataCatalog.get(name)
    if all(md.get(k, _MISSING) == v for k, v in values.items()):
        return
    old = {k: v for k, v in md.as_dict().items() if k != "name"}
    MetadataCatalog.remove(name)
    MetadataCatalog.get(name).set(**{**old, **values})


def _resolve_folder(root: str) -> str:
    root = os.path.expanduser(root)
    if os.path.isabs(root):
        return root
    under = os.path.join(get_datasets_root(), root)
    if os.path.isdir(under) or not os.path.isdir(root):
        return os.path.abspath(under)
    return os.path.abspath(root)


def register_video_folder(
    name: str, root: str, *, split: str = "", evaluator_type: str = "vps", **metadata
) -> None:
    """Register ``name`` in DatasetCatalog/MetadataCatalog for a plain video folder.

    Args:
        name: dataset name to use in ``DATASETS.TRAIN`` / ``DATASETS.TEST``.
        root: folder holding ``Frame/`` (and optionally ``GT/``). An absolute path is used
            as is; a relative one is looked up under the datasets root (DATASETS.ROOT,
            $VPS_DATASETS, $DETECTRON2_DATASETS, else ``datasets``), then under the current
            directory, when the dataset is loaded.
        split: value of the records' ``split`` and of the metadata's ``split``.
        evaluator_type: metadata ``evaluator_type`` ("vps" = the SUN-SEG protocol).
        **metadata: further metadata attributes.
    """

    def _load() -> list[dict]:
        path = _resolve_folder(root)
        update_metadata(name, root=path, image_root=os.path.join(path, "Frame"))
        update_metadata(name, gt_root=os.path.join(path, "GT"))
        return load_video_folder(path, name, split)

    DatasetCatalog.register(name, _load)
    MetadataCatalog.get(name).set(
        evaluator_type=evaluator_type, split=split, class_names=list(CLASS_NAMES), **metadata
    )
