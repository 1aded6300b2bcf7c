"""Reading a video as a stream of test frames.

:class:`VideoReader` opens a video file (``.mp4``, ``.avi``, ``.mkv`` ...), a folder of
frames, a glob pattern or a list of image files, or a webcam, and yields the *test frame
dicts* of :mod:`vps_d2.data` one at a time, in temporal order:

* frames are decoded lazily, so memory does not grow with the video's length;
* frame folders, globs and image lists are put in order with
  :func:`vps_d2.data.frame_order.sort_frames` (SUN-SEG stems, numeric stems), never with
  the lexical order of a shell glob;
* the source frame rate is read from the container (``fps``), never hard-coded.
"""

from __future__ import annotations

import glob
import logging
import math
import os
from collections.abc import Iterator, Sequence

import cv2
import numpy as np
import torch

from vps_d2.data.datasets.folder import list_image_files
from vps_d2.data.frame_order import sort_frames
from vps_d2.data.io import is_image_file, read_image, read_mask
from vps_d2.utils.opencv_compat import capture_property

from .paths import GLOB_CHARS

__all__ = [
    "DEFAULT_FPS",
    "VIDEO_EXTENSIONS",
    "VideoReader",
    "frame_to_bgr",
    "read_gt_mask",
]

logger = logging.getLogger(__name__)

#: File extensions (lower case) treated as video containers.
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".wmv", ".webm")
#: Frame rate used for frame folders and cameras that do not report one.
DEFAULT_FPS = 30.0


def _expand_images(items: Sequence[str]) -> list[str]:
    """Image paths of ``items`` (image files, folders, glob patterns), duplicates removed."""
    paths: list[str] = []
    for item in items:
        item = os.path.expanduser(str(item))
        if os.path.isdir(item):
            found = [os.path.join(item, n) for n in os.listdir(item) if is_image_file(n)]
            if not found:
                raise ValueError(f"No image files in the frame folder {item!r}")
            paths.extend(found)
        elif any(c in item for c in GLOB_CHARS) and not os.path.exists(item):
            found = [p for p in glob.glob(item) if is_image_file(p) and os.path.isfile(p)]
            if not found:
                raise ValueError(f"The glob pattern {item!r} matches no image file")
            paths.extend(found)
        elif os.path.isfile(item):
            if not is_image_file(item):
                raise ValueError(
                    f"{item!r} is not an image file (expected one of .jpg .png .bmp .tif); "
                    "use --video-input for a video"
                )
            paths.append(item)
        else:
            raise FileNotFoundError(f"Input not found: {item!r}")
    seen: set[str] = set()
    unique = []
    for p in paths:
        key = os.path.abspath(p)
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def _case_of(paths: Sequence[str]) -> str:
    """The folder name shared by all ``paths`` (the SUN case), or ""."""
    parents = {os.path.basename(os.path.dirname(os.path.abspath(p))) for p in paths}
    return parents.pop() if len(parents) == 1 else ""


def _gt_index(gt_dir: str) -> tuple[dict[str, str], dict[int, str]]:
    """``({stem: path}, {last number in the stem: path})`` of the masks in ``gt_dir``."""
    by_stem = list_image_files(gt_dir)
    by_number: dict[int, str] = {}
    for stem, path in by_stem.items():
        digits = "".join(c if c.isdigit() else " " for c in stem).split()
        if digits:
            by_number.setdefault(int(digits[-1]), path)
    return by_stem, by_number


