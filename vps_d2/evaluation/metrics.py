"""Per-frame metrics of the SUN-SEG toolbox, equal to it to floating-point precision, fast.

Inputs everywhere: ``pred`` uint8 (H, W), the 8-bit prediction already at the GT size,
and ``gt`` bool (H, W), the GT after ``> 128``. The toolbox normalises ``pred`` to a
float64 map ``P`` (``pred / 255``, then min-max when not constant). ``P`` takes at most
256 values, so ``P = lut[pred]`` with :func:`normalization_lut` computing ``lut`` with
the toolbox's own float64 operations: every ``P`` value is bit-identical to the toolbox's.

How the work is shared (see :func:`frame_metrics`):

- One pass of per-level histograms, split by GT foreground and by the four S-measure
  blocks (``cv2.calcHist``; a dominant lowest level, the clean background of a sigmoid
  output, is counted by difference). Every metric except the weighted F-measure is a
  function of these 4 x 2 x 256 counts: S-measure (means, variances, covariance from the
  level values), MAE, the adaptive E/F-measures (threshold ``min(2 mean(P), 1)``; when it
  falls within rounding of a level, ``mean(P)`` is summed as NumPy does on the full map),
  and all 256-point curves.
- Threshold scheme (a) (E/F curves): level v is foreground at curve index
  ``i >= 255 - uint8(lut[v] * 255)``; cumulative sums of the histograms give TP and |F|.
- Threshold scheme (b) (Sen/Spe/Dice/IoU): ``np.searchsorted`` of ``lut`` in the exact
  float64 thresholds ``np.linspace(1, 0, 256)``, so ``P >= t[i]`` is decided by the same
  IEEE comparison as the toolbox (including the 66 thresholds one ulp above
  ``(255 - i) / 255``).
- Weighted F-measure: the nearest-foreground values are only needed in a 3-pixel band
  around the GT (the support of the 7x7 filter at GT pixels). There they are looked up
  over the 60 offsets of squared length <= 18, ordered by (squared distance, column,
  row): the tie rule of ``scipy.ndimage.distance_transform_edt``. Distances for the
  background weights come from ``cv2.distanceTransform`` (exact Euclidean, float32; the
  integer squared distance k is recovered by rounding; the weight of each k comes from a
  table of ``2 - exp(ln(0.5) / 5 * sqrt(k))`` made with ``math``), computed only over the
  bounding box of the GT and of the pixels with P > 0 closer than 266 px to it: P == 0
  contributes nothing, and from 266 px on the toolbox's weight is exactly 2.0. The 7x7
  Gaussian is separable, with ``scipy.ndimage.correlate1d``. Neither uses an OpenCV SIMD
  float kernel (``cv2.exp``, ``cv2.sepFilter2D``), whose last bit changes between
  releases, so every number is the same on every supported OpenCV (4.8 to 5.x).

Toolbox behaviours reproduced: S-measure edge cases (one-pixel region or one-pixel
background, a block with fewer than two pixels -> NaN -> S = 0 through the built-in
``max(0, x)``), blocks whose prediction is constant (their mean and variance are computed
on an array laid out as the toolbox's view, because whether NumPy's sum of n equal values
is exact decides between 0 and 1 there), Specificity forced to 0 when TP == 0 (a
corrected Specificity is given separately as ``SpeCorrected``).
"""

from __future__ import annotations

import functools
import logging
import math

import cv2
import numpy as np
from scipy import ndimage

from vps_d2.utils.opencv_compat import find_nonzero, histogram_u8

__all__ = [
    "CURVE_KEYS",
    "EPS",
    "MEDICAL_THRESHOLDS",
    "PR_KEYS",
    "SCALAR_KEYS",
    "e_measure",
    "f_measure",
    "frame_metrics",
    "mae",
    "medical_curves",
    "normalization_lut",
    "quantize_probability",
    "s_measure",
    "weighted_f_measure",
]

logger = logging.getLogger(__name__)

