"""Synthetic, colonoscopy-like sample dataset in the SUN-SEG layout.

The data is entirely synthetic (procedural numpy/OpenCV drawings, no real patient data); it
exists so that the loaders, the training loop, the evaluation and the tests can run end to
end without the real SUN-SEG release, which cannot be downloaded automatically.

Layout written under ``output_dir`` (see ``/work/shared/reference/datasets.md``)::

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

import functools
import json
import logging
import math
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass

import cv2
import numpy as np

from vps_d2.utils.file_io import pid_alive
from vps_d2.utils.opencv_compat import warp_affine

from . import CLASS_NAMES
from .datasets.sun_seg import CASE_TABLE_FILE
from .frame_order import case_sort_key

__all__ = [
    "SPLITS",
    "ClipPlan",
    "plan_sample_dataset",
    "render_clip",
    "make_sample_dataset",
    "mask_to_box",
]

logger = logging.getLogger(__name__)

TRAIN_SPLIT = "TrainDataset"
SPLITS = (
    TRAIN_SPLIT,
    "TestEasyDataset/Seen",
    "TestEasyDataset/Unseen",
    "TestHardDataset/Seen",
    "TestHardDataset/Unseen",
)
# difficulty range per split (0 = easiest, 1 = hardest)
_DIFFICULTY = {
    TRAIN_SPLIT: (0.0, 0.9),
    "TestEasyDataset/Seen": (0.0, 0.35),
    "TestEasyDataset/Unseen": (0.0, 0.35),
    "TestHardDataset/Seen": (0.65, 1.0),
    "TestHardDataset/Unseen": (0.65, 1.0),
}
_JPEG_QUALITY = 92
_SCENE_SCALE = 3  # the static scene is this many times the frame size


@dataclass(frozen=True)
class ClipPlan:
    """What one clip will contain (everything decided before any pixel is drawn)."""

    split: str  # one of SPLITS
    case: str  # folder name, "case<N>_<M>" or "case<N>"
    video: int  # N: the video id (scene and polyp are per video)
    clip: int  # M: the clip number inside the video (1 for unsplit videos)
    class_name: str  # pathological class of the video (a CLASS_NAMES entry)
    difficulty: float  # 0..1, drives motion, blur, polyp size, occlusion, low quality
    leaves_view: bool  # the camera pans away from the polyp for a stretch (empty masks)
    occluded: bool  # an instrument covers part of the polyp for a stretch
    stems: tuple[str, ...]  # frame stems in temporal order

    @property
    def num_frames(self) -> int:
        return len(self.stems)


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(
            f"make_sample_dataset: {name} must be an integer >= {minimum}, got {value!r}"
        )
    return int(value)


def _video_rng(seed: int, video: int) -> np.random.Generator:
    return np.random.default_rng([seed, video, 1])


def _clip_rng(seed: int, video: int, clip: int) -> np.random.Generator:
    return np.random.default_rng([seed, video, clip, 2])


def _video_stem_parts(seed: int, video: int) -> tuple[str, str]:
    rng = np.random.default_rng([seed, video, 3])
    mo, d, hh, mi, ss = (int(v) for v in rng.integers([1, 1, 8, 0, 0], [13, 29, 18, 60, 60]))
    date = f"2018{mo:02d}{d:02d}{hh:02d}{mi:02d}{ss:02d}"
    device = "0U" + "".join(str(int(x)) for x in rng.integers(0, 10, size=14))
    return date, device


def _clip_stems(seed: int, video: int, clip: int, num_frames: int) -> tuple[str, ...]:
    """SUN-style stems in temporal order; the a<k> part crosses 9 -> 10, image numbers unpadded."""
    rng = np.random.default_rng([seed, video, clip, 4])
    date, device = _video_stem_parts(seed, video)
    n_seg = int(min(num_frames, rng.integers(2, 4)))  # 2 or 3 segments
    k0 = int(rng.integers(11 - n_seg, 10))  # the k run always contains 9 and 10
    cuts = np.sort(rng.choice(np.arange(1, num_frames), size=n_seg - 1, replace=False))
    seg_of_frame = np.searchsorted(cuts, np.arange(num_frames), side="right")
    first = int(rng.integers(1, 120))
    return tuple(
        f"case_M_{date}_{device}_1_005_{clip:03d}-1_a{k0 + int(seg_of_frame[i])}_ayy"
        f"_image{first + i}"
        for i in range(num_frames)
    )


def plan_sample_dataset(
    *,
    seed: int = 0,
    train_clips: int = 10,
    test_clips: int = 3,
    frames_min: int = 20,
    frames_max: int = 40,
) -> list[ClipPlan]:
    """Decide the clips of the sample dataset (no drawing; cheap).

    Training clips are spread round-robin over ``ceil(train_clips / 2)`` videos; each of the
    four test splits gets ``test_clips`` clips: "Seen" ones are new clips of training videos,
    "Unseen" ones are single-clip videos not used in training. Classes are assigned per video,
    training videos cycling over a seed-dependent permutation of ``CLASS_NAMES`` and Unseen
    videos over the classes the training videos have. Returns the clips in the
    order of ``SPLITS``, then ``case_sort_key``.
    """
    seed = _check_int("seed", seed, 0)
    train_clips = _check_int("train_clips", train_clips, 1)
    test_clips = _check_int("test_clips", test_clips, 0)
    frames_min = _check_int("frames_min", frames_min, 2)
    frames_max = _check_int("frames_max", frames_max, frames_min)

    rng = np.random.default_rng([seed, 7919])
    class_order = rng.permutation(len(CLASS_NAMES))
    n_train_videos = max(1, math.ceil(train_clips / 2))
    clips_per_video: dict[int, int] = {}

    assignments: list[tuple[str, int, int, str]] = []  # split, N, M, case
    for i in range(train_clips):
        n = 1 + i % n_train_videos
        clips_per_video[n] = clips_per_video.get(n, 0) + 1
        m = clips_per_video[n]
        assignments.append((TRAIN_SPLIT, n, m, f"case{n}_{m}"))
    seen_counter = 0
    next_video = n_train_videos + 1
    for split in SPLITS[1:]:
        for _ in range(test_clips):
            if split.endswith("/Seen"):
                n = 1 + seen_counter % n_train_videos
                seen_counter += 1
                clips_per_video[n] = clips_per_video.get(n, 0) + 1
                m = clips_per_video[n]
                assignments.append((split, n, m, f"case{n}_{m}"))
            else:
                n = next_video
                next_video += 1
                assignments.append((split, n, 1, f"case{n}"))

    def n_classes(n: int) -> int:
        # Training videos cycle over all classes; an Unseen video (not trained on) gets a
        # class that some training video has, so it can be recognised from its look.
        return len(CLASS_NAMES) if n <= n_train_videos else min(len(CLASS_NAMES), n_train_videos)

    plans = []
    for k, (split, n, m, case) in enumerate(assignments):
        lo, hi = _DIFFICULTY[split]
        num_frames = int(rng.integers(frames_min, frames_max + 1))
        difficulty = float(rng.uniform(lo, hi))
        # Every other training clip leaves the view (empty masks to learn from). Test clips
        # keep the polyp in view like SUN-SEG's positive clips: the toolbox scores a frame
        # with an empty GT as Dice 0 whatever the prediction, which would cap every model's
        # Dice. The draw is made for every clip so that the training clips stay the same.
        leaves_view = k % 2 == 0 or bool(rng.random() < 0.3)
        leaves_view = leaves_view and split == TRAIN_SPLIT
        occluded = bool(rng.random() < 0.25 + 0.5 * difficulty)
        plans.append(
            ClipPlan(
                split=split,
                case=case,
                video=n,
                clip=m,
                class_name=CLASS_NAMES[int(class_order[(n - 1) % n_classes(n)])],
                difficulty=round(difficulty, 4),
                leaves_view=leaves_view,
                occluded=occluded,
                stems=_clip_stems(seed, n, m, num_frames),
            )
        )
    order = {s: i for i, s in enumerate(SPLITS)}
    plans.sort(key=lambda p: (order[p.split], case_sort_key(p.case)))
    return plans


# ----------------------------------------------------------------------------------------------
# drawing
# ----------------------------------------------------------------------------------------------


def _noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Smooth noise with about unit standard deviation, features about ``cell`` pixels wide.

    Returns float32 (h, w).
    """
    cell = max(1.0, float(cell))
    gh, gw = int(h / cell) + 4, int(w / cell) + 4
    grid = rng.standard_normal((gh, gw)).astype(np.float32)
    up = cv2.resize(
        grid, (int(gw * cell), int(gh * cell)), interpolation=cv2.INTER_CUBIC
    )  # (gh*cell, gw*cell)
    o = int(cell)
    n = up[o : o + h, o : o + w]
    sub = n[::3, ::3]  # statistics on a subsample: cheaper, same to within a few percent
    return (n - sub.mean()) * (1.0 / (float(sub.std()) + 1e-6))


