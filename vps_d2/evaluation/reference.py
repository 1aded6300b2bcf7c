"""Slow reference implementation of the SUN-SEG toolbox metrics (one pass per threshold).

Written directly from the formulas of the SUN-SEG evaluation protocol
(docs/evaluation.md), the way the toolbox computes its threshold metrics: one binary
map per threshold, plain NumPy reductions over the float prediction. It is several hundred
times slower than :mod:`vps_d2.evaluation.metrics` and exists only as the independent
reference for the tests and ``tools/benchmark_evaluator.py``; do not use it to evaluate.

Inputs everywhere: ``P`` float64 (H, W) in [0, 1] (the normalised prediction) and ``G``
bool (H, W) (the binarised GT), as returned by :func:`normalize`.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import ndimage

# The thresholds are a definition of the protocol, not an implementation choice: one copy.
from .metrics import MEDICAL_THRESHOLDS

__all__ = [
    "e_measure",
    "f_measure",
    "mae",
    "medical_curves",
    "normalize",
    "reference_frame_metrics",
    "reference_split_metrics",
    "s_measure",
    "weighted_f_measure",
]

EPS = np.spacing(1)


def normalize(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 pred (H, W) and uint8 GT (H, W) -> (P float64 (H, W), G bool (H, W))."""
    G = gt > 128
    P = pred / 255
    if P.max() != P.min():
        P = (P - P.min()) / (P.max() - P.min())
    return P, G


# ----------------------------------------------------------------------------- S-measure
def _object_score(x: np.ndarray) -> float:
    m = np.mean(x)
    s = np.std(x, ddof=1)
    return 2 * m / (m**2 + 1 + s + EPS)


def _ssim(x: np.ndarray, y: np.ndarray) -> float:
    n = x.size
    mx, my = np.mean(x), np.mean(y)
    sx2 = np.sum((x - mx) ** 2) / (n - 1)
    sy2 = np.sum((y - my) ** 2) / (n - 1)
    sxy = np.sum((x - mx) * (y - my)) / (n - 1)
    a = 4 * mx * my * sxy
    b = (mx**2 + my**2) * (sx2 + sy2)
    if a != 0:
        return a / (b + EPS)
    return 1.0 if b == 0 else 0.0


