"""Curves of several methods with matplotlib: each metric against the threshold, and
precision-recall.

Input everywhere: ``curves = {split: {method: {key: float64 (256,)}}}`` as kept by a
:class:`~vps_d2.evaluation.leaderboard.Leaderboard` (``lb.curves``): the split's
case-averaged curves of :data:`~vps_d2.evaluation.metrics.CURVE_KEYS` and
:data:`~vps_d2.evaluation.metrics.PR_KEYS`. Index i of a curve is a threshold: for Dice,
IoU, Sensitivity and Specificity ``P >= np.linspace(1, 0, 256)[i]``
(:data:`~vps_d2.evaluation.metrics.MEDICAL_THRESHOLDS`), for the E- and F-measure and
precision/recall ``uint8(P * 255) >= 255 - i`` (threshold ``(255 - i) / 255``), the SUN-SEG
toolbox's two schemes. Figures are built with :class:`matplotlib.figure.Figure` (no pyplot,
no GUI backend, no global state) and saved atomically with :func:`save_figure`.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from vps_d2.evaluation.metrics import MEDICAL_THRESHOLDS
from vps_d2.utils.file_io import atomic_write_bytes

__all__ = [
    "CURVE_LABELS",
    "THRESHOLD_METRICS",
    "curve_thresholds",
    "figure_formats",
    "precision_recall_figure",
    "save_figure",
    "threshold_curves_figure",
]

#: Curves drawn against the threshold by default, in panel order.
THRESHOLD_METRICS = ("Dice", "IoU", "Fm", "Em")
CURVE_LABELS = {
    "Dice": "Dice",
    "IoU": "IoU",
    "Fm": r"F-measure ($\beta^2$ = 0.3)",
    "Em": "E-measure",
    "Sen": "Sensitivity",
    "Spe": "Specificity (toolbox)",
    "SpeCorrected": "Specificity",
    "Precision": "Precision",
    "Recall": "Recall",
}
_SCHEME_A = (255 - np.arange(256)) / 255  # uint8(P * 255) >= 255 - i


def curve_thresholds(key: str) -> np.ndarray:
    """float64 (256,): the threshold of each index of the curve ``key``."""
    return MEDICAL_THRESHOLDS if key in ("Dice", "IoU", "Sen", "Spe", "SpeCorrected") else _SCHEME_A


def figure_formats() -> set[str]:
    """File extensions (no dot) matplotlib can write here: png, pdf, svg, ..."""
    return set(FigureCanvasAgg(Figure()).get_supported_filetypes())


def _methods(curves: Mapping) -> list[str]:
    out: list[str] = []
    for per_method in curves.values():
        out += [m for m in per_method if m not in out]
    return out


def _colors(methods: Sequence[str]) -> dict[str, tuple]:
    cmap = colormaps["tab10" if len(methods) <= 10 else "tab20"]
    return {m: cmap(i % cmap.N) for i, m in enumerate(methods)}


def threshold_curves_figure(
    curves: Mapping[str, Mapping[str, Mapping[str, np.ndarray]]],
    metrics: Sequence[str] = THRESHOLD_METRICS,
    *,
    panel_size: tuple[float, float] = (3.6, 2.8),
) -> Figure:
    """One panel per (split, metric): the metric against the threshold for every method,
    with a marker at each method's maximum (the ``max*`` value of the table).

    Rows are splits, columns metrics; x: threshold (0-1), y: the metric; the legend (one
    entry per method) is outside the panels, on the right.
    """
    methods = _methods(curves)
    colors = _colors(methods)
    rows, cols = len(curves), len(metrics)
    fig = Figure(
        figsize=(panel_size[0] * cols + 1.8, panel_size[1] * rows + 0.4), layout="constrained"
    )
    axes = fig.subplots(rows, cols, squeeze=False)
    handles = {}
    for r, (split, per_method) in enumerate(curves.items()):
        for c, key in enumerate(metrics):
            ax = axes[r, c]
            x = curve_thresholds(key)
            for m in methods:
                if m not in per_method or key not in per_method[m]:
                    continue
                y = np.nan_to_num(np.asarray(per_method[m][key], dtype=np.float64))
                (line,) = ax.plot(x, y, color=colors[m], lw=1.5, label=m)
                i = int(np.argmax(y))
                ax.plot(x[i], y[i], marker="o", ms=5, color=colors[m], mec="black", mew=0.6)
                handles.setdefault(m, line)
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1.02)
            ax.grid(alpha=0.3)
            ax.set_xlabel("threshold")
            ax.set_ylabel(CURVE_LABELS.get(key, key))
            ax.set_title(f"{split}: {CURVE_LABELS.get(key, key)}", fontsize=9)
    fig.legend(
        list(handles.values()),
        list(handles),
        loc="outside right center",
        title="method (o = maximum)",
        fontsize=8,
    )
    FigureCanvasAgg(fig)  # renders without a display (fig.canvas.draw(), savefig)
    return fig


def precision_recall_figure(
    curves: Mapping[str, Mapping[str, Mapping[str, np.ndarray]]],
    *,
    panel_size: tuple[float, float] = (3.8, 3.4),
) -> Figure:
    """One panel per split: precision against recall of every method over the 256
    thresholds, a marker at each method's maximum F-measure (beta^2 = 0.3); the legend
    outside the panels, on the right."""
    methods = _methods(curves)
    colors = _colors(methods)
    n = len(curves)
    fig = Figure(figsize=(panel_size[0] * n + 1.8, panel_size[1] + 0.4), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    handles = {}
    for ax, (split, per_method) in zip(axes, curves.items()):
        for m in methods:
            cur = per_method.get(m, {})
            if "Precision" not in cur or "Recall" not in cur:
                continue
            p, r = np.asarray(cur["Precision"]), np.asarray(cur["Recall"])
            (line,) = ax.plot(r, p, color=colors[m], lw=1.5, label=m)
            if "Fm" in cur:
                i = int(np.argmax(np.nan_to_num(cur["Fm"])))
                ax.plot(r[i], p[i], marker="o", ms=5, color=colors[m], mec="black", mew=0.6)
            handles.setdefault(m, line)
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_title(split, fontsize=9)
    fig.legend(
        list(handles.values()),
        list(handles),
        loc="outside right center",
        title="method (o = max F-measure)",
        fontsize=8,
    )
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str, dpi: int = 120) -> None:
    """Write ``fig`` to ``path`` atomically, in the format of its extension (default png)."""
    ext = os.path.splitext(path)[1].lower().lstrip(".") or "png"
    if ext not in figure_formats():
        raise ValueError(
            f"{path}: matplotlib cannot write {ext!r} files; use one of "
            f"{', '.join(sorted(figure_formats()))}"
        )
    buf = io.BytesIO()
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)  # a canvas that renders without a display
    fig.savefig(buf, format=ext, dpi=dpi)
    atomic_write_bytes(path, buf.getvalue())
