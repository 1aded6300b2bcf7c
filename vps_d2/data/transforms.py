"""Clip augmentations: parameters drawn once per clip, applied identically to every frame.

:class:`ClipAugmentation` draws a :class:`ClipAugParams` with ``get_params(rng, h, w)`` and
applies it with ``apply(frames, masks, params)``. What ``apply`` does, in this order:

1. **Geometry and resize in one warp.** Rotation by ``angle`` degrees about the frame centre,
   scaling by ``scale`` about the centre, then a shift that picks the crop window: with
   ``scale > 1`` the enlarged frame is cropped back to the frame size at a random position,
   with ``scale < 1`` the shrunk frame is placed at a random position inside it. The result
   is resized to ``INPUT.SIZE_TRAIN`` (H, W). All of it is one affine warp (OpenCV 4.x's
   ``cv2.warpAffine`` on every OpenCV version, :func:`vps_d2.utils.opencv_compat.warp_affine`;
   pixel centres at ``i + 0.5``, as ``cv2.resize``), bilinear for images and nearest for masks, so
   a mask stays aligned with its frame. Pixels that come from outside the frame are
   ``border_mode="constant"`` (0: black image, background mask; the default, like the
   black margins of colonoscopy frames) or ``"reflect"`` (mirrored image *and* mask).
   Without rotation or scaling this step is a plain resize (``cv2.resize`` bilinear for
   images, OpenCV 4.x's ``INTER_NEAREST_EXACT`` for masks on every OpenCV version).
2. **Flips** (horizontal, then vertical) of the resized frames and masks.
3. **Colour jitter**, images only, in the order brightness, contrast, saturation, hue:
   ``x * b``; ``mean(gray) + c * (x - mean(gray))`` (mean of that frame's gray image);
   ``gray + s * (x - gray)``; hue rotated by ``h`` of the circle (HSV). Factors ``b, c, s``
   are drawn in ``[1 - k, 1 + k]`` for strengths ``k`` = BRIGHTNESS, CONTRAST, SATURATION,
   ``h`` in ``[-HUE, HUE]``; every step clips to [0, 255], the result is rounded to uint8.

``get_params`` always consumes the same amount of randomness whatever the probabilities,
so one clip's parameters do not depend on the settings that were switched off.
:func:`masks_to_boxes` recomputes boxes from the augmented masks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from vps_d2.config import configurable
from vps_d2.utils.opencv_compat import resize_nearest_exact, warp_affine

__all__ = ["ClipAugParams", "ClipAugmentation", "masks_to_boxes"]

_BORDERS = {"constant": cv2.BORDER_CONSTANT, "reflect": cv2.BORDER_REFLECT_101}
_GRAY_WEIGHTS = {"RGB": (0.299, 0.587, 0.114), "BGR": (0.114, 0.587, 0.299)}


@dataclass(frozen=True)
class ClipAugParams:
    """One clip's augmentation parameters (identity: all defaults)."""

    hflip: bool = False
    vflip: bool = False
    angle: float = 0.0  # degrees, counter-clockwise
    scale: float = 1.0
    shift_x: float = 0.0  # crop position in [-1, 1] of the free range |scale - 1| * w / 2
    shift_y: float = 0.0
    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0
    hue: float = 0.0  # fraction of the hue circle

    @property
    def is_geometric_identity(self) -> bool:
        return self.angle == 0.0 and self.scale == 1.0

    @property
    def is_colour_identity(self) -> bool:
        return (
            self.brightness == 1.0
            and self.contrast == 1.0
            and self.saturation == 1.0
            and self.hue == 0.0
        )


