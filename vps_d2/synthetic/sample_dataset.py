"""Synthetic, colonoscopy-like sample dataset in the SUN-SEG layout.

The data is entirely synthetic (procedural numpy/OpenCV drawings, no real patient data); it
exists so that the loaders, the training loop, the evaluation and the tests can run end to
end without the real SUN-SEG release, which cannot be downloaded automatically.

Layout written under ``output_dir`` (the SUN-SEG layout, ``datasets/README.md``)::

    TrainDataset/Frame/<case>/<stem>.jpg          # RGB frames, H x W
    TrainDataset/GT/<case>/<stem>.png             # masks, uint8 0/255, H x W
    TrainDataset/Classification/classification.txt  # "<stem>.jpg\\t<class>" per frame
    TrainDataset/Detection/bbox_annotation.json   # COCO-like boxes (see below)
    TestEasyDataset/{Seen,Unseen}/{Frame,GT}/<case>/...
    TestHardDataset/{Seen,Unseen}/{Frame,GT}/<case>/...
    Test*Dataset/*/Classification/cases.csv       # case-level classes (see below)

Cases: training videos are split into clips ``case<N>_<M>``; "Seen" test clips are further
clips ``case<N>_<M'>`` of training videos (same scene and polyp, new camera path, no shared
frame); "Unseen" clips come from videos never used in training and are named ``case<N>``
(a video that was not split). Frame stems use the SUN naming
``case_M_<date>_<device>_1_005_<MMM>-1_a<k>_ayy_image<i>`` with an unpadded image number
and an ``a<k>`` part that always crosses 9 -> 10 inside a clip, so plain lexical order of
the stems is wrong and :func:`vps_d2.data.frame_order.sort_frames` is exercised.

``bbox_annotation.json``: ``{"images": [{id, width, height, case_name, file_name}],
"annotation": [{id, image_id, category_id, bbox}]}``; image ids count 1, 2, ... over the
split's frames (cases in :func:`case_sort_key` order, frames in temporal order); a box's
``id`` equals the ``id`` of its image (``image_id`` repeats it); frames whose mask is empty
have no box. ``bbox = [x_min, y_min, w, h]`` in pixels with ``w = x_max - x_min + 1`` (the
tight box of the mask's foreground pixels). Test splits have no box file: their boxes come
from the masks (:class:`vps_d2.data.datasets.folder.MaskBoxes`), like SUN-SEG's test splits.

Classes: one per video (training videos cycle over a seed-dependent permutation of
``CLASS_NAMES``; an Unseen video gets a class some training video has), so a "Seen" clip has
the class of its training video. The class shows in the polyp's colour and surface pattern
(``_CLASS_LOOK``: e.g. pale and smooth for hyperplastic polyps, red and strongly patterned for
high-grade adenomas), so a classifier can learn it and classify Unseen clips too. Training
frames are listed in ``classification.txt``; each test split gets a case-level table, as
vps_d2 classifies the real SUN-SEG test splits (by case, :mod:`vps_d2.data.datasets.sun_seg`)::

    case,class_name,frames
    case1_3,hyperplastic_polyp,27

Every clip shows one polyp (a lobulated, shaded, textured blob) on a mucosa scene (smoothed
noise, ring folds around a dark lumen, thin vessels, specular spots), seen through a moving
camera (pan/zoom/rotation), with vignetting, motion blur, short low-quality stretches, an
instrument that sometimes covers part of the polyp (excluded from the mask) and stretches
where the polyp leaves the view (empty masks; training clips only: as in SUN-SEG's
positive clips, every test frame shows the polyp). "Hard" splits use faster motion, more blur,
smaller polyps, more occlusion and more low-quality frames.

Generation is deterministic: each video and each clip has its own ``numpy`` Generator
seeded from ``(seed, N[, M])``; the same seed gives byte-identical files.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import time

import cv2
import numpy as np

from vps_d2.data.datasets.sun_seg import CASE_TABLE_FILE
from vps_d2.utils.file_io import pid_alive

from .plan import SPLITS, TRAIN_SPLIT, ClipPlan, _check_int, plan_sample_dataset
from .render import _render_video, _Video, render_clip

__all__ = [
    "SPLITS",
    "ClipPlan",
    "plan_sample_dataset",
    "render_clip",
    "make_sample_dataset",
    "mask_to_box",
]

logger = logging.getLogger(__name__)

_JPEG_QUALITY = 92


def mask_to_box(mask: np.ndarray) -> list[int] | None:
    """Tight box ``[x_min, y_min, w, h]`` of a (H, W) mask's foreground (> 128), or None."""
    ys, xs = np.nonzero(mask > 128)
    if xs.size == 0:
        return None
    x0, y0 = int(xs.min()), int(ys.min())
    return [x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1]


