"""Contact sheets and the worst-case grid: every tile captioned (case, frame, Dice), captions
fitted to their tile (no overlap), no empty cell (issue 23, item 10)."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from vps_d2.visualization.visualizer import ContactSheet, grid_cols, save_worst_cases


@pytest.mark.parametrize("n, cols", [(1, 1), (5, 5), (6, 3), (8, 4), (7, 7), (12, 4), (9, 3)])
def test_grid_has_no_empty_cell(n, cols):
    assert grid_cols(n, 4) == cols and n % cols == 0


def _cells(sheet_img, n, tw, th, cols, cap):
    gap, out = 4, []
    for k in range(n):
        r, c = divmod(k, cols)
        y, x = gap + r * (cap + th + gap), gap + c * (tw + gap)
        out.append(
            (sheet_img[y : y + cap, x : x + tw], sheet_img[y + cap : y + cap + th, x : x + tw])
        )
    return out


def test_sheet_tiles_are_captioned_and_fill_the_grid():
    sheet = ContactSheet(num_tiles=6, cols=4, tile_width=120, total=6)
    for i in range(6):
        label = f"case{i}_1 #{i}  Dice 0.{i}00" + (" and a very long tail" * 3 if i == 2 else "")
        sheet.add(i, np.full((90, 120, 3), 60 + 30 * i, np.uint8), label=label)
    img = sheet.render()
    cap = 12 + 8
    assert img.shape == (2 * (cap + 90) + 3 * 4, 3 * 120 + 4 * 4, 3)  # 3 x 2: no empty cell
    for k, (caption, tile) in enumerate(_cells(img, 6, 120, 90, 3, cap)):
        assert (tile == 60 + 30 * k).all()  # the frame, untouched by any caption
        assert (caption > 200).any(), k  # white caption text
    for c in range(1, 3):  # the gaps between cells stay background: no caption overlaps
        x = 4 + c * (120 + 4) - 4
        assert (img[:, x : x + 4] == 32).all()


def test_worst_case_sheet(tmp_path):
    cases = []
    for i in range(6):
        f = tmp_path / f"case{i}_image{i}.png"
        g = tmp_path / f"gt{i}.png"
        img = np.full((48, 64, 3), 90, np.uint8)
        cv2.imwrite(str(f), img)
        gt = np.zeros((48, 64), np.uint8)
        gt[10:30, 10:30] = 255
        cv2.imwrite(str(g), gt)
        prob = np.zeros((48, 64), np.float32)
        prob[10 : 10 + 3 * i, 10:30] = 1.0
        cases.append({"file_name": str(f), "gt_file_name": str(g), "prob": prob, "score": i / 10})
    paths = save_worst_cases(cases, str(tmp_path / "out"))
    assert os.path.basename(paths[-1]) == "worst_cases.png" and len(paths) == 7
    sheet = cv2.imread(paths[-1])
    tw, th, cap = 128, 48, 12 + 8  # prediction | GT, captions 12 px + 8
    assert sheet.shape == (2 * (cap + th) + 3 * 4, 3 * tw + 4 * 4, 3)  # 3 x 2, none empty
    for caption, tile in _cells(sheet, 6, tw, th, 3, cap):
        assert (caption > 200).any() and abs(float(tile.mean()) - 32) > 10