def masks_to_boxes(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes of the foreground of each mask.

    Args:
        masks: (T, H, W), foreground where non-zero.

    Returns:
        ``boxes`` float32 (T, 4) as (cx, cy, w, h) divided by (W, H, W, H), in [0, 1]
        (a box spans whole pixels: a single pixel at column x has cx = (x + 0.5) / W,
        w = 1 / W), and ``valid`` bool (T,), False (box all zeros) for an empty mask.
    """
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks_to_boxes: masks must be (T, H, W), got shape {masks.shape}")
    t, h, w = masks.shape
    boxes = np.zeros((t, 4), dtype=np.float32)
    valid = np.zeros((t,), dtype=bool)
    for i in range(t):
        fg = masks[i] != 0
        cols = np.flatnonzero(fg.any(axis=0))
        if len(cols) == 0:
            continue
        rows = np.flatnonzero(fg.any(axis=1))
        x0, x1 = cols[0], cols[-1] + 1
        y0, y1 = rows[0], rows[-1] + 1
        boxes[i] = ((x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h)
        valid[i] = True
    return boxes, valid


class ClipAugmentation:
    """Training augmentation of a clip, identical on all its frames and masks.

    ``apply(frames, masks, params)``: frames uint8 (H, W, 3) each (``image_format`` channel
    order), masks (H, W) each (non-zero = polyp) -> frames uint8 (H', W', 3) and masks uint8
    0/1 (H', W') with (H', W') = ``output_size``.
    """

    @configurable
    def __init__(
        self,
        *,
        output_size: Sequence[int],
        enabled: bool = True,
        hflip_prob: float = 0.5,
        vflip_prob: float = 0.0,
        rotation: float = 0.0,
        rotation_prob: float = 0.0,
        scale_range: Sequence[float] = (1.0, 1.0),
        scale_prob: float = 0.0,
        brightness: float = 0.0,
        contrast: float = 0.0,
        saturation: float = 0.0,
        hue: float = 0.0,
        image_format: str = "RGB",
        border_mode: str = "constant",
    ) -> None:
        if len(output_size) != 2 or min(int(s) for s in output_size) < 1:
            raise ValueError(f"INPUT.SIZE_TRAIN must be (H, W) > 0, got {output_size!r}")
        for key, p in (
            ("HFLIP_PROB", hflip_prob),
            ("VFLIP_PROB", vflip_prob),
            ("ROTATION_PROB", rotation_prob),
            ("SCALE_PROB", scale_prob),
        ):
            if not 0.0 <= float(p) <= 1.0:
                raise ValueError(f"INPUT.AUG.{key} must be a probability in [0, 1], got {p}")
        if len(scale_range) != 2 or not 0 < float(scale_range[0]) <= float(scale_range[1]):
            raise ValueError(
                f"INPUT.AUG.SCALE_RANGE must be (min, max) with 0 < min <= max, got {scale_range!r}"
            )
        for key, k in (
            ("BRIGHTNESS", brightness),
            ("CONTRAST", contrast),
            ("SATURATION", saturation),
        ):
            if not 0.0 <= float(k) <= 1.0:
                raise ValueError(f"INPUT.AUG.{key} must be in [0, 1], got {k}")
        if not 0.0 <= float(hue) <= 0.5:
            raise ValueError(f"INPUT.AUG.HUE must be in [0, 0.5], got {hue}")
        if float(rotation) < 0:
            raise ValueError(f"INPUT.AUG.ROTATION must be >= 0 degrees, got {rotation}")
        if image_format not in _GRAY_WEIGHTS:
            raise ValueError(f"INPUT.FORMAT must be 'RGB' or 'BGR', got {image_format!r}")
        if border_mode not in _BORDERS:
            raise ValueError(f"border_mode must be one of {sorted(_BORDERS)}, got {border_mode!r}")
        self.output_size = (int(output_size[0]), int(output_size[1]))
        self.enabled = bool(enabled)
        self.hflip_prob = float(hflip_prob)
        self.vflip_prob = float(vflip_prob)
        self.rotation = float(rotation)
        self.rotation_prob = float(rotation_prob)
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.scale_prob = float(scale_prob)
        self.brightness = float(brightness)
        self.contrast = float(contrast)
        self.saturation = float(saturation)
        self.hue = float(hue)
        self.image_format = image_format
        self.border_mode = border_mode

    @classmethod
    def from_config(cls, cfg, is_train: bool = True) -> dict:
        """Training: INPUT.AUG.* and SIZE_TRAIN; ``is_train=False``: resize to SIZE_TEST only."""
        a = cfg.INPUT.AUG
        return {
            "output_size": cfg.INPUT.SIZE_TRAIN if is_train else cfg.INPUT.SIZE_TEST,
            "enabled": bool(a.ENABLED) and is_train,
            "hflip_prob": a.HFLIP_PROB,
            "vflip_prob": a.VFLIP_PROB,
            "rotation": a.ROTATION,
            "rotation_prob": a.ROTATION_PROB,
            "scale_range": a.SCALE_RANGE,
            "scale_prob": a.SCALE_PROB,
            "brightness": a.BRIGHTNESS,
            "contrast": a.CONTRAST,
            "saturation": a.SATURATION,
            "hue": a.HUE,
            "image_format": cfg.INPUT.FORMAT,
        }

    # ------------------------------------------------------------------ parameters
    def get_params(self, rng: np.random.Generator, h: int, w: int) -> ClipAugParams:
        """Draw one clip's parameters for frames of size (h, w).

        The geometry is stored relative to the frame size (``shift_x``/``shift_y`` in
        [-1, 1]), so ``h, w`` only validate the size here. Disabled: identity.
        """
        if h < 1 or w < 1:
            raise ValueError(f"ClipAugmentation.get_params: bad frame size {h}x{w}")
        u = rng.random(12)  # fixed consumption: one draw per decision / value
        if not self.enabled:
            return ClipAugParams()
        angle = 0.0
        if self.rotation > 0 and u[2] < self.rotation_prob:
            angle = float((2 * u[3] - 1) * self.rotation)
        scale, shift_x, shift_y = 1.0, 0.0, 0.0
        lo, hi = self.scale_range
        if (lo, hi) != (1.0, 1.0) and u[4] < self.scale_prob:
            scale = float(lo + (hi - lo) * u[5])
            shift_x, shift_y = float(2 * u[6] - 1), float(2 * u[7] - 1)
        return ClipAugParams(
            hflip=bool(u[0] < self.hflip_prob),
            vflip=bool(u[1] < self.vflip_prob),
            angle=angle,
            scale=scale,
            shift_x=shift_x,
            shift_y=shift_y,
            brightness=float(1 + self.brightness * (2 * u[8] - 1)),
            contrast=float(1 + self.contrast * (2 * u[9] - 1)),
            saturation=float(1 + self.saturation * (2 * u[10] - 1)),
            hue=float(self.hue * (2 * u[11] - 1)),
        )

    # ------------------------------------------------------------------ application
    def warp_matrix(self, params: ClipAugParams, h: int, w: int) -> np.ndarray:
        """2x3 forward matrix (cv2 pixel-index coordinates) of step 1 for an (h, w) frame."""
        out_h, out_w = self.output_size
        a = math.radians(params.angle)
        s = params.scale
        # Continuous coordinates (pixel i covers [i, i + 1)): p' = s R (p - c) + c + t.
        lin = s * np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
        c = np.array([w / 2.0, h / 2.0])
        t = np.array([params.shift_x * abs(s - 1) * w / 2, params.shift_y * abs(s - 1) * h / 2])
        d = np.diag([out_w / w, out_h / h])
        # Index coordinates: q_idx + 0.5 = D(lin (p_idx + 0.5 - c) + c + t).
        m_lin = d @ lin
        m_t = d @ (lin @ (0.5 - c) + c + t) - 0.5
        return np.concatenate([m_lin, m_t[:, None]], axis=1).astype(np.float64)

    def _geometry(self, x: np.ndarray, params: ClipAugParams, is_mask: bool) -> np.ndarray:
        out_h, out_w = self.output_size
        h, w = x.shape[:2]
        if params.is_geometric_identity:
            if (h, w) == (out_h, out_w):
                y = x
            else:
                if is_mask:  # OpenCV 4.x's INTER_NEAREST_EXACT on every OpenCV version
                    y = resize_nearest_exact(x, (out_w, out_h))
                else:
                    y = cv2.resize(x, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
        else:
            y = warp_affine(  # OpenCV 4.x's cv2.warpAffine on every OpenCV version
                x,
                self.warp_matrix(params, h, w),
                (out_w, out_h),
                interpolation="nearest" if is_mask else "linear",
                border_mode=_BORDERS[self.border_mode],
                border_value=0,
            )
        if params.hflip:
            y = y[:, ::-1]
        if params.vflip:
            y = y[::-1]
        return np.ascontiguousarray(y)

    def _colour(self, frame: np.ndarray, params: ClipAugParams) -> np.ndarray:
        """Colour jitter of one frame: uint8 (H, W, 3) -> uint8 (H, W, 3).

        Brightness then contrast act on each value independently once the frame's mean
        gray is known, so both are one 256-entry look-up table. Saturation is one 3x3
        colour matrix, hue a round trip through float HSV.
        """
        if params.is_colour_identity:
            return frame
        rgb = self.image_format == "RGB"
        weights = np.asarray(_GRAY_WEIGHTS[self.image_format], dtype=np.float64)
        lut = np.clip(np.arange(256, dtype=np.float64) * params.brightness, 0, 255)
        if params.contrast != 1.0:
            brightened = cv2.LUT(frame, lut.astype(np.float32))
            mean = float(weights @ np.asarray(cv2.mean(brightened)[:3]))
            lut = np.clip(mean + params.contrast * (lut - mean), 0, 255)
        x = cv2.LUT(frame, lut.astype(np.float32))  # H, W, 3 float32
        if params.saturation != 1.0:
            # gray + s (x - gray) = M x with M = s I + (1 - s) 1 w^T (w: gray weights).
            m = params.saturation * np.eye(3) + (1.0 - params.saturation) * np.outer(
                np.ones(3), weights
            )
            x = cv2.transform(x, m.astype(np.float32))
            np.clip(x, 0, 255, out=x)
        if params.hue != 0.0:
            hsv = cv2.cvtColor(x * (1.0 / 255), cv2.COLOR_RGB2HSV if rgb else cv2.COLOR_BGR2HSV)
            h = hsv[..., 0]  # degrees in [0, 360)
            h += (params.hue * 360.0) % 360.0
            h[h >= 360.0] -= 360.0
            x = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB if rgb else cv2.COLOR_HSV2BGR)
            x *= 255.0
        np.maximum(x, 0, out=x)
        return cv2.convertScaleAbs(x)  # rounds to nearest and saturates at 255

    def apply(
        self,
        frames: Sequence[np.ndarray],
        masks: Sequence[np.ndarray] | None,
        params: ClipAugParams,
    ) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
        """Apply ``params`` to every frame (uint8 (H, W, 3)) and mask ((H, W), non-zero = fg).

        Frames of a clip may differ in size; each is warped with its own matrix. Returns
        frames uint8 (H', W', 3) and masks uint8 0/1 (H', W') (None when ``masks`` is None).
        """
        if masks is not None and len(masks) != len(frames):
            raise ValueError(f"ClipAugmentation.apply: {len(frames)} frames but {len(masks)} masks")
        out_frames = []
        for f in frames:
            if f.ndim != 3 or f.shape[2] != 3 or f.dtype != np.uint8:
                raise ValueError(
                    f"ClipAugmentation.apply: frames must be uint8 (H, W, 3), got {f.dtype} "
                    f"{f.shape}"
                )
            out_frames.append(self._geometry(f, params, is_mask=False))
        out_frames = [self._colour(f, params) for f in out_frames]
        if masks is None:
            return out_frames, None
        out_masks = []
        for f, m in zip(frames, masks):
            if m.shape != f.shape[:2]:
                raise ValueError(
                    f"ClipAugmentation.apply: mask of shape {m.shape} for a frame of shape "
                    f"{f.shape[:2]}"
                )
            out_masks.append(self._geometry((m != 0).astype(np.uint8), params, is_mask=True))
        return out_frames, out_masks

    def __call__(self, frames, masks, rng: np.random.Generator):
        """Draw parameters from ``rng`` (using the first frame's size) and apply them."""
        h, w = frames[0].shape[:2]
        return self.apply(frames, masks, self.get_params(rng, h, w))

    def __repr__(self) -> str:
        return (
            f"ClipAugmentation(output_size={self.output_size}, enabled={self.enabled}, "
            f"hflip={self.hflip_prob}, vflip={self.vflip_prob}, rotation={self.rotation}"
            f"@{self.rotation_prob}, scale={self.scale_range}@{self.scale_prob}, "
            f"jitter=({self.brightness}, {self.contrast}, {self.saturation}, {self.hue}), "
            f"border={self.border_mode!r})"
        )