EPS = np.spacing(1)
# Scheme (b) thresholds of the toolbox's Dice/IoU/Sen/Spe, float64, descending.
MEDICAL_THRESHOLDS = np.linspace(1, 0, 256)
_MEDICAL_ASC = MEDICAL_THRESHOLDS[::-1].copy()
# Per-frame outputs of frame_metrics: scalars, and 256-point curves (index i = threshold i).
SCALAR_KEYS = ("Smeasure", "wFmeasure", "MAE", "adpEm", "adpFm")
CURVE_KEYS = ("Em", "Fm", "Sen", "Spe", "SpeCorrected", "Dice", "IoU")
# Optional per-frame curves (frame_metrics(..., precision_recall=True)): the precision and
# recall behind the F-measure curve, threshold scheme (a), for precision-recall plots.
PR_KEYS = ("Precision", "Recall")

_LEVELS = np.arange(256) / 255  # the toolbox's pred / 255 for each 8-bit level
_BETA2_F = 0.3
_LOG_HALF_5 = math.log(0.5) / 5
# calcHist counts in float32: exact below 2^24 pixels (np.bincount above).
_CALCHIST_MAX = 1 << 24
# Largest squared distance for which float32 sqrt(k) squared rounds back to k exactly.
_CV2_DT_MAX_SQ = 1 << 22
# Distance from which 2 - exp(ln(0.5) / 5 * d) rounds to 2.0 (exp(...) < 2^-53 from 265 on).
_B_SATURATION = 266


def _fspecial_gaussian_1d(size: int = 7, sigma: float = 5.0) -> np.ndarray:
    # fspecial('gaussian', 7, 5) = outer(g, g) / sum(outer(g, g)) = outer(k, k), k = g / sum(g)
    # (math.exp: the same bits whatever the NumPy version; NumPy's SIMD exp varies by ulps)
    x = [i - (size - 1) / 2 for i in range(size)]
    g = np.array([math.exp(-(v * v) / (2 * sigma * sigma)) for v in x])
    return g / g.sum()


def _gaussian_7x7(et: np.ndarray) -> np.ndarray:
    """float64 (h, w): ``et`` filtered by the 7x7 Gaussian, zero outside (``imfilter``).

    Separable, with ``scipy.ndimage.correlate1d`` (plain C loops, the same bits on every
    supported SciPy; ``cv2.sepFilter2D``'s SIMD kernels round differently between OpenCV
    releases).
    """
    rows = ndimage.correlate1d(et, _K1D, axis=1, mode="constant", cval=0.0)
    return ndimage.correlate1d(rows, _K1D, axis=0, mode="constant", cval=0.0)


@functools.cache
def _background_weight_table() -> np.ndarray:
    """float64 (266^2 + 1,): the toolbox's ``2 - exp(ln(0.5) / 5 * sqrt(k))`` for integer k.

    The last entry, 2.0, is the weight from a distance of 266 px on (exact). ``math``
    (libm) rather than ``cv2.exp``/``np.exp``, whose SIMD results differ by ulps between
    OpenCV and NumPy releases.
    """
    weights = [2 - math.exp(_LOG_HALF_5 * math.sqrt(k)) for k in range(_B_SATURATION**2)]
    return np.array(weights + [2.0])


_K1D = _fspecial_gaussian_1d()
# Offsets (dy, dx) with 0 < dy^2 + dx^2 <= 18, in SciPy's tie order: distance, column, row.
_OFFSETS = np.array(
    sorted(
        ((dy, dx) for dy in range(-4, 5) for dx in range(-4, 5) if 0 < dy * dy + dx * dx <= 18),
        key=lambda o: (o[0] ** 2 + o[1] ** 2, o[1], o[0]),
    ),
    dtype=np.int64,
)


def quantize_probability(prob: np.ndarray) -> np.ndarray:
    """Probability map (H, W) in [0, 1] -> uint8 (H, W): ``rint(prob * 255)`` in float64.

    The one rule used for the evaluator's predictions and for the PNGs it saves (round to
    nearest, ties to even; values are clipped to [0, 255]). Raises ValueError on NaN/inf.
    """
    p = np.asarray(prob, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"Probability map must be 2-D (H, W), got shape {p.shape}")
    if not np.isfinite(p).all():
        raise ValueError("Probability map contains NaN or inf")
    return np.clip(np.rint(p * 255.0), 0, 255).astype(np.uint8)


