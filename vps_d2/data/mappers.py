"""Mappers: a video record (see :mod:`vps_d2.data`) -> model inputs.

``MAPPER_REGISTRY`` holds the training mappers; ``INPUT.DATASET_MAPPER_NAME`` picks one
(Mask2Former's idea), built as ``cls(cfg, is_train=True)`` and called as
``mapper(record, rng=, ref=)``. Methods may register their own.

* :class:`VideoClipDatasetMapper` (the default): one training clip of T frames (sampled by
  :class:`~vps_d2.data.clip_sampling.ClipSampler`, augmented by
  :class:`~vps_d2.data.transforms.ClipAugmentation`) -> the training dict.
* :class:`VideoTestFrames`: the test frame dicts of one video, in order, at the original
  size (a map-style dataset, so a DataLoader can read frames ahead).

Determinism: the clip mapper takes an explicit ``numpy.random.Generator``; the training
dataset derives it from ``(seed, global sample index)`` (:mod:`vps_d2.data.build`), so a
clip depends neither on the worker that maps it nor on the number of workers.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import torch
from torch.utils.data import Dataset

from vps_d2.config import configurable
from vps_d2.utils.registry import Registry

from .clip_sampling import ClipSampler, build_clip_sampler
from .io import read_image, read_mask
from .transforms import ClipAugmentation, masks_to_boxes

__all__ = [
    "MAPPER_REGISTRY",
    "VideoClipDatasetMapper",
    "VideoTestFrames",
    "build_mapper",
    "check_record",
]

MAPPER_REGISTRY = Registry("MAPPER")
MAPPER_REGISTRY.__doc__ = """
Registry for training mappers: ``cls(cfg, is_train=True)``, called as
``mapper(record, rng=, ref=) -> dict`` (the training dict of :mod:`vps_d2.data`).
"""

logger = logging.getLogger(__name__)

_REQUIRED_KEYS = ("video_id", "length", "file_names", "gt_file_names")


def check_record(record: dict, where: str = "") -> None:
    """Raise a ValueError naming the video (and ``where``) when a record is malformed."""
    where = f" ({where})" if where else ""
    if not isinstance(record, dict):
        raise ValueError(f"A video record must be a dict{where}, got {type(record).__name__}")
    missing = [k for k in _REQUIRED_KEYS if k not in record]
    vid = record.get("video_id", "?")
    if missing:
        raise ValueError(f"Video record '{vid}'{where} lacks the keys {missing}")
    n = record["length"]
    if len(record["file_names"]) != n or len(record["gt_file_names"]) != n:
        raise ValueError(
            f"Video record '{vid}'{where}: length={n} but {len(record['file_names'])} "
            f"file_names and {len(record['gt_file_names'])} gt_file_names"
        )
    if "frame_names" in record and len(record["frame_names"]) != n:
        raise ValueError(
            f"Video record '{vid}'{where}: length={n} but {len(record['frame_names'])} frame_names"
        )


def _frame_name(record: dict, i: int) -> str:
    names = record.get("frame_names")
    if names is not None:
        return names[i]
    return os.path.splitext(os.path.basename(record["file_names"][i]))[0]


def _gt_box(record: dict, i: int) -> list[float] | None:
    """The record's box of frame ``i`` ([x_min, y_min, w, h] pixels) or None."""
    boxes = record.get("boxes")
    if boxes is None or record["gt_file_names"][i] is None:
        return None
    box = boxes[i]
    return None if box is None else [float(v) for v in box]


