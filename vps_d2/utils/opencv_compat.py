"""One behaviour for the OpenCV calls whose results differ between OpenCV 4.x and 5.x.

vps_d2 supports ``opencv-python-headless`` 4.8 up to 5.x (see docs/install.md, "Tested
versions"). Every ``cv2`` call of the package, the tools and the dataset scripts was run on
4.8, 4.14 and 5.0 and its result compared. These differ, and callers use the helpers here:

- ``cv2.findNonZero``: (n, 1, 2) on 4.x, (n, 2) on 5.x, None when empty.
  :func:`find_nonzero` is (n, 2) everywhere, (0, 2) when empty.
- ``cv2.calcHist`` of one channel: (bins, 1) on 4.x, (bins,) on 5.x. :func:`histogram_u8`
  is (256,) everywhere.
- ``cv2.warpAffine``: 4.x puts the source coordinates on a 1/32-pixel grid (bilinear) and
  rounds them in fixed point; 5.x uses finer coordinates and other rounding, so the same
  warp gives other pixels (up to 6 levels of 255 on noise). :func:`warp_affine` rebuilds
  4.x's fixed-point coordinates in NumPy and hands them to ``cv2.remap``, whose fixed-point
  kernels are the same on 4.x and 5.x: a warped 8-bit image, or multi-channel float32
  image, is the same bytes on every supported OpenCV, so the synthetic sample data, the
  training augmentation and the numbers in the docs do not depend on the OpenCV.
- ``cv2.resize`` with ``INTER_NEAREST_EXACT``: 5.x picks other source pixels for some size
  ratios (e.g. 128 -> 80 columns). :func:`resize_nearest_exact` is 4.x's rule in NumPy.
- ``VideoCapture.get`` of a value the backend does not know: 0.0 on 4.x, -1.0 on 5.x.
  :func:`capture_property` returns None for both.
- ``cv2.exp`` of a 1-D array is (n, 1) on 4.x and (n,) on 5.x, and ``cv2.exp`` and
  ``cv2.sepFilter2D`` on float64 round the last bit differently between releases: the
  metrics use neither (see :mod:`vps_d2.evaluation.metrics`).
- ``cv2.putText`` / ``cv2.getTextSize``: other glyph metrics on 5.x. The visualizer places
  text with ``getTextSize`` on every version, so only the pixels of drawn text differ.

Everything else vps_d2 calls (reading and writing images and their flags, resizing, colour
conversion, look-up tables, ``transform``, morphology, ``distanceTransform``, ``reduce``,
``minMaxLoc``, ``compare``, ``boundingRect``, ``findContours``, colour maps, the mp4v and
MJPG video codecs) returns the same shapes and values on those versions;
``tests/test_opencv_compat.py`` checks each shape-sensitive call against NumPy.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = [
    "OPENCV_VERSION",
    "capture_property",
    "find_nonzero",
    "histogram_u8",
    "resize_nearest_exact",
    "warp_affine",
    "warp_affine_maps",
]

#: (major, minor) of the installed OpenCV.
OPENCV_VERSION = tuple(int(v) for v in cv2.__version__.split(".")[:2])

# OpenCV 4.x warpAffine: products M * x on a 1/2^10 grid, interpolation on a 1/2^5 grid.
_AB_BITS = 10
_INTER_BITS = 5
_INTER_TAB = 1 << _INTER_BITS
_INTERPOLATIONS = {"linear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST}


def find_nonzero(mask: np.ndarray) -> np.ndarray:
    """int32 (n, 2) ``(x, y)`` of the non-zero pixels of a (H, W) array, in row-major order.

    ``cv2.findNonZero`` returns (n, 1, 2) on OpenCV 4.x, (n, 2) on 5.x and None for an
    all-zero mask; here the result is always (n, 2), with n = 0 for an all-zero mask.
    """
    if mask.ndim != 2:
        raise ValueError(f"find_nonzero: expected a (H, W) array, got shape {mask.shape}")
    pts = cv2.findNonZero(mask)
    if pts is None:
        return np.empty((0, 2), np.int32)
    return pts.reshape(-1, 2)


def histogram_u8(image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """float32 (256,) counts of each level of a uint8 (H, W) ``image`` where ``mask`` != 0.

    ``cv2.calcHist`` of one channel is (256, 1) on OpenCV 4.x and (256,) on 5.x. Counts are
    exact below 2^24 pixels (float32).
    """
    return cv2.calcHist([image], [0], mask, [256], [0, 256]).reshape(256)


def _nearest_exact_index(n_in: int, n_out: int) -> np.ndarray:
    """int64 (n_out,): OpenCV 4.x's INTER_NEAREST_EXACT source index (16-bit fixed point)."""
    step = ((n_in << 16) + n_out // 2) // n_out
    start = step // 2 - n_in % 2
    return np.minimum((step * np.arange(n_out, dtype=np.int64) + start) >> 16, n_in - 1)


def resize_nearest_exact(src: np.ndarray, dsize: tuple[int, int]) -> np.ndarray:
    """``cv2.resize(src, dsize, interpolation=cv2.INTER_NEAREST_EXACT)`` as OpenCV 4.x does it.

    Args:
        src: (H, W) or (H, W, C) array of any dtype.
        dsize: (width, height) of the output.

    Returns:
        (height, width[, C]) array of ``src``'s dtype: each output pixel copies the source
        pixel OpenCV 4.x picks (the one whose centre is nearest), on every OpenCV version.
    """
    width, height = (int(v) for v in dsize)
    if width < 1 or height < 1:
        raise ValueError(f"resize_nearest_exact: dsize must be positive (w, h), got {dsize}")
    rows = _nearest_exact_index(src.shape[0], height)
    cols = _nearest_exact_index(src.shape[1], width)
    return np.ascontiguousarray(src.take(rows, axis=0).take(cols, axis=1))


def capture_property(cap: cv2.VideoCapture, prop: int) -> float | None:
    """``cap.get(prop)`` if it is a positive finite number, else None.

    A value the backend does not know is 0.0 on OpenCV 4.x and -1.0 on 5.x.
    """
    value = float(cap.get(prop))
    return value if math.isfinite(value) and value > 0 else None


def _inverse_affine(m: np.ndarray) -> np.ndarray:
    """OpenCV 4.x's inversion of a forward 2x3 matrix (same operations, same order)."""
    m = m.copy()
    d = m[0] * m[4] - m[1] * m[3]
    d = 1.0 / d if d != 0 else 0.0
    a11, a22 = m[4] * d, m[0] * d
    m[0] = a11
    m[1] *= -d
    m[3] *= -d
    m[4] = a22
    b1 = -m[0] * m[2] - m[1] * m[5]
    b2 = -m[3] * m[2] - m[4] * m[5]
    m[2], m[5] = b1, b2
    return m


def warp_affine_maps(
    matrix: np.ndarray, dsize: tuple[int, int], *, nearest: bool, inverse_map: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """The fixed-point ``cv2.remap`` maps of OpenCV 4.x's ``cv2.warpAffine``.

    Args:
        matrix: (2, 3) affine matrix (any float dtype), forward (source -> destination)
            unless ``inverse_map``.
        dsize: (width, height) of the output.
        nearest: nearest-neighbour maps (else bilinear).
        inverse_map: ``matrix`` maps destination to source pixels (``WARP_INVERSE_MAP``).

    Returns:
        ``(xy, table)``: int16 (H, W, 2) integer source pixel (x, y) and, for bilinear,
        uint16 (H, W) index ``32 * (y_frac) + x_frac`` of the 1/32-pixel fractions (None
        for nearest).
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (2, 3):
        raise ValueError(f"warp_affine: matrix must be 2x3, got shape {m.shape}")
    m = m.reshape(6)
    if not inverse_map:
        m = _inverse_affine(m)
    width, height = (int(s) for s in dsize)
    scale = 1 << _AB_BITS
    shift = _AB_BITS if nearest else _AB_BITS - _INTER_BITS
    round_delta = scale // 2 if nearest else scale // _INTER_TAB // 2
    x = np.arange(width, dtype=np.float64)
    y = np.arange(height, dtype=np.float64)
    # saturate_cast<int>(double) rounds half to even, as np.rint
    adelta = np.rint(m[0] * x * scale).astype(np.int64)
    bdelta = np.rint(m[3] * x * scale).astype(np.int64)
    x0 = np.rint((m[1] * y + m[2]) * scale).astype(np.int64) + round_delta
    y0 = np.rint((m[4] * y + m[5]) * scale).astype(np.int64) + round_delta
    sx = (x0[:, None] + adelta[None, :]) >> shift  # H, W
    sy = (y0[:, None] + bdelta[None, :]) >> shift
    if nearest:
        xy = np.stack([sx, sy], axis=-1)
        return np.clip(xy, -32768, 32767).astype(np.int16), None
    xy = np.stack([sx >> _INTER_BITS, sy >> _INTER_BITS], axis=-1)
    table = (sy & (_INTER_TAB - 1)) * _INTER_TAB + (sx & (_INTER_TAB - 1))
    return np.clip(xy, -32768, 32767).astype(np.int16), table.astype(np.uint16)


def warp_affine(
    src: np.ndarray,
    matrix: np.ndarray,
    dsize: tuple[int, int],
    *,
    interpolation: str = "linear",
    inverse_map: bool = False,
    border_mode: int = cv2.BORDER_CONSTANT,
    border_value: float = 0,
) -> np.ndarray:
    """``cv2.warpAffine`` as OpenCV 4.x computes it, on every OpenCV version.

    Args:
        src: (H, W) or (H, W, C) image, uint8 or float32.
        matrix: (2, 3) affine matrix, forward unless ``inverse_map``.
        dsize: (width, height) of the output.
        interpolation: "linear" or "nearest".
        inverse_map: ``matrix`` maps destination to source pixels.
        border_mode: a ``cv2.BORDER_*`` constant; ``border_value`` fills BORDER_CONSTANT.

    Returns:
        (height, width[, C]) image of ``src``'s dtype, equal to OpenCV 4.x's
        ``cv2.warpAffine(src, matrix, dsize, flags=..., borderMode=..., borderValue=...)``.
    """
    if interpolation not in _INTERPOLATIONS:
        raise ValueError(
            f"warp_affine: interpolation must be one of {sorted(_INTERPOLATIONS)}, "
            f"got {interpolation!r}"
        )
    nearest = interpolation == "nearest"
    xy, table = warp_affine_maps(matrix, dsize, nearest=nearest, inverse_map=inverse_map)
    value = (border_value,) * 4 if np.isscalar(border_value) else tuple(border_value)
    return cv2.remap(
        src, xy, table, _INTERPOLATIONS[interpolation], borderMode=border_mode, borderValue=value
    )
