"""Writing a synthetic dataset with a trained generator (``tools/synthesize.py``).

* :func:`mask_videos`: the mask sequences to condition on, from a registered dataset (its
  records, real frames included for the measures) or a folder of masks
  (``<folder>/GT/<video>/*.png``, or ``<folder>/*.png`` = one video);
* :func:`synthesize`: one synthetic frame per mask, in the SUN-SEG layout
  ``<output>/TrainDataset/{Frame,GT}/<video>/<stem>.{jpg,png}`` (frames at the mask's
  original size, masks re-written 0/255). Every file is written atomically (temporary file,
  then rename), so a kill leaves whole files only; frames are generated in fixed chunks of
  ``batch_size`` consecutive frames of one video and a chunk whose files all exist is
  skipped, so a rerun resumes where the killed one stopped and (the noise being seeded per
  video or per frame, never per batch) writes the same images an uninterrupted run writes;
* ``synthesis_run.json`` (written first) fingerprints the run (config, weights, masks,
  seed): a rerun into the same folder with other settings is refused; ``synthetic.json``
  (written last) names the dataset, marks it complete and holds the measures, so
  ``DATASETS.SYNTHETIC`` registers only finished datasets.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable

import cv2
import numpy as np
import torch

from vps_d2.data.catalog import DatasetCatalog
from vps_d2.data.datasets.folder import list_image_files
from vps_d2.data.datasets.synthetic import SYNTHETIC_MANIFEST
from vps_d2.data.frame_order import case_sort_key, sort_frames
from vps_d2.data.io import read_mask
from vps_d2.utils.file_io import atomic_write_bytes, atomic_write_json

__all__ = [
    "RUN_FILE",
    "contact_sheet",
    "SPLIT_DIR",
    "file_sha256",
    "mask_videos",
    "output_paths",
    "synthesize",
    "write_manifest",
]

logger = logging.getLogger(__name__)

SPLIT_DIR = "TrainDataset"
RUN_FILE = "synthesis_run.json"


def file_sha256(path: str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _folder_videos(folder: str) -> list[dict]:
    gt = os.path.join(folder, "GT")
    if os.path.isdir(gt):
        videos = []
        for vid in sorted(os.listdir(gt), key=case_sort_key):
            files = list_image_files(os.path.join(gt, vid)) if not vid.startswith(".") else {}
            if files:
                stems = sort_frames(list(files))
                videos.append(
                    {
                        "video_id": vid,
                        "gt_file_names": [files[s] for s in stems],
                        "frame_names": stems,
                        "file_names": [None] * len(stems),
                    }
                )
        return videos
    files = list_image_files(folder)
    if not files:
        return []
    stems = sort_frames(list(files))
    return [
        {
            "video_id": os.path.basename(os.path.normpath(folder)),
            "gt_file_names": [files[s] for s in stems],
            "frame_names": stems,
            "file_names": [None] * len(stems),
        }
    ]


def mask_videos(source: str) -> list[dict]:
    """``[{"video_id", "gt_file_names", "frame_names", "file_names" (real frames or None)}]``
    of a registered dataset name or a folder of masks; frames without a mask are left out.

    Raises:
        FileNotFoundError / KeyError: naming ``--masks-from`` and what exists.
    """
    if source in DatasetCatalog:
        records = DatasetCatalog.get(source)
        videos = []
        for r in records:
            keep = [i for i, g in enumerate(r["gt_file_names"]) if g]
            if keep:
                videos.append(
                    {
                        "video_id": r["video_id"],
                        "gt_file_names": [r["gt_file_names"][i] for i in keep],
                        "frame_names": [r["frame_names"][i] for i in keep],
                        "file_names": [r["file_names"][i] for i in keep],
                    }
                )
    elif os.path.isdir(source):
        videos = _folder_videos(source)
    else:
        raise KeyError(
            f"--masks-from {source!r} is neither a registered dataset nor a folder "
            f"(registered: {', '.join(sorted(DatasetCatalog.keys()))})"
        )
    if not videos:
        raise FileNotFoundError(f"--masks-from {source!r}: no mask found")
    return videos


def output_paths(output: str, video_id: str, stem: str) -> tuple[str, str]:
    """(frame .jpg, mask .png) paths of one synthetic frame."""
    split = os.path.join(output, SPLIT_DIR)
    return (
        os.path.join(split, "Frame", video_id, f"{stem}.jpg"),
        os.path.join(split, "GT", video_id, f"{stem}.png"),
    )


def _encode(ext: str, array: np.ndarray, params: Iterable[int] = ()) -> bytes:
    ok, buf = cv2.imencode(ext, array, list(params))
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {ext} image")
    return buf.tobytes()


def _chunks(videos: list[dict], batch_size: int):
    for v in videos:
        n = len(v["gt_file_names"])
        for start in range(0, n, batch_size):
            yield v, list(range(start, min(n, start + batch_size)))


def synthesize(
    model: torch.nn.Module,
    videos: list[dict],
    output: str,
    *,
    batch_size: int = 8,
    image_format: str = "RGB",
    jpeg_quality: int = 95,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Generate and write one frame per mask (see the module doc); returns ``{"frames":
    total, "generated": written by this call, "skipped": found complete}``.

    ``model``: a generation meta-architecture in eval mode (``process_frames`` of frames
    with ``sem_seg``, ``video_id``, ``frame_index``, ``height``, ``width``).
    ``progress(n)``: called with the number of frames finished (written or skipped).
    """
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    total = generated = skipped = 0
    for video, idxs in _chunks(videos, batch_size):
        total += len(idxs)
        paths = [output_paths(output, video["video_id"], video["frame_names"][i]) for i in idxs]
        if all(os.path.isfile(f) and os.path.isfile(g) for f, g in paths):
            skipped += len(idxs)
            if progress is not None:
                progress(len(idxs))
            continue
        frames, masks = [], []
        for i in idxs:
            m = read_mask(video["gt_file_names"][i])
            masks.append(m)
            frames.append(
                {
                    "sem_seg": torch.from_numpy(m.astype(np.float32)),
                    "height": m.shape[0],
                    "width": m.shape[1],
                    "video_id": video["video_id"],
                    "frame_index": i,
                }
            )
        with torch.no_grad():
            outs = model.process_frames(frames)
        for (frame_path, gt_path), out, m in zip(paths, outs, masks):
            img = out["image"].permute(1, 2, 0).numpy()  # H, W, 3 in image_format
            if image_format == "RGB":
                img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
            os.makedirs(os.path.dirname(gt_path), exist_ok=True)
            os.makedirs(os.path.dirname(frame_path), exist_ok=True)
            atomic_write_bytes(gt_path, _encode(".png", m.astype(np.uint8) * 255))
            quality = (cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality))
            atomic_write_bytes(frame_path, _encode(".jpg", img, quality))
        generated += len(idxs)
        if progress is not None:
            progress(len(idxs))
    return {"frames": total, "generated": generated, "skipped": skipped}


