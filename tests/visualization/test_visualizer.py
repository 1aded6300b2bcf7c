"""Overlays, contact sheets and worst-case dumps (vps_d2.visualization)."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
import torch

from vps_d2.evaluation import write_worst_cases
from vps_d2.visualization import (
    BOX_COLOR,
    GT_COLOR,
    PRED_COLOR,
    ContactSheet,
    Visualizer,
    WorstCaseKeeper,
    draw_contours,
    draw_worst_cases,
    overlay_heatmap,
    overlay_mask,
    save_worst_cases,
)

MUCOSA = (90, 80, 180)  # BGR pink/red


def _frame(h=64, w=80):
    return np.full((h, w, 3), MUCOSA, np.uint8)


def _disk(h=64, w=80, cx=40, cy=32, r=12):
    yy, xx = np.mgrid[:h, :w]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


def test_overlay_mask_blends_inside_only():
    img, mask = _frame(), _disk()
    out = overlay_mask(img, mask, color=PRED_COLOR, alpha=0.4, outline=False)
    expected = np.round(0.6 * np.array(MUCOSA) + 0.4 * np.array(PRED_COLOR))
    assert np.abs(out[mask].astype(float) - expected).max() <= 1
    assert (out[~mask] == img[~mask]).all()
    assert (img == _frame()).all(), "the input image must not be modified"


def test_contours_on_the_boundary_only():
    img, mask = _frame(), _disk(r=15)
    out = draw_contours(img.copy(), mask, color=PRED_COLOR, thickness=1)
    inner = _disk(r=10)
    assert (out[inner] == img[inner]).all()
    far = ~_disk(r=20)
    assert (out[far] == img[far]).all()
    ring = _disk(r=16) & ~_disk(r=14)
    cyan = (out[..., 0] > 200) & (out[..., 1] > 200) & (out[..., 2] < 60)
    assert cyan[ring].mean() > 0.3
    with pytest.raises(ValueError, match="does not match"):
        draw_contours(img, mask[:10])


def test_heatmap_weight_follows_probability():
    img = _frame()
    prob = np.zeros((64, 80), np.float32)
    prob[:, 40:] = 1.0
    out = overlay_heatmap(img, prob, alpha=0.5, threshold=None)
    assert (out[:, :40] == img[:, :40]).all()
    top = cv2.applyColorMap(np.array([[255]], np.uint8), cv2.COLORMAP_VIRIDIS)[0, 0]
    expected = np.round(0.5 * np.array(MUCOSA) + 0.5 * top)
    assert np.abs(out[:, 45:].astype(float) - expected).max() <= 1


def test_visualizer_box_label_and_gating():
    vis = Visualizer(overlay="contour", threshold=0.5, show_text=False)
    img = _frame(100, 120)
    prob = torch.zeros(100, 120)
    prob[40:60, 50:70] = 0.9
    box = torch.tensor([0.5, 0.5, 0.5, 0.4])  # x 30..90, y 30..70
    scores = torch.tensor([0.1, 0.7, 0.1, 0.05, 0.05, 0.0])
    out = vis.draw_prediction(img, {"prob": prob, "box": box, "class_scores": scores})
    yellow = (out[..., 0] < 60) & (out[..., 1] > 200) & (out[..., 2] > 200)
    # left and right edges of the box are yellow over their vertical extent
    assert yellow[35:65, 30].mean() > 0.9 and yellow[35:65, 90].mean() > 0.9
    assert not yellow[45:55, 55:65].any()
    # no foreground -> no box drawn
    out2 = vis.draw_prediction(img, {"prob": torch.zeros(100, 120), "box": box})
    assert (out2 == img).all()
    with pytest.raises(ValueError, match="overlay"):
        Visualizer(overlay="blobs")
    with pytest.raises(ValueError, match="threshold"):
        Visualizer(threshold=1.5)
    with pytest.raises(ValueError, match="does not match"):
        vis.draw_prediction(img, {"prob": torch.zeros(10, 10)})
    assert BOX_COLOR != PRED_COLOR


def test_threshold_decides_the_mask():
    img = _frame()
    prob = np.full((64, 80), 0.6, np.float32)
    hi = Visualizer(threshold=0.7, show_text=False).draw_prediction(img, {"prob": prob})
    lo = Visualizer(threshold=0.5, show_text=False).draw_prediction(img, {"prob": prob})
    assert (hi == img).all()
    assert (lo != img).any(axis=-1).mean() > 0.9


def test_side_by_side_ground_truth():
    vis = Visualizer(overlay="mask", show_text=True)
    img, gt = _frame(), _disk(cx=20, r=8)
    out = vis.draw_frame(
        img, {"prob": np.zeros((64, 80))}, frame_index=3, latency_ms=12.5, gt_mask=gt, with_gt=True
    )
    assert out.shape == (64, 160, 3)
    right = out[:, 80:]
    green = right[..., 1].astype(int) - right[..., 2] > 30  # G > R: green-tinted
    assert green[_disk(cx=20, r=4)].all()
    assert not green[_disk(cx=60, r=5)].any()
    none = vis.draw_frame(img, {"prob": np.zeros((64, 80))}, with_gt=True, gt_mask=None)
    assert none.shape == (64, 160, 3)
    assert GT_COLOR == (0, 255, 0)


def test_contact_sheet_with_known_total():
    sheet = ContactSheet(num_tiles=5, cols=3, tile_width=40, total=100)
    for i in range(100):
        img = np.full((32, 80, 3), i, np.uint8)
        sheet.add(i, img)
    expected = sorted({int(round(v)) for v in np.linspace(0, 99, 5)})
    assert sheet.selected() == expected
    out = sheet.render()
    # 5 tiles: 1 row x 5 cols (no empty cell) of 40x16 tiles under 20-pixel captions,
    # 4-pixel gaps
    assert out.shape == (20 + 16 + 2 * 4, 5 * 40 + 6 * 4, 3)
    y = 4 + 20 + 8
    assert out[y, 4 + 20, 0] == expected[0] and out[y, 4 + 44 + 20, 0] == expected[1]


def test_contact_sheet_unknown_length_is_bounded_and_even(tmp_path):
    sheet = ContactSheet(num_tiles=4, cols=2, tile_width=8)
    peak = 0
    for i in range(1000):
        sheet.add(i, np.full((4, 8, 3), 7, np.uint8))
        peak = max(peak, len(sheet._tiles))
    assert peak <= 2 * 4 + 1
    sel = sheet.selected()
    assert len(sel) == 4 and sel[0] == 0 and sel[-1] > 600
    gaps = np.diff(sel)
    assert gaps.max() - gaps.min() <= gaps.min()  # roughly even
    path = sheet.save(str(tmp_path / "s.png"))
    assert cv2.imread(path).shape[:2] == sheet.render().shape[:2]
    with pytest.raises(ValueError, match="no frame"):
        ContactSheet().render()


def test_worst_case_keeper_keeps_the_lowest_scores():
    rng = np.random.default_rng(0)
    scores = rng.random(50)
    keeper = WorstCaseKeeper(k=5, max_side=16)
    for i, s in enumerate(scores):
        keeper.add(s, file_name=f"f{i}.jpg", gt_file_name=None, prob=np.full((40, 64), 0.5))
    cases = keeper.cases()
    assert [c["score"] for c in cases] == pytest.approx(sorted(scores)[:5])
    assert [c["name"] for c in cases] == [f"f{i}" for i in np.argsort(scores)[:5]]
    assert cases[0]["prob"].dtype == np.uint8 and cases[0]["prob"].shape == (10, 16)
    keeper.add(float("nan"), file_name="nan.jpg", gt_file_name=None, prob=np.zeros((4, 4)))
    assert "nan" not in [c["name"] for c in keeper.cases()]


def test_save_worst_cases_renders_pred_and_gt(tmp_path):
    cases = []
    for i, score in enumerate([0.8, 0.1, 0.5]):
        f, g = tmp_path / f"frame{i}.jpg", tmp_path / f"mask{i}.png"
        cv2.imwrite(str(f), _frame())
        cv2.imwrite(str(g), _disk().astype(np.uint8) * 255)
        prob = np.zeros((32, 40), np.float32)  # half size: resized to the frame
        prob[8:24, 10:30] = 1.0
        cases.append({"file_name": str(f), "gt_file_name": str(g), "prob": prob, "score": score})
    paths = save_worst_cases(cases, str(tmp_path / "worst"), k=2, metric="Dice")
    names = [os.path.basename(p) for p in paths]
    assert names == ["00_frame1.jpg", "01_frame2.jpg", "worst_cases.png"]
    img = cv2.imread(paths[0])
    assert img.shape == (64, 160, 3)
    left, right = img[:, :80].astype(int), img[:, 80:].astype(int)
    assert left[32, 40, 0] - left[32, 40, 2] > 40  # cyan-tinted prediction (B > R)
    assert right[32, 40, 1] - right[32, 40, 2] > 20  # green-tinted GT (G > R)
    assert abs(left[60, 5] - np.array(MUCOSA)).max() < 12  # background untouched (JPEG)
    assert save_worst_cases([], str(tmp_path / "none")) == []


def test_draw_worst_cases_renders_what_the_evaluation_kept(tmp_path):
    """The evaluation writes maps + index (vps_d2.evaluation.write_worst_cases); drawing
    them gives the same images as save_worst_cases, in the same folder."""
    keeper = WorstCaseKeeper(k=2)
    for i, score in enumerate([0.8, 0.1, 0.5]):
        f, g = tmp_path / f"frame{i}.jpg", tmp_path / f"mask{i}.png"
        cv2.imwrite(str(f), _frame())
        cv2.imwrite(str(g), _disk().astype(np.uint8) * 255)
        prob = np.zeros((64, 80), np.float32)
        prob[16:48, 20:60] = 1.0
        keeper.add(score, file_name=str(f), gt_file_name=str(g), prob=prob)
    folder = str(tmp_path / "worst")
    write_worst_cases(keeper.cases(), folder, k=2, metric="Dice@0.5")
    paths = draw_worst_cases(folder)
    assert [os.path.basename(p) for p in paths] == [
        "00_frame1.jpg",
        "01_frame2.jpg",
        "worst_cases.png",
    ]
    assert cv2.imread(paths[0]).shape == (64, 160, 3)
    assert draw_worst_cases(str(tmp_path / "empty")) == []
