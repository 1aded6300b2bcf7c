"""Writing images and videos that are never half-done.

:class:`VideoWriter` writes BGR frames with OpenCV. It tries a list of codecs (``mp4v``,
then ``MJPG`` in an ``.avi``) and a codec counts as working only when the OpenCV writer
opens *and* a test frame written with it gives a non-empty file that reads back; the
fallback therefore fires whenever the first codec is unusable, not only when OpenCV
reports it. Frames go to a hidden temporary file in the output folder which is renamed
over the output on success and removed on failure, so a partial video is never left where
the finished one is expected; the hidden files of writers that were killed (``kill -9``)
are removed when the next writer starts in that folder. :func:`write_image` writes one
image atomically.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence

import cv2
import numpy as np

from vps_d2.utils.file_io import (
    atomic_write_bytes,
    commit_temp_file,
    make_temp_path,
    remove_stale_temp_files,
)

from .paths import check_output_path

__all__ = ["VideoWriter", "codec_candidates", "write_image"]

logger = logging.getLogger(__name__)


def write_image(path: str, image: np.ndarray) -> None:
    """Write a BGR (H, W, 3) or gray (H, W) uint8 image atomically (temp file + rename)."""
    ext = os.path.splitext(path)[1].lower() or ".png"
    params = {
        ".jpg": [cv2.IMWRITE_JPEG_QUALITY, 95],
        ".jpeg": [cv2.IMWRITE_JPEG_QUALITY, 95],
        ".png": [cv2.IMWRITE_PNG_COMPRESSION, 9],
    }.get(ext, [])
    ok, buf = cv2.imencode(ext, image, params)
    if not ok:
        raise ValueError(f"Cannot encode an image as {ext!r} for {path!r}")
    atomic_write_bytes(path, buf.tobytes())


def codec_candidates(path: str) -> list[tuple[str, str]]:
    """``[(fourcc, extension)]`` to try for ``path``: its own container first, then MJPG/avi."""
    ext = os.path.splitext(path)[1].lower()
    if ext == ".avi":
        return [("MJPG", ".avi"), ("XVID", ".avi")]
    return [("mp4v", ext or ".mp4"), ("MJPG", ".avi")]


def _create_cv_writer(path: str, fourcc: str, fps: float, size: tuple[int, int]):
    """cv2.VideoWriter (a function so tests can make a codec fail)."""
    return cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*fourcc), float(fps), size)


def _temp_path(folder: str, base: str, ext: str, tag: str) -> str:
    return make_temp_path(os.path.join(folder, base + ext), tag=tag, keep_ext=True)


def _probe_codec(
    folder: str, base: str, fourcc: str, ext: str, fps: float, size: tuple[int, int]
) -> str | None:
    """Write one test frame with ``fourcc`` and read it back; None if it works, else why."""
    tmp = _temp_path(folder, base, ext, "probe")
    try:
        w = _create_cv_writer(tmp, fourcc, fps, size)
        try:
            if not w.isOpened():
                return "OpenCV could not open a writer with it"
            frame = np.zeros((size[1], size[0], 3), np.uint8)
            frame[:, : size[0] // 2] = (40, 200, 220)
            w.write(frame)
        finally:
            w.release()
        if not os.path.isfile(tmp) or os.path.getsize(tmp) == 0:
            return "a written test frame produced an empty file"
        cap = cv2.VideoCapture(tmp)
        ok = cap.isOpened() and cap.read()[0]
        cap.release()
        return None if ok else "the test file could not be read back"
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class VideoWriter:
    """Write BGR uint8 (H, W, 3) frames to a video file atomically, with codec fallback.

    Hidden temporary files left in the output folder by writers that were killed are
    removed first (only those of processes that no longer exist).
    ``codecs`` (default :func:`codec_candidates`) are tried in order; the first one that
    passes a test (writer opens, a test frame gives a non-empty file that reads back) is
    used. When it is not the first, the fallback is logged and the output gets that
    codec's extension (``demo.mp4`` -> ``demo.avi``); :attr:`path` is the final name.
    Use as a context manager: on an exception the temporary file is removed and nothing
    appears at :attr:`path`.
    """

    def __init__(
        self,
        path: str,
        *,
        fps: float,
        frame_size: tuple[int, int],
        codecs: Sequence[tuple[str, str]] | None = None,
    ) -> None:
        if not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"VideoWriter: fps must be a positive number, got {fps}")
        width, height = (int(s) for s in frame_size)
        if width <= 0 or height <= 0:
            raise ValueError(f"VideoWriter: frame_size must be positive (w, h), got {frame_size}")
        self.requested_path = check_output_path(path)
        self.fps, self.frame_size = float(fps), (width, height)
        folder = os.path.dirname(self.requested_path)
        remove_stale_temp_files(folder)  # .partial/.probe files of killed writers
        root, _ = os.path.splitext(self.requested_path)
        base = os.path.basename(root)
        failures = []
        for i, (fourcc, ext) in enumerate(codecs or codec_candidates(self.requested_path)):
            why = _probe_codec(folder, base, fourcc, ext, self.fps, self.frame_size)
            if why is None:
                self.fourcc = fourcc
                same = ext == os.path.splitext(self.requested_path)[1].lower()
                self.path = self.requested_path if same else root + ext
                if i > 0:
                    logger.warning(
                        "Video codec fallback: %s. Writing %s with %s instead of %s.",
                        "; ".join(failures),
                        self.path,
                        fourcc,
                        self.requested_path,
                    )
                break
            failures.append(f"{fourcc}/{ext} unusable ({why})")
        else:
            raise RuntimeError(
                f"No video codec works for {self.requested_path!r}: "
                + "; ".join(failures)
                + ". Write per-frame images instead (give a folder as the output)."
            )
        self._tmp = _temp_path(folder, base, os.path.splitext(self.path)[1], "partial")
        self._writer = _create_cv_writer(self._tmp, self.fourcc, self.fps, self.frame_size)
        if not self._writer.isOpened():
            self.abort()
            raise RuntimeError(f"Cannot open a {self.fourcc} writer for {self.path!r}")
        self.count = 0
        logger.info(
            "Writing %s (%s, %.3g fps, %dx%d)", self.path, self.fourcc, self.fps, width, height
        )

    def write(self, frame: np.ndarray) -> None:
        """Append one BGR uint8 frame of exactly ``frame_size``."""
        if self._writer is None:
            raise RuntimeError(f"VideoWriter for {self.path!r} is closed")
        w, h = self.frame_size
        if frame.shape != (h, w, 3) or frame.dtype != np.uint8:
            raise ValueError(
                f"VideoWriter {self.path!r}: expected a uint8 frame of shape {(h, w, 3)}, got "
                f"{frame.dtype} {frame.shape} (OpenCV would silently drop it)"
            )
        self._writer.write(np.ascontiguousarray(frame))
        self.count += 1

    def close(self) -> str:
        """Finish the file and move it to :attr:`path`; returns that path."""
        if self._writer is None:
            return self.path
        self._writer.release()
        self._writer = None
        if self.count == 0:
            self._remove_tmp()
            raise RuntimeError(f"No frame was written to {self.path!r}; nothing saved")
        if not os.path.isfile(self._tmp) or os.path.getsize(self._tmp) == 0:
            self._remove_tmp()
            raise RuntimeError(f"Writing {self.path!r} with {self.fourcc} gave an empty file")
        commit_temp_file(self._tmp, self.path)
        logger.info("Saved %d frames to %s", self.count, self.path)
        return self.path

    def _remove_tmp(self) -> None:
        if os.path.exists(self._tmp):
            os.remove(self._tmp)

    def abort(self) -> None:
        """Stop writing and delete the temporary file (the output is not created)."""
        if getattr(self, "_writer", None) is not None:
            self._writer.release()
            self._writer = None
        self._remove_tmp()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