@dataclass
class _Video:
    """Per-video static content: the scene (background) and the polyp layer."""

    background: np.ndarray  # float32 (Hs, Ws, 3), RGB 0..255, scene pixels
    polyp: np.ndarray  # float32 (Hp, Wp, 4): RGB 0..255 and coverage alpha 0..1
    origin: tuple[int, int]  # scene (x, y) of the polyp patch's top-left pixel
    center: tuple[float, float]  # polyp centre (x, y) in scene pixels
    radius_max: float  # largest polyp radius in scene pixels


# Per class: the polyp's colour relative to the mucosa (RGB factors) and the strength of its
# surface pattern (pits), so that a video's class can be told from its pixels, as a real
# pathological class partly can (pale, smooth hyperplastic polyps; red, patterned adenomas).
_CLASS_LOOK = {
    "low_grade_adenoma": ((1.10, 0.86, 0.84), 1.0),
    "high_grade_adenoma": ((1.00, 0.70, 0.72), 1.8),
    "hyperplastic_polyp": ((1.04, 1.18, 1.20), 0.4),
    "traditional_serrated_adenoma": ((1.10, 1.02, 0.86), 1.4),
    "sessile_serrated_lesion": ((1.02, 1.14, 0.98), 0.7),
    "invasive_cancer": ((0.84, 0.76, 0.96), 2.4),
}
assert set(_CLASS_LOOK) == set(CLASS_NAMES)