class VideoReader:
    """Iterate the frames of one video as test frame dicts (see :mod:`vps_d2.data`).

    Each item is ``{"image": uint8 Tensor (3, H, W) in ``format`` order, "height": H,
    "width": W, "video_id", "frame_index" (0-based), "video_length" (-1 when unknown),
    "file_name", "gt_file_name" (None without a match), "frame_name"}``.

    Frame names: the file stem for image inputs; the 0-based index as ``"%06d"`` for video
    files and cameras. Ground truth (``gt_dir``, one flat folder of masks) is matched
    (:attr:`gt_matching`) by frame stem ("name": frame folders whose stems the masks share);
    for video files and cameras by the last number of the mask's stem when the masks are
    numbered from 0 (= the 0-based frame index, "number"); otherwise by order ("order":
    the i-th mask in temporal order, SUN-SEG's included, is frame i), e.g. a SUN-SEG case's
    GT folder beside a video of its frames.

    Attributes:
        kind: "video", "frames" or "webcam".
        fps: the source frame rate (``DEFAULT_FPS`` when the source reports none).
        width, height: size of the first frame.
        gt_matching: how masks are matched to frames ("name", "number", "order"; "" without
            ``gt_dir``), with :meth:`describe_gt_matching` saying it in words.
        num_frames: number of frames (after ``max_frames``); for video files the
            container's count, which some codecs get slightly wrong; None for a camera.
    """

    def __init__(
        self,
        source: str | int | Sequence[str],
        *,
        format: str = "RGB",
        gt_dir: str | None = None,
        max_frames: int | None = None,
        fps: float | None = None,
        video_id: str | None = None,
    ) -> None:
        if format not in ("RGB", "BGR"):
            raise ValueError(f"VideoReader: format must be 'RGB' or 'BGR', got {format!r}")
        if max_frames is not None and max_frames <= 0:
            raise ValueError(f"max_frames must be positive, got {max_frames}")
        self.format = format
        self.max_frames = max_frames
        self._paths: list[str] = []
        self._cap: cv2.VideoCapture | None = None
        self._first: np.ndarray | None = None
        src_fps: float | None = None
        count: int | None = None

        if isinstance(source, int) and not isinstance(source, bool):
            self.kind = "webcam"
            self.source = f"camera {source}"
            cap = cv2.VideoCapture(source)
            ok, first = cap.read() if cap.isOpened() else (False, None)
            if not ok or first is None:
                cap.release()
                raise RuntimeError(
                    f"No usable camera at index {source}: cv2.VideoCapture({source}) could not "
                    "open it or read a frame (is a webcam connected and allowed?)"
                )
            self._cap, self._first = cap, first
            src_fps = capture_property(cap, cv2.CAP_PROP_FPS)
            self.video_id = video_id or f"webcam{source}"
        elif isinstance(source, str) and os.path.isfile(source) and not is_image_file(source):
            self.kind = "video"
            self.source = source
            first, src_fps, count = self._probe_video(source)
            self._first = first
            self.video_id = video_id or os.path.splitext(os.path.basename(source))[0]
        else:
            items = [source] if isinstance(source, str) else list(source)
            if not items:
                raise ValueError("VideoReader: no input given (empty list of images)")
            self.kind = "frames"
            paths = _expand_images(items)
            self._paths = sort_frames(paths, _case_of(paths))
            self.source = items[0] if len(items) == 1 else f"{len(items)} inputs"
            self._first = read_image(self._paths[0], "BGR")
            count = len(self._paths)
            case = _case_of(self._paths)
            self.video_id = video_id or case or "frames"

        if fps is not None:
            if not (math.isfinite(fps) and fps > 0):
                raise ValueError(f"fps must be a positive number, got {fps}")
            self.fps = float(fps)
        elif src_fps and math.isfinite(src_fps) and src_fps > 0:
            self.fps = float(src_fps)
        else:
            if self.kind != "frames":
                logger.warning("%s reports no frame rate; using %.1f fps", self.source, DEFAULT_FPS)
            self.fps = DEFAULT_FPS
        self.height, self.width = (int(s) for s in self._first.shape[:2])
        if count is not None and max_frames is not None:
            count = min(count, max_frames)
        self.num_frames = count

        self._gt_by_stem: dict[str, str] = {}
        self._gt_by_number: dict[int, str] = {}
        if gt_dir is not None:
            if not os.path.isdir(gt_dir):
                raise FileNotFoundError(f"Ground-truth folder not found: {gt_dir!r}")
            self._gt_by_stem, self._gt_by_number = _gt_index(gt_dir)
            if not self._gt_by_stem:
                raise ValueError(f"No mask images in the ground-truth folder {gt_dir!r}")
        self.gt_dir = gt_dir
        self.gt_matching = self._choose_gt_matching() if gt_dir is not None else ""
        self._gt_in_order = sort_frames(self._gt_by_stem.values()) if gt_dir is not None else []

    def _choose_gt_matching(self) -> str:
        if self.kind == "frames":
            stems = {os.path.splitext(os.path.basename(p))[0] for p in self._paths}
            return "name" if stems & set(self._gt_by_stem) else "order"
        return "number" if 0 in self._gt_by_number else "order"

    def describe_gt_matching(self) -> str:
        """How the masks of ``gt_dir`` are matched to the frames, in words."""
        return {
            "name": "by file name (mask stem = frame stem)",
            "number": "by the number at the end of the mask's name (= the 0-based frame index)",
            "order": "by order (the i-th mask in temporal order is frame i; the names do not "
            "match the frames)",
            "": "no ground truth",
        }[self.gt_matching]

    @staticmethod
    def _probe_video(path: str) -> tuple[np.ndarray, float | None, int | None]:
        if os.path.getsize(path) == 0:
            raise ValueError(f"Video file is empty (0 bytes): {path!r}")
        cap = cv2.VideoCapture(path)
        try:
            if not cap.isOpened():
                raise ValueError(
                    f"Cannot open video {path!r}: not a video OpenCV can decode, or corrupt"
                )
            ok, first = cap.read()
            if not ok or first is None:
                raise ValueError(f"Video {path!r} has no readable frame (empty or corrupt)")
            fps = capture_property(cap, cv2.CAP_PROP_FPS)  # None when unknown (0 or -1)
            n = capture_property(cap, cv2.CAP_PROP_FRAME_COUNT)
        finally:
            cap.release()
        return first, fps, (int(n) if n is not None else None)

    def __len__(self) -> int:
        if self.num_frames is None:
            raise TypeError(f"The number of frames of {self.source} is not known")
        return self.num_frames

    def gt_file_for(self, frame_name: str, index: int) -> str | None:
        """Path of the mask of a frame, or None (see the class docstring)."""
        if self.gt_matching == "order":
            return self._gt_in_order[index] if index < len(self._gt_in_order) else None
        path = self._gt_by_stem.get(frame_name)
        if path is None and self.gt_matching == "number":
            path = self._gt_by_number.get(index)
        return path

    def _bgr_frames(self) -> Iterator[tuple[np.ndarray, str, str]]:
        """(BGR uint8 (H, W, 3), file_name, frame_name) in order, decoded one at a time."""
        if self.kind == "frames":
            for i, p in enumerate(self._paths):
                img = self._first if i == 0 and self._first is not None else read_image(p, "BGR")
                self._first = None  # the probe frame is used once
                yield img, p, os.path.splitext(os.path.basename(p))[0]
            return
        if self.kind == "webcam":
            cap = self._cap
            assert cap is not None
            i = 0
            if self._first is not None:
                first, self._first = self._first, None
                yield first, self.source, f"{i:06d}"
                i += 1
            while cap.isOpened():
                ok, img = cap.read()
                if not ok or img is None:
                    logger.info("Camera stream ended after %d frames", i)
                    return
                yield img, self.source, f"{i:06d}"
                i += 1
            return
        cap = cv2.VideoCapture(self.source)
        self._first = None
        try:
            if not cap.isOpened():
                raise ValueError(f"Cannot re-open video {self.source!r}")
            i = 0
            while True:
                ok, img = cap.read()
                if not ok or img is None:
                    break
                yield img, self.source, f"{i:06d}"
                i += 1
            if (
                self.num_frames is not None
                and i < self.num_frames
                and (self.max_frames is None or i < self.max_frames)
            ):
                logger.warning(
                    "%s: the container announced %d frames, %d could be decoded",
                    self.source,
                    self.num_frames,
                    i,
                )
        finally:
            cap.release()

    def __iter__(self) -> Iterator[dict]:
        length = self.num_frames if self.num_frames is not None else -1
        n = 0
        for bgr, file_name, frame_name in self._bgr_frames():
            if self.max_frames is not None and n >= self.max_frames:
                break
            img = bgr if self.format == "BGR" else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            yield {
                "image": torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))),  # 3,H,W
                "height": int(img.shape[0]),
                "width": int(img.shape[1]),
                "video_id": self.video_id,
                "frame_index": n,
                "video_length": length,
                "file_name": file_name,
                "gt_file_name": self.gt_file_for(frame_name, n),
                "frame_name": frame_name,
            }
            n += 1

    def close(self) -> None:
        """Release the camera (video files are opened per iteration and need no close)."""
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def frame_to_bgr(image: torch.Tensor, format: str = "RGB") -> np.ndarray:
    """Test frame ``"image"`` uint8 (3, H, W) in ``format`` order -> BGR uint8 (H, W, 3)."""
    arr = np.ascontiguousarray(image.detach().cpu().numpy().transpose(1, 2, 0))
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return cv2.cvtColor(arr, cv2.COLOR_RGB2BGR) if format == "RGB" else arr


def read_gt_mask(path: str | None, height: int, width: int) -> np.ndarray | None:
    """The bool (height, width) mask at ``path`` (nearest-resized if its size differs)."""
    if not path:
        return None
    m = read_mask(path)
    if m.shape != (height, width):
        logger.warning(
            "Mask %s is %dx%d, the frame %dx%d: resizing it",
            path,
            m.shape[1],
            m.shape[0],
            width,
            height,
        )
        m = cv2.resize(m.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0
    return m