def s_measure(P: np.ndarray, G: np.ndarray) -> float:
    """Structure measure (alpha = 0.5) of one frame."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NaN edge cases, as the toolbox
        y = np.mean(G)
        if y == 0:
            return float(1 - np.mean(P))
        if y == 1:
            return float(np.mean(P))
        so = y * _object_score(P[G]) + (1 - y) * _object_score(1 - P[~G])
        h, w = G.shape
        cy, cx = np.argwhere(G).mean(axis=0).round()
        cy, cx = int(cy) + 1, int(cx) + 1
        area = h * w
        w1 = cx * cy / area
        w2 = cy * (w - cx) / area
        w3 = (h - cy) * cx / area
        w4 = 1 - w1 - w2 - w3
        blocks = [
            (slice(0, cy), slice(0, cx)),
            (slice(0, cy), slice(cx, w)),
            (slice(cy, h), slice(0, cx)),
            (slice(cy, h), slice(cx, w)),
        ]
        q = [_ssim(P[r, c], G[r, c]) for r, c in blocks]
        sr = w1 * q[0] + w2 * q[1] + w3 * q[2] + w4 * q[3]
        return float(max(0, 0.5 * so + 0.5 * sr))  # built-in max: NaN gives 0


# ----------------------------------------------------------------------------- E-measure
def _e_binary(F: np.ndarray, G: np.ndarray) -> float:
    n = G.size
    n_g = int(np.count_nonzero(G))
    if n_g == 0:
        return np.count_nonzero(~F) / (n - 1 + EPS)
    if n_g == n:
        return np.count_nonzero(F) / (n - 1 + EPS)
    n_f = int(np.count_nonzero(F))
    total = 0.0
    for f in (1, 0):
        for g in (1, 0):
            n_fg = int(np.count_nonzero((F == bool(f)) & (G == bool(g))))
            a = f - n_f / n
            b = g - n_g / n
            xi = 2 * (a * b) / (a**2 + b**2 + EPS)
            total += n_fg * ((xi + 1) ** 2 / 4)
    return total / (n - 1 + EPS)


def e_measure(P: np.ndarray, G: np.ndarray) -> tuple[float, np.ndarray]:
    """(adaptive E, curve (256,)); curve index i means ``uint8(P * 255) >= 255 - i``."""
    thr = min(2 * P.mean(), 1)
    adp = _e_binary(P >= thr, G)
    q = (P * 255).astype(np.uint8)
    curve = np.array([_e_binary(q >= 255 - i, G) for i in range(256)])
    return adp, curve


# ----------------------------------------------------------------------------- F-measure
def f_measure(P: np.ndarray, G: np.ndarray, beta2: float = 0.3) -> tuple[float, np.ndarray]:
    """(adaptive F, curve (256,)), beta^2 = 0.3, scheme (a) thresholds for the curve."""
    n_g = int(np.count_nonzero(G))
    thr = min(2 * P.mean(), 1)
    F = P >= thr
    tp = int(np.count_nonzero(F & G))
    if tp == 0:
        adp = 0.0
    else:
        pre = tp / np.count_nonzero(F)
        rec = tp / n_g
        adp = (1 + beta2) * pre * rec / (beta2 * pre + rec)
    q = (P * 255).astype(np.uint8)
    curve = np.zeros(256)
    for i in range(256):
        F = q >= 255 - i
        tp = int(np.count_nonzero(F & G))
        ps = int(np.count_nonzero(F)) or 1
        precision = tp / ps
        recall = tp / max(n_g, 1)
        num = (1 + beta2) * precision * recall
        curve[i] = 0.0 if num == 0 else num / (beta2 * precision + recall)
    return adp, curve


# -------------------------------------------------------------------- weighted F-measure
def _fspecial_gaussian(size: int = 7, sigma: float = 5.0) -> np.ndarray:
    m = (size - 1) / 2
    y, x = np.ogrid[-m : m + 1, -m : m + 1]
    h = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
    h[h < np.finfo(h.dtype).eps * h.max()] = 0
    return h / h.sum()


def weighted_f_measure(P: np.ndarray, G: np.ndarray) -> float:
    """Weighted F-measure (beta^2 = 1); 0 when the GT is empty."""
    if not G.any():
        return 0.0
    dst, idx = ndimage.distance_transform_edt(~G, return_indices=True)
    E = np.abs(P - G)
    Et = E.copy()
    bg = ~G
    Et[bg] = Et[idx[0][bg], idx[1][bg]]
    EA = ndimage.convolve(Et, _fspecial_gaussian(), mode="constant", cval=0)
    min_e_ea = np.where(G & (EA < E), EA, E)
    B = np.where(bg, 2 - np.exp(np.log(0.5) / 5 * dst), np.ones_like(P))
    Ew = min_e_ea * B
    tpw = np.sum(G) - np.sum(Ew[G])
    fpw = np.sum(Ew[bg])
    R = 1 - np.mean(Ew[G])
    Pw = tpw / (tpw + fpw + EPS)
    return float(2 * R * Pw / (R + Pw + EPS))


# ------------------------------------------------------------------------------- medical
def medical_curves(P: np.ndarray, G: np.ndarray) -> dict[str, np.ndarray]:
    """Sen/Spe/Dice/IoU (and a corrected Spe) at ``P >= t`` for t in linspace(1, 0, 256).

    As the toolbox: every value is 0 at a threshold where TP == 0 (Spe included), and Spe
    is NaN (its NumPy 0 / 0) on a frame without background. ``SpeCorrected`` =
    TN / (TN + FP) at every threshold (1 when the frame has no background).
    """
    n_g = int(np.count_nonzero(G))
    out = {k: np.zeros(256) for k in ("Sen", "Spe", "Dice", "IoU", "SpeCorrected")}
    for i, t in enumerate(MEDICAL_THRESHOLDS):
        F = P >= t
        n_f = int(np.count_nonzero(F))
        tp = int(np.count_nonzero(F & G))
        fn = n_g - tp
        fp = n_f - tp
        tn = (F.size - n_f) - fn
        out["SpeCorrected"][i] = tn / (tn + fp) if tn + fp > 0 else 1.0
        if tp == 0:
            continue
        out["Sen"][i] = tp / n_g
        out["Spe"][i] = tn / (tn + fp) if tn + fp > 0 else np.nan  # NumPy's 0 / 0
        out["Dice"][i] = 2 * tp / (n_g + n_f)
        out["IoU"][i] = tp / (tp + fp + fn)
    return out


def mae(P: np.ndarray, G: np.ndarray) -> float:
    return float(np.mean(np.abs(P - G)))


def reference_frame_metrics(pred: np.ndarray, gt: np.ndarray) -> dict:
    """All metrics of one frame from uint8 pred/GT of the same shape (H, W).

    Same keys as :func:`vps_d2.evaluation.metrics.frame_metrics`: scalars Smeasure,
    wFmeasure, MAE, adpEm, adpFm and 256-point curves Em, Fm, Sen, Spe, SpeCorrected,
    Dice, IoU.
    """
    P, G = normalize(pred, gt)
    adp_em, em = e_measure(P, G)
    adp_fm, fm = f_measure(P, G)
    out = {
        "Smeasure": s_measure(P, G),
        "wFmeasure": weighted_f_measure(P, G),
        "MAE": mae(P, G),
        "adpEm": float(adp_em),
        "adpFm": float(adp_fm),
        "Em": em,
        "Fm": fm,
    }
    out.update(medical_curves(P, G))
    return out


def reference_split_metrics(cases: dict[str, list[dict]]) -> dict[str, float]:
    """Split values from ``{case: [reference_frame_metrics of its scored frames]}``.

    Per case: mean of each scalar over frames, mean of each curve per threshold; then the
    unweighted mean over cases; ``mean<curve>`` / ``max<curve>`` of the averaged curve.
    """
    scalars = ("Smeasure", "wFmeasure", "MAE", "adpEm", "adpFm")
    curves = ("Em", "Fm", "Sen", "Spe", "SpeCorrected", "Dice", "IoU")
    per_case = []
    for frames in cases.values():
        per_case.append({k: np.mean([f[k] for f in frames], axis=0) for k in scalars + curves})
    out = {k: float(np.mean([c[k] for c in per_case])) for k in scalars}
    for k in curves:
        avg = np.mean([c[k] for c in per_case], axis=0)
        out["mean" + k] = float(np.mean(avg))
        out["max" + k] = float(np.max(avg))
    return out