def _render_video(seed: int, video: int, height: int, width: int, class_name: str) -> _Video:
    rng = _video_rng(seed, video)
    hs, ws = _SCENE_SCALE * height, _SCENE_SCALE * width
    unit = min(height, width)  # frame size unit; scene pixel == frame pixel at zoom 1
    yy, xx = np.mgrid[0:hs, 0:ws].astype(np.float32)
    cx, cy = ws / 2.0, hs / 2.0

    # -- mucosa -----------------------------------------------------------------------------
    base = np.array(
        [rng.uniform(190, 235), rng.uniform(80, 120), rng.uniform(65, 100)], np.float32
    )  # RGB
    ang = rng.uniform(0, 2 * np.pi)
    dist = rng.uniform(0.75, 1.1) * unit
    lx, ly = cx + dist * math.cos(ang), cy + dist * math.sin(ang)  # lumen centre
    r = np.sqrt((xx - lx) ** 2 + (yy - ly) ** 2)
    warp = _noise(rng, hs, ws, 0.3 * unit)
    freq = rng.uniform(2.0, 3.2)
    phase = 2 * np.pi * freq * np.log1p(r / (0.25 * unit)) + 1.1 * warp
    phase += 0.6 * np.sin(np.arctan2(yy - ly, xx - lx) * int(rng.integers(2, 5)))
    contrast = np.clip(0.55 + 0.45 * _noise(rng, hs, ws, 0.4 * unit), 0.1, 1.0)
    wrapped = np.mod(phase, 2 * np.pi) - np.pi  # -pi..pi, 0 on a ridge
    fold = (0.5 + 0.5 * np.cos(phase)) * contrast  # 1 on a ridge
    crease = np.exp(-(((wrapped - 1.3) / 0.7) ** 2)) * contrast  # shadow behind a ridge
    lumen_r = rng.uniform(0.18, 0.28) * unit * (1 + 0.2 * warp)
    depth = np.exp(-((r / lumen_r) ** 2))  # 1 inside the lumen
    far = np.clip(r / (1.6 * unit), 0, 1)  # brighter far from the lumen
    shade = (0.6 + 0.4 * far) * (0.78 + 0.3 * fold - 0.25 * crease) * (1 - 0.92 * depth)
    tex = 0.07 * _noise(rng, hs, ws, 0.08 * unit) + 0.04 * _noise(rng, hs, ws, 0.02 * unit)
    hue = _noise(rng, hs, ws, 0.25 * unit)
    bg = base[None, None, :] * (shade * (1 + tex))[..., None]
    bg[..., 1] *= 1 + 0.07 * hue
    bg[..., 2] *= 1 + 0.09 * hue

    # vessels: thin dark lines along zero crossings of smooth noise
    vessels = np.zeros((hs, ws), np.float32)
    for cell, width_eps, amount in ((0.22 * unit, 0.018, 0.45), (0.09 * unit, 0.035, 0.3)):
        n = _noise(rng, hs, ws, cell)
        where = np.clip(_noise(rng, hs, ws, 0.4 * unit) + 0.2, 0, 1)
        vessels = np.maximum(vessels, amount * where * np.exp(-((n / width_eps) ** 2)))
    vessels *= 1 - depth
    bg *= 1 - vessels[..., None] * np.array([0.35, 0.7, 0.6], np.float32)

    # specular highlights: few small bright spots, mostly on fold ridges
    spots = _noise(rng, hs, ws, 0.035 * unit) + 1.2 * fold - 3.2
    spots = np.clip(spots * 2.0, 0, 1) * (1 - depth)
    spots = cv2.GaussianBlur(spots, (0, 0), 0.7)
    bg = bg + (255.0 - bg) * np.clip(spots * 1.6, 0, 1)[..., None]

    # -- polyp (drawn on a patch around the scene centre) -----------------------------------
    r0 = rng.uniform(0.13, 0.2) * unit
    half = int(math.ceil(1.8 * r0)) + 2
    ox, oy = int(cx) - half, int(cy) - half
    py, px = np.mgrid[0 : 2 * half, 0 : 2 * half].astype(np.float32)
    dx, dy = px + ox - cx, py + oy - cy
    ph, pw = px.shape
    rp = np.sqrt(dx**2 + dy**2)
    th = np.arctan2(dy, dx)
    radius = np.ones_like(th)
    for k in range(2, 6):
        radius += rng.uniform(0, 0.16 / (k - 1)) * np.cos(k * th + rng.uniform(0, 2 * np.pi))
    radius *= r0
    rho = rp / radius
    radius_max = float(radius.max())
    height_map = np.sqrt(np.clip(1 - rho**2, 0, 1)) * (rng.uniform(0.5, 0.9) * r0)
    height_map += 0.8 * _noise(rng, ph, pw, 0.05 * unit) * (rho < 1)  # lobules
    height_map = cv2.GaussianBlur(height_map, (0, 0), 1.2)
    gy, gx = np.gradient(height_map)
    light = np.array([-0.35, -0.45, 1.0], np.float32)
    light /= np.linalg.norm(light)
    norm = np.sqrt(gx**2 + gy**2 + 1)
    lambert = np.clip((-gx * light[0] - gy * light[1] + light[2]) / norm, 0, 1)
    halfway = light + np.array([0, 0, 1], np.float32)
    halfway /= np.linalg.norm(halfway)
    spec = np.clip((-gx * halfway[0] - gy * halfway[1] + halfway[2]) / norm, 0, 1) ** 60
    # The class shows in the polyp's colour and surface (see _CLASS_LOOK). The draw of the
    # earlier generator's tint is still made so that every later draw stays the same.
    rng.choice(4)
    tint_rgb, pit_gain = _CLASS_LOOK[class_name]
    tint = np.array(tint_rgb, np.float32) * rng.uniform(0.95, 1.05, size=3).astype(np.float32)
    pcol = np.clip(base * tint, 0, 255)
    pits = 0.1 * _noise(rng, ph, pw, 0.018 * unit) + 0.06 * _noise(rng, ph, pw, 0.05 * unit)
    pits *= pit_gain
    pshade = (0.45 + 0.6 * lambert) * (1 + pits)
    prgb = pcol[None, None, :] * pshade[..., None]
    prgb[..., 0] *= 1 + 0.05 * _noise(rng, ph, pw, 0.1 * unit)
    prgb = prgb + (255.0 - prgb) * np.clip(spec * 1.5, 0, 1)[..., None]
    alpha = np.clip((1 - rho) * radius + 0.5, 0, 1)  # 1-pixel soft coverage at the edge
    polyp = np.concatenate([np.clip(prgb, 0, 255), alpha[..., None]], axis=2).astype(np.float32)
    return _Video(
        background=np.clip(bg, 0, 255).astype(np.float32),
        polyp=polyp,
        origin=(ox, oy),
        center=(cx, cy),
        radius_max=radius_max,
    )