def _write_bytes(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def _encode(ext: str, img: np.ndarray, params: list[int]) -> bytes:
    ok, buf = cv2.imencode(ext, img, params)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {ext} image of shape {img.shape}")
    return buf.tobytes()


def _write_dataset(root: str, plans: list[ClipPlan], *, seed: int, height: int, width: int) -> dict:
    videos: dict[int, _Video] = {}
    last_use = {p.video: i for i, p in enumerate(plans)}
    per_split: dict[str, dict] = {}
    train_images: list[dict] = []
    train_boxes: list[dict] = []
    train_classes: list[str] = []
    for i, plan in enumerate(plans):
        if plan.video not in videos:
            videos[plan.video] = _render_video(seed, plan.video, height, width, plan.class_name)
        frames, masks = render_clip(
            plan, seed=seed, height=height, width=width, video=videos[plan.video]
        )
        if last_use[plan.video] == i:
            del videos[plan.video]  # keep memory flat
        frame_dir = os.path.join(root, plan.split, "Frame", plan.case)
        gt_dir = os.path.join(root, plan.split, "GT", plan.case)
        os.makedirs(frame_dir, exist_ok=True)
        os.makedirs(gt_dir, exist_ok=True)
        stats = per_split.setdefault(
            plan.split, {"clips": 0, "frames": 0, "empty_masks": 0, "cases": []}
        )
        stats["clips"] += 1
        stats["cases"].append(plan.case)
        for stem, frame, mask in zip(plan.stems, frames, masks):
            _write_bytes(
                os.path.join(frame_dir, stem + ".jpg"),
                _encode(".jpg", frame[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY]),
            )
            _write_bytes(
                os.path.join(gt_dir, stem + ".png"),
                _encode(".png", mask, [cv2.IMWRITE_PNG_COMPRESSION, 3]),
            )
            box = mask_to_box(mask)
            stats["frames"] += 1
            stats["empty_masks"] += box is None
            if plan.split == TRAIN_SPLIT:
                image_id = len(train_images) + 1
                train_images.append(
                    {
                        "id": image_id,
                        "width": width,
                        "height": height,
                        "case_name": plan.case,
                        "file_name": stem,
                    }
                )
                if box is not None:
                    train_boxes.append(
                        {"id": image_id, "image_id": image_id, "category_id": 1, "bbox": box}
                    )
                train_classes.append(f"{stem}.jpg\t{plan.class_name}\n")

    cls_dir = os.path.join(root, TRAIN_SPLIT, "Classification")
    det_dir = os.path.join(root, TRAIN_SPLIT, "Detection")
    os.makedirs(cls_dir, exist_ok=True)
    os.makedirs(det_dir, exist_ok=True)
    with open(os.path.join(cls_dir, "classification.txt"), "w", encoding="utf-8") as f:
        f.writelines(train_classes)
    _write_case_tables(root, plans)
    detection = {
        "images": train_images,
        "annotation": train_boxes,
        "categories": [{"id": 1, "name": "polyp"}],
    }
    with open(os.path.join(det_dir, "bbox_annotation.json"), "w", encoding="utf-8") as f:
        json.dump(detection, f, indent=1)
        f.write("\n")
    return per_split


def _write_case_tables(root: str, plans: list[ClipPlan]) -> None:
    """``<split>/Classification/cases.csv`` of every test split that has clips."""
    for split in SPLITS[1:]:
        clips = [p for p in plans if p.split == split]
        if not clips:
            continue
        folder = os.path.join(root, split, "Classification")
        os.makedirs(folder, exist_ok=True)
        lines = ["case,class_name,frames\n"]
        lines += [f"{p.case},{p.class_name},{p.num_frames}\n" for p in clips]
        with open(os.path.join(folder, CASE_TABLE_FILE), "w", encoding="utf-8") as f:
            f.writelines(lines)


def _work_folder_re(out: str) -> re.Pattern:
    return re.compile(r"^\." + re.escape(os.path.basename(out)) + r"\.(tmp|old)-(\d+)-\w+$")


def _make_work_folder(out: str, kind: str) -> str:
    """A new hidden sibling folder of ``out``: ``.<name>.<kind>-<pid>-<random>``.

    The writer's process id in the name lets a later run remove the folders of runs that
    were killed (:func:`_remove_stale_work_folders`). Mode: what ``mkdir`` gives (umask).
    """
    folder = tempfile.mkdtemp(
        prefix=f".{os.path.basename(out)}.{kind}-{os.getpid()}-", dir=os.path.dirname(out)
    )
    os.chmod(folder, 0o777 & ~_umask())  # mkdtemp makes it 0o700
    return folder


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _remove_stale_work_folders(out: str) -> list[str]:
    """Delete the work folders of ``out`` (see :func:`_make_work_folder`) of dead processes.

    A run killed while replacing ``out`` may have left the previous dataset in its "old"
    folder and nothing at ``out``: that dataset is moved back to ``out`` first.
    """
    parent, pattern, removed = os.path.dirname(out), _work_folder_re(out), []
    for name in sorted(os.listdir(parent)):
        m = pattern.match(name)
        path = os.path.join(parent, name)
        if not m or not os.path.isdir(path) or pid_alive(int(m.group(2))):
            continue
        kept = os.path.join(path, "data")
        if m.group(1) == "old" and os.path.isdir(kept) and not os.path.exists(out):
            os.replace(kept, out)
            logger.warning("Restored %s from %s (a run was killed while replacing it)", out, name)
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    if removed:
        logger.info(
            "Removed %d folder(s) left by killed runs: %s",
            len(removed),
            ", ".join(os.path.basename(p) for p in removed),
        )
    return removed


def make_sample_dataset(
    output_dir: str,
    seed: int = 0,
    *,
    train_clips: int = 10,
    test_clips: int = 3,
    frames_min: int = 20,
    frames_max: int = 40,
    height: int = 240,
    width: int = 320,
    overwrite: bool = False,
) -> dict:
    """Write the synthetic sample dataset to ``output_dir`` (SUN-SEG layout, see module doc).

    Everything is written into a temporary sibling folder that is renamed to ``output_dir``
    at the end, so an interrupted run never leaves a partial dataset there; the hidden
    folders (``.<name>.tmp-<pid>-*``) of runs that were killed are removed at start. An existing
    non-empty ``output_dir`` is an error unless ``overwrite`` is True (it is then replaced).

    Returns a summary: ``{"output_dir", "seed", "height", "width", "seconds", "splits":
    {split: {"clips", "frames", "empty_masks", "cases"}}, "classes": {"<split>/<case>": class}}``.
    """
    height = _check_int("height", height, 32)
    width = _check_int("width", width, 32)
    plans = plan_sample_dataset(
        seed=seed,
        train_clips=train_clips,
        test_clips=test_clips,
        frames_min=frames_min,
        frames_max=frames_max,
    )
    out = os.path.abspath(os.fspath(output_dir))
    if os.path.isdir(os.path.dirname(out)):
        _remove_stale_work_folders(out)  # (may restore a dataset a killed run moved aside)
    if os.path.exists(out):
        if not os.path.isdir(out):
            raise FileExistsError(f"make_sample_dataset: {out} exists and is not a folder")
        if os.listdir(out) and not overwrite:
            raise FileExistsError(
                f"make_sample_dataset: {out} exists and is not empty; "
                "pass overwrite=True (--overwrite) to replace it"
            )
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    start = time.perf_counter()
    tmp = _make_work_folder(out, "tmp")
    try:
        per_split = _write_dataset(tmp, plans, seed=int(seed), height=height, width=width)
        if os.path.isdir(out):
            if os.listdir(out):
                old = _make_work_folder(out, "old")
                os.replace(out, os.path.join(old, "data"))
                os.replace(tmp, out)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rmdir(out)
                os.replace(tmp, out)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    seconds = time.perf_counter() - start
    summary = {
        "output_dir": out,
        "seed": int(seed),
        "height": height,
        "width": width,
        "seconds": round(seconds, 3),
        "splits": per_split,
        "classes": {f"{p.split}/{p.case}": p.class_name for p in plans},
    }
    logger.info(
        "Wrote the synthetic sample dataset to %s: %s (%.1f s)",
        out,
        ", ".join(f"{s}: {v['clips']} clips / {v['frames']} frames" for s, v in per_split.items()),
        seconds,
    )
    return summary
