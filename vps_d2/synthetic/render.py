"""Drawing the synthetic sample clips: a mucosa scene and a polyp per video, then each clip
through a moving camera with blur, vignetting, occlusion and low-quality stretches
(:func:`render_clip`). Deterministic: per-video and per-clip ``numpy`` Generators seeded
from ``(seed, N[, M])``."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

from vps_d2.data import CLASS_NAMES
from vps_d2.utils.opencv_compat import warp_affine

from .plan import ClipPlan

__all__ = ["render_clip"]

_SCENE_SCALE = 3  # the static scene is this many times the frame size


def _video_rng(seed: int, video: int) -> np.random.Generator:
    return np.random.default_rng([seed, video, 1])


def _clip_rng(seed: int, video: int, clip: int) -> np.random.Generator:
    return np.random.default_rng([seed, video, clip, 2])


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