def _cosine_path(keys: np.ndarray, key_t: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Cosine interpolation of key values (K, D) at key times (K,) -> values at t (T, D)."""
    idx = np.clip(np.searchsorted(key_t, t, side="right") - 1, 0, len(key_t) - 2)
    t0, t1 = key_t[idx], key_t[idx + 1]
    u = np.clip((t - t0) / np.maximum(t1 - t0, 1e-6), 0, 1)
    w = (1 - np.cos(np.pi * u)) / 2
    return keys[idx] * (1 - w)[:, None] + keys[idx + 1] * w[:, None]


def _camera_path(
    rng: np.random.Generator, plan: ClipPlan, vid: _Video, height: int, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame view centre offset from the polyp (T, 2), zoom (T,), rotation (T,)."""
    t_count = plan.num_frames
    d = plan.difficulty
    unit = min(height, width)
    half_diag = 0.5 * math.hypot(height, width)
    # faster motion for harder clips: more key frames per frame
    n_keys = int(np.clip(round(t_count / (9 - 5 * d)) + 1, 3 if t_count >= 3 else 2, t_count))
    key_t = np.round(np.linspace(0, t_count - 1, n_keys)).astype(np.float64)
    zoom = rng.uniform(0.55 + 0.5 * d, 0.9 + 0.75 * d, size=n_keys)
    rot = np.cumsum(rng.uniform(-1, 1, size=n_keys) * math.radians(8 + 30 * d))
    rot += rng.uniform(-np.pi, np.pi)
    offsets = np.zeros((n_keys, 2))
    for k in range(n_keys):
        reach = max(0.0, 0.5 * zoom[k] * unit - 0.6 * vid.radius_max) * (0.5 + 0.7 * d)
        a = rng.uniform(0, 2 * np.pi)
        offsets[k] = reach * math.sqrt(rng.uniform()) * np.array([math.cos(a), math.sin(a)])
    if plan.leaves_view:
        k_exit = int(rng.integers(1, n_keys))
        hold = 2 if (n_keys >= 4 and k_exit < n_keys - 1 and rng.random() < 0.5) else 1
        a = rng.uniform(0, 2 * np.pi)
        direction = np.array([math.cos(a), math.sin(a)])
        for k in range(k_exit, k_exit + hold):
            out = zoom[k] * half_diag + vid.radius_max + 4.0
            offsets[k] = direction * out * rng.uniform(1.05, 1.3)
    t = np.arange(t_count, dtype=np.float64)
    path = _cosine_path(np.column_stack([offsets, zoom, rot]), key_t, t)
    return path[:, :2], path[:, 2], path[:, 3]


def _motion_blur(img: np.ndarray, length: float, angle: float) -> np.ndarray:
    """Blur (H, W, C) ``img`` along ``angle`` over about ``length`` pixels.

    A long line kernel is applied as a few passes of a short one (at most 9 x 9), which
    OpenCV filters directly instead of through a DFT: many times faster, nearly the same look.
    """
    passes = max(1, math.ceil(length / 8.0))
    step = length / math.sqrt(passes)  # the spread of n passes grows like sqrt(n)
    size = min(9, int(math.ceil(step)) | 1)
    k = np.zeros((size, size), np.float32)
    c = size // 2
    half = 0.5 * min(step, size - 1)
    dx, dy = half * math.cos(angle), half * math.sin(angle)
    cv2.line(k, (round(c - dx), round(c - dy)), (round(c + dx), round(c + dy)), 1.0, 1)
    k /= k.sum()
    for _ in range(passes):
        img = cv2.filter2D(img, -1, k, borderType=cv2.BORDER_REFLECT_101)
    return img


def render_clip(
    plan: ClipPlan, *, seed: int, height: int, width: int, video: _Video | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one clip.

    Returns ``frames`` uint8 (T, H, W, 3) in RGB order and ``masks`` uint8 (T, H, W) with
    values 0/255 (255 = visible polyp pixel).
    """
    if video is None:
        video = _render_video(seed, plan.video, height, width, plan.class_name)
    rng = _clip_rng(seed, plan.video, plan.clip)
    t_count, d = plan.num_frames, plan.difficulty
    unit = min(height, width)
    offsets, zoom, rot = _camera_path(rng, plan, video, height, width)
    fcx, fcy = (width - 1) / 2.0, (height - 1) / 2.0
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    rn2 = ((xx - fcx) / (0.5 * width)) ** 2 + ((yy - fcy) / (0.5 * height)) ** 2
    vignette = 1 - rng.uniform(0.3, 0.45) * np.clip(rn2, 0, 2) / 2 * 1.6
    cut = int(round(0.1 * unit))  # black octagon corners of the endoscope image
    inside = (
        (xx + yy >= cut)
        & ((width - 1 - xx) + yy >= cut)
        & (xx + (height - 1 - yy) >= cut)
        & ((width - 1 - xx) + (height - 1 - yy) >= cut)
    )
    vignette = (vignette * inside)[..., None].astype(np.float32)  # H, W, 1; 0 in the corners

    # frame -> scene affine per frame: q = A p + b, A = s R(theta)
    pcx, pcy = video.center
    mats = np.zeros((t_count, 2, 3), np.float64)
    for t in range(t_count):
        s, th = zoom[t], rot[t]
        a = s * np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
        c = np.array([pcx, pcy]) + offsets[t]
        mats[t, :, :2] = a
        mats[t, :, 2] = c - a @ np.array([fcx, fcy])

    def to_frame(t: int, q: np.ndarray) -> np.ndarray:  # scene point -> frame t pixels
        return np.linalg.solve(mats[t, :, :2], q - mats[t, :, 2])

    # polyp centre in frame pixels per frame (for the instrument)
    proj = np.stack([to_frame(t, np.array([pcx, pcy])) for t in range(t_count)])  # T, 2

    # instrument stretch
    occ = np.zeros(t_count, bool)
    if plan.occluded and t_count >= 2:
        length = int(rng.integers(max(1, t_count // 3), max(2, (2 * t_count) // 3) + 1))
        start = int(rng.integers(0, t_count - length + 1))
        occ[start : start + length] = True
    ent_a = rng.uniform(0.15, 0.85) * np.pi  # instrument enters from the lower half
    entry = np.array([fcx, fcy]) + 1.2 * math.hypot(fcx, fcy) * np.array(
        [math.cos(ent_a), math.sin(ent_a)]
    )
    rod_w = rng.uniform(0.09, 0.14) * unit
    rod_col = np.array(
        [rng.uniform(150, 190), rng.uniform(165, 200), rng.uniform(185, 225)], np.float32
    )
    tip_jitter = rng.normal(0, 0.05 * unit, size=(t_count, 2))

    # low-quality stretches
    lq = np.zeros(t_count, np.int64)  # 0 none, else effect id
    for _ in range(int(rng.poisson(0.4 + 1.6 * d))):
        length = int(rng.integers(1, 3 + int(3 * d)))
        start = int(rng.integers(0, t_count))
        lq[start : start + length] = int(rng.integers(1, 5))
    lq_sigma = rng.uniform(1.5, 4.0, size=t_count)
    blur_gain = 0.45 + 0.9 * d

    frames = np.zeros((t_count, height, width, 3), np.uint8)
    masks = np.zeros((t_count, height, width), np.uint8)
    # OpenCV 4.x's bilinear cv2.warpAffine on every OpenCV version (same frames everywhere)
    warp = functools.partial(warp_affine, dsize=(width, height), inverse_map=True)
    for t in range(t_count):
        m = mats[t].astype(np.float32)
        bg = warp(video.background, m, border_mode=cv2.BORDER_REFLECT_101)
        m_patch = m.copy()
        m_patch[0, 2] -= video.origin[0]
        m_patch[1, 2] -= video.origin[1]
        pl = warp(video.polyp, m_patch, border_mode=cv2.BORDER_CONSTANT)
        alpha = pl[..., 3]
        mask = alpha >= 0.5
        if mask.any():  # soft shadow around the polyp's base
            shadow = cv2.GaussianBlur(alpha, (0, 0), max(1.0, 0.12 * video.radius_max / zoom[t]))
            bg *= (1 - 0.5 * shadow * (1 - alpha))[..., None]
        img = bg
        np.copyto(img, pl[..., :3], where=mask[..., None])
        noise = rng.standard_normal((height, width, 1), dtype=np.float32)

        if occ[t]:
            centre = proj[t]
            to_entry = entry - centre
            to_entry /= np.linalg.norm(to_entry) + 1e-6
            tip = centre + to_entry * 0.35 * video.radius_max / zoom[t] + tip_jitter[t]
            axis = entry - tip
            length = float(np.linalg.norm(axis)) + 1e-6
            axis /= length
            u = (xx - tip[0]) * axis[0] + (yy - tip[1]) * axis[1]
            v = (xx - tip[0]) * -axis[1] + (yy - tip[1]) * axis[0]
            dist = np.where(u > 0, np.abs(v), np.sqrt(u**2 + v**2))
            rod = dist <= rod_w / 2
            across = np.clip(v / (rod_w / 2), -1, 1)
            cyl = np.sqrt(1 - across**2)
            rod_img = rod_col * (0.3 + 0.7 * cyl)[..., None]
            glint = np.exp(-(((across + 0.35) / 0.12) ** 2))[..., None]
            rod_img = rod_img + (255 - rod_img) * 0.8 * glint
            np.copyto(img, rod_img.astype(np.float32), where=rod[..., None])
            mask &= ~rod

        if t_count > 1:  # motion blur from the apparent motion at the frame centre
            ta, tb = max(t - 1, 0), min(t + 1, t_count - 1)
            anchor = mats[t, :, :2] @ np.array([fcx, fcy]) + mats[t, :, 2]
            vel = (to_frame(tb, anchor) - to_frame(ta, anchor)) / (tb - ta)
            speed = float(np.linalg.norm(vel)) * blur_gain
            if speed >= 2.0:
                img = _motion_blur(img, min(speed, 0.08 * unit + 3), math.atan2(vel[1], vel[0]))

        effect = lq[t]
        if effect == 1:  # defocus
            img = cv2.GaussianBlur(img, (0, 0), float(lq_sigma[t]))
        elif effect == 2:  # dark and noisy
            img = img * 0.45 + noise * 14.0
        elif effect == 3:  # over-exposed, washed out
            img = img * 0.6 + 110.0
        elif effect == 4:  # blur and noise
            img = cv2.GaussianBlur(img, (0, 0), float(lq_sigma[t]) * 0.7) + noise * 9.0

        img += noise * 2.0
        img *= vignette * float(np.clip(1.2 - 0.3 * zoom[t], 0.7, 1.05))
        mask &= inside
        frames[t] = np.clip(img + 0.5, 0, 255).astype(np.uint8)
        masks[t] = mask.astype(np.uint8) * 255
    return frames, masks


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
    folder = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.{kind}-{os.getpid()}-",
                              dir=os.path.dirname(out))  # fmt: skip
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
        logger.info("Removed %d folder(s) left by killed runs: %s", len(removed),
                    ", ".join(os.path.basename(p) for p in removed))  # fmt: skip
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