def normalization_lut(pred: np.ndarray) -> np.ndarray:
    """float64 (256,): the toolbox's normalised value of each 8-bit level of ``pred``.

    ``pred / 255``, then ``(p - min) / (max - min)`` when ``max != min`` (a constant map
    stays ``pred / 255``), evaluated level by level with the toolbox's operations.
    """
    return _lut(int(pred.min()), int(pred.max()))


def _lut(vmin: int, vmax: int) -> np.ndarray:
    if vmax == vmin:
        return _LEVELS.copy()
    lo, hi = _LEVELS[vmin], _LEVELS[vmax]
    return (_LEVELS - lo) / (hi - lo)


def _check(pred: np.ndarray, gt: np.ndarray) -> None:
    if not isinstance(pred, np.ndarray) or pred.dtype != np.uint8 or pred.ndim != 2:
        raise TypeError(
            f"pred must be a uint8 array (H, W), got {getattr(pred, 'dtype', type(pred))} "
            f"{getattr(pred, 'shape', '')}"
        )
    if not isinstance(gt, np.ndarray) or gt.dtype != bool:
        raise TypeError(
            f"gt must be a bool array (H, W) (the GT after > 128), got "
            f"{getattr(gt, 'dtype', type(gt))}"
        )
    if pred.shape != gt.shape:
        raise ValueError(f"pred shape {pred.shape} differs from gt shape {gt.shape}")
    if pred.size < 2:
        raise ValueError(f"Frames need at least 2 pixels, got shape {pred.shape}")


def _block_hist(
    pred: np.ndarray, gt8: np.ndarray, nz: np.ndarray | None, vmin: int
) -> tuple[np.ndarray, np.ndarray]:
    """(all counts, foreground counts) of each 8-bit level of a block, float64 (256,) each.

    ``nz`` (uint8, non-zero where ``pred != vmin``), when given, restricts the counting to
    the other levels; the ``vmin`` counts follow from the totals. calcHist is slow on long
    runs of one level (repeated increments of one bin), which a clean prediction's
    background is.
    """
    n = pred.size
    if n >= _CALCHIST_MAX:
        h = np.bincount((pred.astype(np.int64) * 2 + gt8).ravel(), minlength=512).reshape(256, 2)
        return h.sum(axis=1).astype(np.float64), h[:, 1].astype(np.float64)
    if nz is None:
        h = cv2.calcHist([pred, gt8], [0, 1], None, [256, 2], [0, 256, 0, 2])
        fg = h[:, 1].astype(np.float64)
        return h[:, 0] + fg, fg
    tot = histogram_u8(pred, nz).astype(np.float64)
    tot[vmin] = n - tot.sum()
    fg = histogram_u8(pred, cv2.bitwise_and(nz, gt8)).astype(np.float64)
    fg[vmin] = cv2.countNonZero(gt8) - fg.sum()
    return tot, fg


class _Block:
    """Counts of one S-measure block (rows, cols slices)."""

    __slots__ = ("rows", "cols", "n", "tot", "fg")

    def __init__(self, pred, gt8, nz, vmin: int, rows: slice, cols: slice) -> None:
        self.rows, self.cols = rows, cols
        p = pred[rows, cols]
        self.n = p.size
        if self.n:
            self.tot, self.fg = _block_hist(
                p, gt8[rows, cols], None if nz is None else nz[rows, cols], vmin
            )
        else:
            self.tot = self.fg = np.zeros(256)


