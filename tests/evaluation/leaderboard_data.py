"""Synthetic SUN-SEG-layout GT and three methods of known quality (tests of the leaderboard).

"gt" predicts the ground truth itself, "blurred" a blurred and shifted copy of it, "noise"
uniform noise: on every case S-measure, Dice and the others rank them gt > blurred > noise.
"""

import os

import cv2
import numpy as np

SHAPE = (36, 48)
SPLITS = {"TestEasyDataset/Unseen": 7, "TestHardDataset/Unseen": 6}  # split -> cases
STEM = "case_M_20181001100941_0U62372100109341_1_005_001-1_a2_ayy_image{}"
METHODS = ("gt", "blurred", "noise")


def case_name(split_index: int, i: int) -> str:
    return f"case{10 * split_index + i + 1}"


def make_tree(root: str, frames: int = 5, seed: int = 0, splits: dict = SPLITS) -> dict:
    """GT under ``root/SUN-SEG`` and predictions of METHODS under ``root/preds``.

    Returns {split: {case: [gt paths in SUN order]}}.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    tree: dict = {}
    for s, (split, n_cases) in enumerate(splits.items()):
        for i in range(n_cases):
            case = case_name(s, i)
            gdir = os.path.join(root, "SUN-SEG", split, "GT", case)
            os.makedirs(gdir, exist_ok=True)
            paths = []
            for k in range(1, frames + 1):
                cy, cx = rng.uniform(10, 26), rng.uniform(10, 38)
                r = rng.uniform(4, 9)
                gt = (((yy - cy) ** 2 + (xx - cx) ** 2) <= r * r).astype(np.uint8) * 255
                name = STEM.format(k) + ".png"
                cv2.imwrite(os.path.join(gdir, name), gt)
                paths.append(os.path.join(gdir, name))
                preds = {
                    "gt": gt,
                    "blurred": cv2.GaussianBlur(np.roll(gt, 3, axis=1), (0, 0), 3.0),
                    "noise": rng.integers(0, 256, SHAPE, dtype=np.uint8),
                }
                for m, img in preds.items():
                    pdir = os.path.join(root, "preds", m, split, case)
                    os.makedirs(pdir, exist_ok=True)
                    cv2.imwrite(os.path.join(pdir, name), img)
            tree.setdefault(split, {})[case] = paths
    return tree