@MAPPER_REGISTRY.register()
class VideoClipDatasetMapper:
    """Video record -> one clip (training dict of :mod:`vps_d2.data`).

    Output (T = clip length, (H, W) = INPUT.SIZE_TRAIN; SIZE_TEST when ``is_train=False``)::

        image uint8 (T, 3, H, W) in INPUT.FORMAT; sem_seg float32 (T, H, W) 0/1;
        class_id int; boxes float32 (T, 4) normalised (cx, cy, w, h) of the augmented mask;
        box_valid bool (T,); frame_names list[str]; frame_indices list[int]; video_id str

    Frames without GT: a training clip needs a mask for every frame. The reference frame
    is drawn among the video's annotated frames; when the clip holds a frame without GT,
    another clip of the same video is drawn (a new annotated reference), up to
    ``max_tries`` clips in all, then a ValueError names the video. With ``is_train=False``
    there is no augmentation and no resampling: a frame without GT is an error.
    """

    @configurable
    def __init__(
        self,
        *,
        is_train: bool,
        clip_sampler: ClipSampler,
        augmentation: ClipAugmentation,
        image_format: str = "RGB",
        max_tries: int = 10,
    ) -> None:
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"INPUT.FORMAT must be 'RGB' or 'BGR', got {image_format!r}")
        if max_tries < 1:
            raise ValueError(f"max_tries must be >= 1, got {max_tries}")
        self.is_train = bool(is_train)
        self.clip_sampler = clip_sampler
        self.augmentation = augmentation
        self.image_format = image_format
        self.max_tries = int(max_tries)
        logger.debug("VideoClipDatasetMapper: %s, %s", clip_sampler, augmentation)

    @classmethod
    def from_config(cls, cfg, is_train: bool = True) -> dict:
        return {
            "is_train": is_train,
            "clip_sampler": build_clip_sampler(cfg),
            "augmentation": ClipAugmentation(cfg, is_train=is_train),
            "image_format": cfg.INPUT.FORMAT,
        }

    def _choose_indices(self, record: dict, rng: np.random.Generator, ref: int | None) -> list:
        gts = record["gt_file_names"]
        annotated = [i for i, g in enumerate(gts) if g is not None]
        vid = record["video_id"]
        if not annotated:
            raise ValueError(f"Video '{vid}' has no frame with a GT mask: it cannot be trained on")
        tries = self.max_tries if self.is_train else 1
        for attempt in range(tries):
            if ref is None or attempt > 0:
                ref = annotated[int(rng.integers(len(annotated)))]
            indices = self.clip_sampler(record["length"], rng, ref=ref)
            missing = [i for i in indices if gts[i] is None]
            if not missing:
                return indices
        names = [record["file_names"][i] for i in missing]
        raise ValueError(
            f"Video '{vid}': no clip with GT masks for all its frames after {tries} "
            f"attempt(s); the last clip {indices} lacks GT for {names}"
        )

    def __call__(
        self, record: dict, rng: np.random.Generator | None = None, ref: int | None = None
    ) -> dict:
        """Map a video record to one clip.

        Args:
            record: a video record.
            rng: source of all randomness (clip frames and augmentation); ``None``: a fresh,
                unseeded generator (not reproducible).
            ref: reference frame; ``None``: drawn among the annotated frames.
        """
        check_record(record)
        if rng is None:
            rng = np.random.default_rng()
        indices = self._choose_indices(record, rng, ref)
        frames, masks = [], []
        for i in indices:
            img_path, gt_path = record["file_names"][i], record["gt_file_names"][i]
            img = read_image(img_path, self.image_format)
            mask = read_mask(gt_path)
            if mask.shape != img.shape[:2]:
                raise ValueError(
                    f"Mask {gt_path} is {mask.shape[1]}x{mask.shape[0]} but its frame {img_path} "
                    f"is {img.shape[1]}x{img.shape[0]} (W x H)"
                )
            frames.append(img)
            masks.append(mask)
        h, w = frames[0].shape[:2]
        params = self.augmentation.get_params(rng, h, w)
        frames, masks = self.augmentation.apply(frames, masks, params)
        image = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()  # T,3,H,W
        mask_arr = np.stack(masks)  # T, H, W
        boxes, valid = masks_to_boxes(mask_arr)
        return {
            "image": image,
            "sem_seg": torch.from_numpy(mask_arr.astype(np.float32)),
            "class_id": int(record.get("class_id", -1)),
            "boxes": torch.from_numpy(boxes),
            "box_valid": torch.from_numpy(valid),
            "frame_names": [_frame_name(record, i) for i in indices],
            "frame_indices": [int(i) for i in indices],
            "video_id": record["video_id"],
        }


def build_mapper(cfg, is_train: bool = True):
    """The mapper named by ``INPUT.DATASET_MAPPER_NAME``, built as ``cls(cfg, is_train=...)``."""
    cls = MAPPER_REGISTRY.get_for(cfg.INPUT.DATASET_MAPPER_NAME, "INPUT.DATASET_MAPPER_NAME")
    return cls(cfg, is_train=is_train)


class VideoTestFrames(Dataset):
    """The test frame dicts of one video, in temporal order, at their original size.

    ``dataset[i]``::

        {"image": uint8 (3, H, W) in ``image_format``, "height": H, "width": W,
         "video_id", "frame_index": i, "video_length", "file_name", "gt_file_name"
         (None when the frame has no GT), "frame_name",
         "class_id": int (the video's pathological class, -1 unknown),
         "gt_box": [x_min, y_min, w, h] in pixels, or None (no GT / no polyp / no boxes)}

    Iterating yields them in order; wrap in a DataLoader (``batch_size=None``) to read ahead
    in worker processes (:func:`vps_d2.data.build_test_loader`).
    """

    def __init__(self, record: dict, image_format: str = "RGB") -> None:
        check_record(record)
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"INPUT.FORMAT must be 'RGB' or 'BGR', got {image_format!r}")
        self.record = record
        self.image_format = image_format

    def __len__(self) -> int:
        return int(self.record["length"])

    def __getitem__(self, i: int) -> dict:
        n = len(self)
        if not 0 <= i < n:
            raise IndexError(f"frame {i} of video '{self.record['video_id']}' ({n} frames)")
        img = read_image(self.record["file_names"][i], self.image_format)
        h, w = img.shape[:2]
        return {
            "image": torch.from_numpy(img).permute(2, 0, 1).contiguous(),  # 3, H, W
            "height": h,
            "width": w,
            "video_id": self.record["video_id"],
            "frame_index": i,
            "video_length": n,
            "file_name": self.record["file_names"][i],
            "gt_file_name": self.record["gt_file_names"][i],
            "frame_name": _frame_name(self.record, i),
            "class_id": int(self.record.get("class_id", -1)),
            "gt_box": _gt_box(self.record, i),
        }

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]
