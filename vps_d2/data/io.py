"""Robust image and mask reading, shared by the dataset readers, mappers, demo and evaluator.

Frames: :func:`read_image` returns uint8 ``(H, W, 3)`` in the asked channel order, whatever
the file holds (grayscale, BGR, BGRA, 8 or 16 bit).

Masks: :func:`read_mask` returns bool ``(H, W)``, True = polyp. The rule:

* the mask is read as stored (colour masks are converted to gray, 16-bit masks scaled to
  8 bit);
* a mask whose maximum value is 1 is a **0/1 mask**: foreground = value == 1;
* otherwise foreground = value > 128 (0/255 masks, and anti-aliased edges cut at the
  middle gray, as the SUN-SEG toolbox does).

Neither function applies EXIF orientation, so a frame and its mask always share pixel
coordinates. A missing file raises :class:`FileNotFoundError`; an empty, truncated or
undecodable file raises :class:`DataReadError`; both name the file. ``cv2.imread``'s silent
``None`` is never passed on. :func:`read_image_bytes` gives the checked bytes of a file to
readers that decode it themselves (the SUN-SEG protocol's grayscale reading), so every
reader (training and test frames, masks, predictions) fails with the same type and message.
"""

from __future__ import annotations

import logging
import os

import cv2
import numpy as np

__all__ = ["IMAGE_EXTENSIONS", "DataReadError", "ImageReadError", "is_image_file", "mask_to_box"]
__all__ += ["read_image", "read_image_bytes", "read_mask"]

logger = logging.getLogger(__name__)

# File extensions (lower case) the readers treat as images; matching is case-insensitive.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")

_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"
_PNG_SIG = b"\x89PNG\r\n\x1a\n"


class DataReadError(ValueError, OSError):
    """A frame, mask or prediction file exists but cannot be read (empty, truncated, corrupt).

    The message names the file and the problem. A ``ValueError`` (bad input data, reported
    by the tools as one line) and an ``OSError`` (as it was before, for ``except OSError``).
    It survives being re-raised by a ``DataLoader`` worker (one message argument).
    """


#: The former name of :class:`DataReadError` (the same class).
ImageReadError = DataReadError


def is_image_file(name: str) -> bool:
    """True for a visible file name with an image extension (any case).

    Hidden files (``.DS_Store``, macOS ``._*`` resource forks) are never images.
    """
    base = os.path.basename(name)
    if not base or base.startswith("."):
        return False
    return os.path.splitext(base)[1].lower() in IMAGE_EXTENSIONS


def _read_bytes(path: str) -> bytes:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"Image file not found: {path}")
    if os.path.isdir(path):
        raise DataReadError(f"Expected an image file, found a directory: {path}")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise DataReadError(f"Cannot read image file {path}: {e}") from e
    if not data:
        raise DataReadError(f"Image file is empty (0 bytes): {path}")
    return data


def _check_complete(data: bytes, path: str) -> None:
    """Catch truncated JPEG/PNG files, which OpenCV decodes partially without an error."""
    if data.startswith(_JPEG_SOI):
        # Entropy-coded data byte-stuffs 0xFF, so the end-of-image marker only appears as a
        # marker; files may carry a little padding after it.
        if _JPEG_EOI not in data[-4096:]:
            raise DataReadError(
                f"Truncated JPEG file (no end-of-image marker): {path}. Re-copy or re-extract it."
            )
    elif data.startswith(_PNG_SIG):
        if b"IEND" not in data[-64:]:
            raise DataReadError(
                f"Truncated PNG file (no IEND chunk): {path}. Re-copy or re-extract it."
            )


def read_image_bytes(path: str) -> bytes:
    """The bytes of an image file, checked: it exists, is not empty, and a JPEG/PNG is complete.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        DataReadError: a folder, unreadable, empty, or a truncated JPEG/PNG.
    """
    data = _read_bytes(path)
    _check_complete(data, path)
    return data


def _decode(path: str) -> np.ndarray:
    """Decode ``path`` as stored: (H, W) or (H, W, C) with C in {1, 3, 4}, 8 bit (uint8)."""
    data = read_image_bytes(path)
    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise DataReadError(
            f"Cannot decode image file {path}: corrupt, truncated or not an image "
            f"({len(data)} bytes)"
        )
    if img.dtype == np.uint16:
        img = np.round(img.astype(np.float32) / 257.0).astype(np.uint8)
    elif img.dtype == bool:
        img = img.astype(np.uint8) * 255
    elif img.dtype != np.uint8:
        raise DataReadError(
            f"Unsupported pixel type {img.dtype} in {path}: expected 8- or 16-bit integers"
        )
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (3, 4)):
        raise DataReadError(f"Unsupported image layout {img.shape} in {path}")
    return img


def read_image(path: str, format: str = "RGB") -> np.ndarray:
    """Read a frame as uint8 ``(H, W, 3)`` in ``format`` channel order ("RGB" or "BGR").

    Grayscale frames are replicated to 3 channels; the alpha channel of RGBA frames is
    dropped; 16-bit frames are scaled to 8 bit.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        DataReadError: the file is empty, truncated or cannot be decoded.
        ValueError: unknown ``format``.
    """
    if format not in ("RGB", "BGR"):
        raise ValueError(f"read_image: format must be 'RGB' or 'BGR', got {format!r}")
    img = _decode(path)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    if format == "RGB":
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(img)  # H, W, 3


def read_mask(path: str) -> np.ndarray:
    """Read a ground-truth mask as bool ``(H, W)``, True = polyp.

    A mask whose maximum is 1 is a 0/1 mask (foreground = 1); otherwise foreground is
    value > 128 (0/255 masks with or without anti-aliased edges). Colour masks are
    converted to gray first (the alpha channel is ignored).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        DataReadError: the file is empty, truncated or cannot be decoded.
    """
    m = _decode(path)
    if m.ndim == 3:
        code = cv2.COLOR_BGRA2GRAY if m.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        m = cv2.cvtColor(m, code)
    if m.max() == 1:
        return m == 1  # H, W
    return m > 128  # H, W


def mask_to_box(mask: np.ndarray) -> list[float] | None:
    """Tight box ``[x_min, y_min, w, h]`` in pixels of a bool ``(H, W)`` mask; None if empty.

    ``w``/``h`` count pixels, so a single foreground pixel at (x, y) gives [x, y, 1, 1].
    """
    if mask.ndim != 2:
        raise ValueError(f"mask_to_box expects an (H, W) mask, got shape {mask.shape}")
    ys = np.flatnonzero(mask.any(axis=1))
    if ys.size == 0:
        return None
    xs = np.flatnonzero(mask.any(axis=0))
    x0, x1, y0, y1 = int(xs[0]), int(xs[-1]), int(ys[0]), int(ys[-1])
    return [float(x0), float(y0), float(x1 - x0 + 1), float(y1 - y0 + 1)]
