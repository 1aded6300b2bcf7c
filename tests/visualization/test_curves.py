"""Curves of several methods (matplotlib): axes labelled, a marker at each maximum, legend
outside the panels, files written atomically in the extension's format."""

import os

import numpy as np
import pytest

from vps_d2.evaluation.metrics import MEDICAL_THRESHOLDS
from vps_d2.visualization.curves import (
    figure_formats,
    precision_recall_figure,
    save_figure,
    threshold_curves_figure,
)


def _curves():
    t = np.linspace(0, 1, 256)
    out = {}
    for s, split in enumerate(("TestEasyDataset/Unseen", "TestHardDataset/Unseen")):
        out[split] = {}
        for k, m in enumerate(("sali", "pns_plus", "frame_baseline")):
            peak = 0.3 + 0.2 * k + 0.05 * s  # index of the maximum differs per method
            bump = 0.9 - 0.2 * k - np.abs(t - peak)
            out[split][m] = {
                "Dice": bump,
                "IoU": bump * 0.8,
                "Fm": bump * 0.9,
                "Em": bump * 0.95,
                "Precision": 1 - 0.5 * t,
                "Recall": t,
            }
    return out


def _legend_outside(fig):
    fig.canvas.draw()
    leg = fig.legends[0].get_window_extent()
    right = max(ax.get_window_extent().x1 for ax in fig.axes)
    return leg.x0 >= right


def test_threshold_figure_axes_markers_legend():
    curves = _curves()
    fig = threshold_curves_figure(curves)
    axes = fig.axes
    assert len(axes) == 2 * 4
    assert {ax.get_xlabel() for ax in axes} == {"threshold"}
    assert [ax.get_ylabel() for ax in axes[:4]] == [
        "Dice",
        "IoU",
        r"F-measure ($\beta^2$ = 0.3)",
        "E-measure",
    ]
    assert axes[0].get_title() == "TestEasyDataset/Unseen: Dice"
    # per method: its curve and one marker at its maximum (Dice: the medical thresholds)
    ax = axes[0]
    lines = ax.get_lines()
    assert len(lines) == 6
    marker = lines[1]
    y = curves["TestEasyDataset/Unseen"]["sali"]["Dice"]
    i = int(np.argmax(y))
    assert marker.get_marker() == "o"
    assert marker.get_xdata()[0] == MEDICAL_THRESHOLDS[i] and marker.get_ydata()[0] == y[i]
    # F-measure panel: scheme (a) thresholds (255 - i) / 255
    fm = axes[2].get_lines()[1]
    j = int(np.argmax(curves["TestEasyDataset/Unseen"]["sali"]["Fm"]))
    assert fm.get_xdata()[0] == pytest.approx((255 - j) / 255, abs=0)
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["sali", "pns_plus", "frame_baseline"]
    assert _legend_outside(fig)


def test_precision_recall_figure():
    curves = _curves()
    fig = precision_recall_figure(curves)
    assert len(fig.axes) == 2
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("recall", "precision")
    c = curves["TestEasyDataset/Unseen"]["pns_plus"]
    i = int(np.argmax(c["Fm"]))
    marker = ax.get_lines()[3]
    assert (marker.get_xdata()[0], marker.get_ydata()[0]) == (c["Recall"][i], c["Precision"][i])
    assert _legend_outside(fig)


def test_save_figure_formats(tmp_path):
    fig = precision_recall_figure(_curves())
    assert {"png", "pdf", "svg"} <= figure_formats()
    png, svg = str(tmp_path / "pr.png"), str(tmp_path / "pr.svg")
    save_figure(fig, png)
    save_figure(fig, svg)
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in open(svg, "rb").read(2000)
    with pytest.raises(ValueError, match="cannot write 'xyz'"):
        save_figure(fig, str(tmp_path / "pr.xyz"))
    assert sorted(os.listdir(tmp_path)) == ["pr.png", "pr.svg"]  # no temp file left