def check_run(output: str, fingerprint: dict) -> None:
    """Write ``synthesis_run.json`` in a new output; in an existing one, refuse another
    run's fingerprint (ValueError naming the differing keys)."""
    path = os.path.join(output, RUN_FILE)
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            old = json.load(f)
        diff = sorted(k for k in set(old) | set(fingerprint) if old.get(k) != fingerprint.get(k))
        if diff:
            raise ValueError(
                f"--output {output} holds a synthesis with other settings ({', '.join(diff)} "
                "differ): use another --output, or --overwrite to start afresh"
            )
        return
    os.makedirs(output, exist_ok=True)
    atomic_write_json(path, fingerprint)


def write_manifest(output: str, manifest: dict) -> None:
    """``synthetic.json`` (atomically): the dataset's name, ``complete`` and the measures."""
    atomic_write_json(os.path.join(output, SYNTHETIC_MANIFEST), manifest)


def contact_sheet(videos: list[dict], output: str, path: str, rows: int = 6, height: int = 96):
    """A PNG of ``rows`` frames (spread over the videos), one row each: mask | synthetic |
    real (when the real frame is known), each ``height`` pixels high; written atomically."""
    picks = []
    for k in range(rows):
        v = videos[k * len(videos) // rows if len(videos) >= rows else k % len(videos)]
        i = (k * 7) % len(v["gt_file_names"]) if len(videos) < rows else 0
        picks.append((v, i))

    def fit(img: np.ndarray) -> np.ndarray:
        w = round(img.shape[1] * height / img.shape[0])
        return cv2.resize(img, (w, height), interpolation=cv2.INTER_AREA)

    lines = []
    for v, i in picks:
        m = read_mask(v["gt_file_names"][i]).astype(np.uint8) * 255
        mask = fit(cv2.cvtColor(m, cv2.COLOR_GRAY2BGR))
        synth = fit(cv2.imread(output_paths(output, v["video_id"], v["frame_names"][i])[0]))
        cells = [mask, synth]
        if v["file_names"][i]:
            cells.append(fit(cv2.imread(v["file_names"][i])))
        gap = np.full((height, 4, 3), 255, np.uint8)
        lines.append(np.concatenate([c for cell in cells for c in (cell, gap)][:-1], axis=1))
    width = max(line.shape[1] for line in lines)
    header = np.full((22, width, 3), 255, np.uint8)
    titles = ["mask", "synthetic (ArSDM)", "real"]
    for j, title in enumerate(titles[: 2 + bool(picks[0][0]["file_names"][picks[0][1]])]):
        x = j * (lines[0].shape[1] // len(titles)) + 4
        cv2.putText(header, title, (x, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
    rows_img = [header]
    for line in lines:
        pad = np.full((height, width - line.shape[1], 3), 255, np.uint8)
        rows_img += [np.concatenate([line, pad], axis=1), np.full((4, width, 3), 255, np.uint8)]
    atomic_write_bytes(path, _encode(".png", np.concatenate(rows_img, axis=0)))
