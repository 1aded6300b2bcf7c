"""Overlay text drawn with Pillow, legible at any frame size and the same on OpenCV 4.x and
5.x (no cv2 text function is used), and real per-frame latencies in clip mode (issue 23,
item 6)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

import vps_d2.engine.predictor as predictor_module
from vps_d2.engine.predictor import VideoPredictor
from vps_d2.visualization import Visualizer
from vps_d2.visualization.visualizer import OUTLINE_COLOR, TEXT_COLOR, draw_text, text_size


@pytest.fixture()
def no_cv2_text(monkeypatch):
    """The text path must not depend on OpenCV's glyphs (they differ between 4.x and 5.x)."""

    def refuse(*a, **k):
        raise AssertionError("cv2 text function used")

    monkeypatch.setattr(cv2, "putText", refuse)
    monkeypatch.setattr(cv2, "getTextSize", refuse)


@pytest.mark.parametrize("shape", [(64, 80), (352, 352), (1080, 1920)])
def test_text_is_legible_and_stays_in_its_box(no_cv2_text, shape):
    img = np.full((*shape, 3), 90, np.uint8)
    text = "sessile_serrated_lesion 0.40"
    vis = Visualizer()
    scale = max(12, round(min(shape) / 22))
    w, h = text_size(text, scale)
    org = (4, h + 6)
    draw_text(img, text, org)
    changed = np.nonzero((img != 90).any(-1))
    r = max(1, scale // 8)
    # glyph height grows with the frame: >= 12 px, ~1/22 of the shorter side
    assert h >= 0.6 * scale and h >= 8
    ys, xs = changed
    assert xs.min() >= org[0] - r and xs.max() <= org[0] + w + r  # no ghost glyphs beyond
    assert ys.min() >= org[1] - h - r and ys.max() <= org[1] + r
    # white glyphs on a black outline
    near_text = np.abs(img.astype(int) - np.array(TEXT_COLOR)).max(-1) < 80
    visible = min(w, shape[1] - org[0]) * h
    assert near_text.sum() > 0.05 * visible
    assert (img == np.array(OUTLINE_COLOR, np.uint8)).all(-1).sum() > 0
    # the frame's own labels use the same path at any size
    out = vis.draw_frame(img, {"prob": np.zeros(shape)}, frame_index=3, latency_ms=12.5)
    assert out.shape == (*shape, 3)


def test_text_pixels_are_reproducible_and_clipped(no_cv2_text):
    a = np.zeros((40, 60, 3), np.uint8)
    b = np.zeros((40, 60, 3), np.uint8)
    draw_text(a, "#12  3.4 ms", (2, 20), scale=14)
    draw_text(b, "#12  3.4 ms", (2, 20), scale=14)
    np.testing.assert_array_equal(a, b)
    c = np.zeros((40, 60, 3), np.uint8)
    draw_text(c, "a long label running off the frame", (50, 5), scale=14)  # clipped, no error
    draw_text(c, "x", (500, 500), scale=14)  # outside: nothing drawn
    assert c.shape == (40, 60, 3)


class _WindowModel:
    """A clip model answering 3 frames at a time: the window costs 5 ms (fake clock)."""

    def __init__(self, clock):
        self.clock = clock

    def eval(self):
        return self

    def stream(self, frames):
        window = []
        for f in frames:
            window.append(f)
            if len(window) == 3:
                self.clock[0] += 0.005
                yield from ({"prob": torch.zeros(2, 2)} for _ in window)
                window = []


def test_clip_mode_latency_is_real(monkeypatch):
    """Before, the window's time went to its first output and the other two showed "0 ms"."""
    clock = [100.0]
    monkeypatch.setattr(predictor_module.time, "perf_counter", lambda: clock[0])
    pred = VideoPredictor(model=_WindowModel(clock), input_format="RGB")
    frames = [{"frame_index": i, "image": torch.zeros(3, 2, 2)} for i in range(6)]
    outs = [out for _, out in pred.run(frames)]
    assert [o["model_ms"] for o in outs] == pytest.approx([5, 0, 0, 5, 0, 0])
    assert [o["latency_ms"] for o in outs] == pytest.approx([5] * 6)