class FrameStats:
    """Work shared by the metrics of one frame (pred uint8 (H, W), gt bool (H, W))."""

    def __init__(self, pred: np.ndarray, gt: np.ndarray) -> None:
        _check(pred, gt)
        self.pred, self.gt = pred, gt
        vmin, vmax, _, _ = cv2.minMaxLoc(pred)
        self.vmin = int(vmin)
        self.lut = _lut(self.vmin, int(vmax))
        h, w = gt.shape
        self.n = h * w
        gt8 = gt.view(np.uint8)
        nz = cv2.compare(pred, self.vmin, cv2.CMP_NE)
        if cv2.countNonZero(nz) > self.n // 2:
            nz = None  # no dominant lowest level: count everything
        rows_fg = cv2.reduce(gt8, 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel().astype(np.int64)
        self.n_fg = int(rows_fg.sum())
        if 0 < self.n_fg < self.n:
            cols_fg = cv2.reduce(gt8, 0, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel()
            cols_fg = cols_fg.astype(np.int64)
            # np.argwhere(G).mean(0): exact integer sums / n, then round half to even
            cy = int(np.round(np.dot(np.arange(h, dtype=np.int64), rows_fg) / self.n_fg)) + 1
            cx = int(np.round(np.dot(np.arange(w, dtype=np.int64), cols_fg) / self.n_fg)) + 1
            self.centroid = (cy, cx)
            r = np.flatnonzero(rows_fg)
            c = np.flatnonzero(cols_fg)
            self.bbox = (int(r[0]), int(r[-1]) + 1, int(c[0]), int(c[-1]) + 1)
            self.blocks = [
                _Block(pred, gt8, nz, self.vmin, slice(0, cy), slice(0, cx)),
                _Block(pred, gt8, nz, self.vmin, slice(0, cy), slice(cx, w)),
                _Block(pred, gt8, nz, self.vmin, slice(cy, h), slice(0, cx)),
                _Block(pred, gt8, nz, self.vmin, slice(cy, h), slice(cx, w)),
            ]
        else:
            self.centroid = None
            self.bbox = (0, h, 0, w) if self.n_fg else None
            self.blocks = [_Block(pred, gt8, nz, self.vmin, slice(0, h), slice(0, w))]
        self.hist_tot = np.sum([b.tot for b in self.blocks], axis=0)
        self.hist_fg = np.sum([b.fg for b in self.blocks], axis=0)
        self.hist_bg = self.hist_tot - self.hist_fg
        self._mean = None

    # -- shared quantities ------------------------------------------------------------
    def mean_p(self) -> float:
        """mean(P), as the toolbox's ``P.mean()`` wherever a threshold could depend on it."""
        if self._mean is None:
            m = float(np.dot(self.hist_tot, self.lut) / self.n)
            present = self.lut[self.hist_tot > 0]
            if np.any(np.abs(present - 2 * m) <= 1e-12):
                # 2 * mean(P) within rounding of a level: summation order could decide the
                # adaptive threshold, so sum exactly as the toolbox does.
                m = float(cv2.LUT(self.pred, self.lut).mean())  # P as a C-contiguous (H, W)
            self._mean = m
        return self._mean

    def counts_scheme_a(self) -> tuple[np.ndarray, np.ndarray]:
        """(TP, |F|) float64 (256,) for ``uint8(P * 255) >= 255 - i``."""
        start = 255 - (self.lut * 255).astype(np.uint8).astype(np.int64)
        tp = np.cumsum(np.bincount(start, weights=self.hist_fg, minlength=256))
        nf = np.cumsum(np.bincount(start, weights=self.hist_tot, minlength=256))
        return tp, nf

    def counts_scheme_b(self) -> tuple[np.ndarray, np.ndarray]:
        """(TP, |F|) float64 (256,) for ``P >= np.linspace(1, 0, 256)[i]``."""
        start = 256 - np.searchsorted(_MEDICAL_ASC, self.lut, side="right")
        tp = np.cumsum(np.bincount(start, weights=self.hist_fg, minlength=257)[:256])
        nf = np.cumsum(np.bincount(start, weights=self.hist_tot, minlength=257)[:256])
        return tp, nf

    def counts_at(self, thr: float) -> tuple[float, float]:
        """(TP, |F|) for ``P >= thr``."""
        sel = self.lut >= thr
        return float(self.hist_fg[sel].sum()), float(self.hist_tot[sel].sum())


# ----------------------------------------------------------------------------- S-measure
def _object_score(hist: np.ndarray, values: np.ndarray, count: int) -> float:
    m = np.dot(hist, values) / count
    d = values - m
    s = np.sqrt(np.dot(hist, d * d) / (count - 1))
    return 2 * m / (m * m + 1 + s + EPS)


def _block_ssim(st: FrameStats, b: _Block) -> float:
    n, lut = b.n, st.lut
    n_fg = float(b.fg.sum())
    my = n_fg / n
    sy2 = (n_fg * (1 - my) ** 2 + (n - n_fg) * my**2) / (n - 1)
    levels = np.flatnonzero(b.tot)
    c = lut[levels[0]]
    if len(levels) == 1 and c != 0.0 and c != 1.0:
        # Constant block: mean and variance as NumPy computes them on the toolbox's view
        # P[rows, cols] of a C-contiguous (H, W) array (an inexact mean gives Q = 0, an
        # exact one Q = 1 where the GT block is constant).
        h_blk = len(range(*b.rows.indices(st.gt.shape[0])))
        c0, c1, _ = b.cols.indices(st.gt.shape[1])
        view = np.full((h_blk, st.gt.shape[1]), c)[:, c0:c1]
        mx = np.mean(view)
        sx2 = np.sum((view - mx) ** 2) / (n - 1)
        sxy = (c - mx) * (n_fg * (1 - my) + (n - n_fg) * (0 - my)) / (n - 1)
    else:
        mx = np.dot(b.tot, lut) / n
        d = lut - mx
        sx2 = np.dot(b.tot, d * d) / (n - 1)
        sxy = (np.dot(b.fg, d) * (1 - my) + np.dot(b.tot - b.fg, d) * (0 - my)) / (n - 1)
    a = 4 * mx * my * sxy
    bb = (mx**2 + my**2) * (sx2 + sy2)
    if a != 0:
        return float(a / (bb + EPS))
    return 1.0 if bb == 0 else 0.0


def _s_measure(st: FrameStats) -> float:
    n, n_fg = st.n, st.n_fg
    if n_fg == 0:
        return float(1 - np.dot(st.hist_tot, st.lut) / n)
    if n_fg == n:
        return float(np.dot(st.hist_tot, st.lut) / n)
    n_bg = n - n_fg
    if n_fg < 2 or n_bg < 2 or any(b.n < 2 for b in st.blocks):
        return 0.0  # std / variance over one value (or none) is NaN; max(0, NaN) == 0
    y = n_fg / n
    so = y * _object_score(st.hist_fg, st.lut, n_fg) + (1 - y) * _object_score(
        st.hist_bg, 1 - st.lut, n_bg
    )
    h, w = st.gt.shape
    cy, cx = st.centroid
    w1 = cx * cy / n
    w2 = cy * (w - cx) / n
    w3 = (h - cy) * cx / n
    w4 = 1 - w1 - w2 - w3
    q = [_block_ssim(st, b) for b in st.blocks]
    sr = w1 * q[0] + w2 * q[1] + w3 * q[2] + w4 * q[3]
    s = 0.5 * so + 0.5 * sr
    return float(s) if s > 0 else 0.0


# --------------------------------------------------------------------- E- and F-measure
def _phi(a, b):
    xi = 2 * (a * b) / (a**2 + b**2 + EPS)
    return (xi + 1) ** 2 / 4


def _em_from_counts(tp, nf, n: int, n_g: int):
    """E-measure of binary maps with TP = tp and |F| = nf (scalars or arrays)."""
    if n_g == 0:
        enhanced = n - nf
    elif n_g == n:
        enhanced = nf
    else:
        fp = nf - tp
        fn = n_g - tp
        tn = (n - nf) - fn
        mp = nf / n
        mg = n_g / n
        a1, a0 = 1 - mp, 0 - mp
        b1, b0 = 1 - mg, 0 - mg
        enhanced = _phi(a1, b1) * tp + _phi(a1, b0) * fp + _phi(a0, b1) * fn + _phi(a0, b0) * tn
    return enhanced / (n - 1 + EPS)


def _e_measure(st: FrameStats) -> tuple[float, np.ndarray]:
    thr = min(2 * st.mean_p(), 1)
    adp = float(_em_from_counts(*st.counts_at(thr), st.n, st.n_fg))
    tp, nf = st.counts_scheme_a()
    return adp, _em_from_counts(tp, nf, st.n, st.n_fg)


def _precision_recall(st: FrameStats) -> tuple[np.ndarray, np.ndarray]:
    """(precision, recall) float64 (256,), scheme (a), as the toolbox's F-measure uses them:
    precision = TP / |F| (0 where nothing is foreground), recall = TP / max(|G|, 1)."""
    tp, nf = st.counts_scheme_a()
    ps = np.where(nf == 0, 1.0, nf)
    return tp / ps, tp / max(st.n_fg, 1)


def _f_measure(st: FrameStats) -> tuple[float, np.ndarray]:
    beta2 = _BETA2_F
    thr = min(2 * st.mean_p(), 1)
    tp, nf = st.counts_at(thr)
    if tp == 0:
        adp = 0.0
    else:
        pre = tp / nf
        rec = tp / st.n_fg
        adp = float((1 + beta2) * pre * rec / (beta2 * pre + rec))
    precision, recall = _precision_recall(st)
    num = (1 + beta2) * precision * recall
    den = np.where(num == 0, 1.0, beta2 * precision + recall)
    return adp, num / den


# ------------------------------------------------------------------------------- medical
def _medical(st: FrameStats) -> dict[str, np.ndarray]:
    tp, nf = st.counts_scheme_b()
    n_g = st.n_fg
    fn = n_g - tp
    fp = nf - tp
    tn = (st.n - nf) - fn
    ok = tp > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        if st.n_fg < st.n:
            spe = tn / (tn + fp)
            spe_corrected = spe
        else:  # no background: the toolbox's 0 / 0 is NaN; corrected: no false positive
            spe = np.full(256, np.nan)
            spe_corrected = np.ones(256)
        return {
            "Sen": np.where(ok, tp / max(n_g, 1), 0.0),
            "Spe": np.where(ok, spe, 0.0),
            "SpeCorrected": spe_corrected,
            "Dice": np.where(ok, 2 * tp / (n_g + nf), 0.0),
            "IoU": np.where(ok, tp / (tp + fp + fn), 0.0),
        }


# ------------------------------------------------------------------------------------ MAE
def _mae(st: FrameStats) -> float:
    return float((np.dot(st.hist_bg, st.lut) + np.dot(st.hist_fg, 1 - st.lut)) / st.n)


# ---------------------------------------------------------------------- weighted F-measure
def _weighted_f(st: FrameStats) -> float:
    if st.n_fg == 0:
        return 0.0
    pred, gt, lut = st.pred, st.gt, st.lut
    h, w = gt.shape
    y0, y1, x0, x1 = st.bbox

    # 1) GT pixels: E = 1 - P; EA = 7x7 Gaussian of Et, Et = E at the nearest GT pixel.
    r0, r1, c0, c1 = max(y0 - 3, 0), min(y1 + 3, h), max(x0 - 3, 0), min(x1 + 3, w)
    gc = gt[r0:r1, c0:c1]
    e_lut = 1 - lut
    hc, wc = gc.shape
    et = cv2.LUT(pred[r0:r1, c0:c1], e_lut)  # (hc, wc): E wherever the pixel is GT ...
    np.multiply(et, gc, out=et)  # ... and 0 elsewhere
    gc8 = np.ascontiguousarray(gc).view(np.uint8)
    band = cv2.dilate(gc8, np.ones((7, 7), np.uint8)) > gc8  # background within 3 px
    pts = find_nonzero(band.view(np.uint8))  # (n_band, 2) as (x, y)
    if len(pts):
        x, y = pts[:, 0].astype(np.int64), pts[:, 1].astype(np.int64)
        pad = 4
        gp = cv2.copyMakeBorder(gc8, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
        wp = gp.shape[1]
        hits = gp.ravel()[((y + pad) * wp + (x + pad))[:, None] + (_OFFSETS @ [wp, 1])]
        first = hits.argmax(axis=1)  # every band pixel has a GT pixel within d^2 <= 18
        flat = y * wc + x
        near = flat + (_OFFSETS @ [wc, 1])[first]
        ef = et.ravel()
        ef[flat] = ef[near]  # Et = E at the nearest GT pixel (SciPy's tie order)
    ea = _gaussian_7x7(et)
    if len(pts):
        ef[flat] = 0.0  # back to E on GT, 0 elsewhere
    # MIN_E_EA on GT = EA where EA < E else E = min(EA, E); EA >= 0 gives 0 off the GT.
    sum_g = float(np.sum(np.minimum(ea, et, out=ea)))

    # 2) Background pixels: Ew = P * B, B = 2 - exp(ln(0.5) / 5 * Dst).
    fpw = _background_weighted_sum(st) if st.n_fg < st.n else 0.0

    tpw = st.n_fg - sum_g
    recall = 1 - sum_g / st.n_fg
    precision = tpw / (tpw + fpw + EPS)
    return float(2 * recall * precision / (recall + precision + EPS))


def _distance_map(bg: np.ndarray) -> tuple[np.ndarray, bool]:
    """Distance of each pixel of bool (h, w) ``bg`` to the nearest False pixel.

    Returns (map, exact): float32 from ``cv2.distanceTransform`` (exact Euclidean, to be
    finished by :func:`_finish_distances`) and False, or, for maps too large for float32
    to hold the squared distance, float64 from SciPy and True. One pixel must be False.
    """
    h, w = bg.shape
    if h * h + w * w >= _CV2_DT_MAX_SQ:
        return ndimage.distance_transform_edt(bg), True
    bg8 = np.ascontiguousarray(bg).view(np.uint8)
    return cv2.distanceTransform(bg8, cv2.DIST_L2, cv2.DIST_MASK_PRECISE), False


def _squared_distances(d: np.ndarray) -> np.ndarray:
    """int64: the exact integer squared distances of float distances ``d`` (any shape)."""
    d = d.astype(np.float64)
    np.multiply(d, d, out=d)
    return np.rint(d, out=d).astype(np.int64)


def _finish_distances(d: np.ndarray, exact: bool) -> np.ndarray:
    """float64 distances bit-identical to SciPy's sqrt of the integer squared distance."""
    if exact:
        return np.array(d, dtype=np.float64)
    return np.sqrt(_squared_distances(d).astype(np.float64))


def _background_weights(d: np.ndarray) -> np.ndarray:
    """float64: the toolbox's ``B = 2 - exp(ln(0.5) / 5 * Dst)`` of distances ``d``."""
    table = _background_weight_table()
    k = _squared_distances(d)
    np.minimum(k, len(table) - 1, out=k)
    return table.take(k)


def _exact_distances(bg: np.ndarray) -> np.ndarray:
    """float64 (h, w): ``scipy.ndimage.distance_transform_edt(bg)``, bit for bit."""
    return _finish_distances(*_distance_map(bg))


def _background_weighted_sum(st: FrameStats) -> float:
    """sum over background pixels of P * (2 - exp(ln(0.5) / 5 * Dst)), as the toolbox."""
    pred, gt, lut = st.pred, st.gt, st.lut
    h, w = gt.shape
    s_bg = float(np.dot(st.hist_bg, lut))
    if s_bg == 0:
        return 0.0
    y0, y1, x0, x1 = st.bbox
    # Beyond _B_SATURATION pixels from the GT, 2 - exp(ln(0.5) / 5 * Dst) == 2.0 exactly.
    m = _B_SATURATION
    r0, r1, c0, c1 = max(y0 - m, 0), min(y1 + m, h), max(x0 - m, 0), min(x1 + m, w)
    vmin = st.vmin
    zero = vmin if lut[vmin] == 0 else None  # the level with P == 0, if any
    if zero is not None:  # shrink to the GT plus the pixels with P > 0
        pb = pred[r0:r1, c0:c1]
        nz = pb if zero == 0 else cv2.compare(pb, zero, cv2.CMP_NE)
        bx, by, bw, bh = cv2.boundingRect(nz)
        if bw == 0:
            return 2 * s_bg  # every pixel with P > 0 is beyond the box
        r0, r1, c0, c1 = (
            min(y0, r0 + by),
            max(y1, r0 + by + bh),
            min(x0, c0 + bx),
            max(x1, c0 + bx + bw),
        )
    gd = gt[r0:r1, c0:c1]
    pr = pred[r0:r1, c0:c1]
    bg = ~gd
    dist, _ = _distance_map(bg)
    n_pos = st.n - st.n_fg - (0 if zero is None else int(st.hist_bg[zero]))  # bg with P > 0
    if n_pos < bg.size // 4:  # sparse: only the background pixels with P > 0
        idx = np.flatnonzero(bg if zero is None else (pr != zero) & bg)
        p = lut[pr.ravel()[idx]]
        b = _background_weights(dist.ravel()[idx])
        s_fg = 0.0
    else:  # dense: GT pixels have Dst = 0, B = 1, and add P (all GT is in the region)
        p = cv2.LUT(pr, lut).ravel()
        b = _background_weights(dist).ravel()
        s_fg = float(np.dot(st.hist_fg, lut))
    fpw = float(np.dot(p, b)) - s_fg
    s_region = float(np.sum(p)) - s_fg
    # Outside the region every background pixel has B == 2 (or P == 0).
    return fpw + 2 * (s_bg - s_region)


# ------------------------------------------------------------------------- public API
def frame_metrics(pred: np.ndarray, gt: np.ndarray, *, precision_recall: bool = False) -> dict:
    """Every metric of one frame, sharing the histograms.

    Args:
        pred: uint8 (H, W), the 8-bit prediction at the GT size.
        gt: bool (H, W), ``gt_uint8 > 128``.
        precision_recall: also return the curves :data:`PR_KEYS` (Precision, Recall:
            float64 (256,), index i is ``uint8(P * 255) >= 255 - i``, as the F-measure).

    Returns:
        dict with float scalars :data:`SCALAR_KEYS` (Smeasure, wFmeasure, MAE, adpEm,
        adpFm) and float64 (256,) curves :data:`CURVE_KEYS` (Em, Fm: index i is
        ``uint8(P * 255) >= 255 - i``; Sen, Spe, SpeCorrected, Dice, IoU: index i is
        ``P >= np.linspace(1, 0, 256)[i]``).
    """
    st = FrameStats(pred, gt)
    adp_em, em = _e_measure(st)
    adp_fm, fm = _f_measure(st)
    out = {
        "Smeasure": _s_measure(st),
        "wFmeasure": _weighted_f(st),
        "MAE": _mae(st),
        "adpEm": adp_em,
        "adpFm": adp_fm,
        "Em": em,
        "Fm": fm,
    }
    out.update(_medical(st))
    if precision_recall:
        out["Precision"], out["Recall"] = _precision_recall(st)
    return out


def s_measure(pred: np.ndarray, gt: np.ndarray) -> float:
    """S-measure (alpha = 0.5). pred uint8 (H, W), gt bool (H, W)."""
    return _s_measure(FrameStats(pred, gt))


def e_measure(pred: np.ndarray, gt: np.ndarray) -> tuple[float, np.ndarray]:
    """(adaptive E-measure, curve float64 (256,)). pred uint8 (H, W), gt bool (H, W)."""
    return _e_measure(FrameStats(pred, gt))


def f_measure(pred: np.ndarray, gt: np.ndarray) -> tuple[float, np.ndarray]:
    """(adaptive F-measure, curve float64 (256,)), beta^2 = 0.3."""
    return _f_measure(FrameStats(pred, gt))


def weighted_f_measure(pred: np.ndarray, gt: np.ndarray) -> float:
    """Weighted F-measure (beta^2 = 1); 0 for an empty GT."""
    return _weighted_f(FrameStats(pred, gt))


def medical_curves(pred: np.ndarray, gt: np.ndarray) -> dict[str, np.ndarray]:
    """{"Sen", "Spe", "SpeCorrected", "Dice", "IoU"}: float64 (256,) curves, scheme (b)."""
    return _medical(FrameStats(pred, gt))


def mae(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean absolute error between P and the GT."""
    return _mae(FrameStats(pred, gt))
