"""DetectionEvaluator against closed-form COCO APs, pycocotools run directly, NumPy IoU."""

from __future__ import annotations

import contextlib
import io
import logging
import os

import cv2
import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from vps_d2.config import get_cfg
from vps_d2.data.datasets.sun_seg import load_sun_seg
from vps_d2.data.mappers import VideoTestFrames
from vps_d2.evaluation import detection as det_mod
from vps_d2.evaluation.build import EVALUATOR_REGISTRY
from vps_d2.evaluation.classification import ClassificationEvaluator
from vps_d2.evaluation.detection import DetectionEvaluator

W, H = 80, 60
TASK = "ds/detection"


def norm(box, w=W, h=H):
    """[x, y, w, h] pixels -> normalised (cx, cy, w, h) tensor, as a model outputs it."""
    x, y, bw, bh = box
    return torch.tensor([(x + bw / 2) / w, (y + bh / 2) / h, bw / w, bh / h], dtype=torch.float64)


def frame(i, gt_box=None, gt_file=None, vid="case1", w=W, h=H):
    return {
        "video_id": vid,
        "frame_index": i,
        "height": h,
        "width": w,
        "gt_box": gt_box,
        "gt_file_name": gt_file,
    }


def run(pairs, ev=None):
    ev = ev or DetectionEvaluator(dataset_name="ds")
    ev.reset()
    for inp, out in pairs:
        ev.process([inp], [out])
    return ev.evaluate()


def np_iou(a, b):
    ax0, ay0, ax1, ay1 = a[0], a[1], a[0] + a[2], a[1] + a[3]
    bx0, by0, bx1, by1 = b[0], b[1], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax1, bx1) - max(ax0, bx0))
    ih = max(0.0, min(ay1, by1) - max(ay0, by0))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


GT = [[10.0, 5.0, 20.0, 16.0], [30.0, 20.0, 12.0, 10.0], [2.0, 30.0, 40.0, 25.0]]


def test_perfect_boxes_give_ap_one():
    pairs = [(frame(i, b), {"box": norm(b), "box_score": 0.5 + 0.1 * i}) for i, b in enumerate(GT)]
    res = run(pairs)[TASK]
    for k in ("AP", "AP50", "AP75", "mean_iou"):
        assert res[k] == pytest.approx(1.0), k
    assert (res["num_frames"], res["num_gt_boxes"], res["num_pred_boxes"]) == (3.0, 3.0, 3.0)
    assert all(type(v) is float for v in res.values())


def test_iou_between_half_and_three_quarters():
    # GT 10 x 10; prediction keeps the left 6.25 columns: IoU = 62.5 / 100 = 0.625
    pairs = []
    for i in range(4):
        gt = [5.0 + i, 5.0, 10.0, 10.0]
        pairs.append((frame(i, gt), {"box": norm([gt[0], gt[1], 6.25, 10.0])}))
    res = run(pairs)[TASK]
    assert res["AP50"] == pytest.approx(1.0)
    assert res["AP75"] == pytest.approx(0.0)
    assert res["AP"] == pytest.approx(3 / 10)  # matched at IoU 0.50, 0.55, 0.60 of ten
    assert res["mean_iou"] == pytest.approx(0.625)


def _mask_file(tmp_path, name, mask):
    path = str(tmp_path / name)
    cv2.imwrite(path, mask)
    return path


def test_false_positive_on_empty_gt_frame(tmp_path):
    empty = _mask_file(tmp_path, "empty.png", np.zeros((H, W), np.uint8))
    tps = [(frame(i, b), {"box": norm(b), "box_score": 0.9}) for i, b in enumerate(GT)]
    fp_low = (frame(3, None, empty), {"box": norm([5, 5, 10, 10]), "box_score": 0.1})
    res = run(tps + [fp_low])[TASK]
    assert res["AP"] == pytest.approx(1.0) and res["AP50"] == pytest.approx(1.0)
    assert res["num_frames"] == 4.0 and res["num_gt_boxes"] == 3.0
    assert res["mean_iou"] == pytest.approx(1.0)  # over the frames with a GT box only
    # the same false positive ranked first: precision n / (n + 1) at every recall
    fp_high = (fp_low[0], {"box": fp_low[1]["box"], "box_score": 0.95})
    res = run(tps + [fp_high])[TASK]
    assert res["AP"] == pytest.approx(3 / 4) and res["AP75"] == pytest.approx(3 / 4)


def test_default_box_score_is_one(tmp_path):
    empty = _mask_file(tmp_path, "empty.png", np.zeros((H, W), np.uint8))
    tp = (frame(0, GT[0]), {"box": norm(GT[0]), "box_score": torch.tensor(0.5)})
    fp = (frame(1, None, empty), {"box": norm([1, 1, 5, 5])})  # no score -> 1.0 > 0.5
    assert run([tp, fp])[TASK]["AP50"] == pytest.approx(1 / 2)


def test_missed_frames_recall_half():
    pairs = [(frame(i, b), {"box": norm(b)}) for i, b in enumerate(GT[:2])]
    pairs += [(frame(2, GT[2]), {}), (frame(3, [0.0, 0.0, 8.0, 8.0]), {"box": None})]
    res = run(pairs)[TASK]
    # recall reaches 2/4 with precision 1: 51 of COCO's 101 recall thresholds (0, ..., 0.5)
    assert res["AP"] == pytest.approx(51 / 101) and res["AP50"] == pytest.approx(51 / 101)
    assert res["mean_iou"] == pytest.approx(0.5)  # 1, 1, 0, 0
    assert res["num_pred_boxes"] == 2.0


def test_gt_from_masks_binary_and_thresholded(tmp_path):
    # 0/255 mask with an anti-aliased rim (100 = background, 200 = foreground)
    m = np.zeros((H, W), np.uint8)
    m[10:30, 20:50] = 255
    m[9, 20:50] = 100  # <= 128: not foreground
    m[30, 20:50] = 200  # > 128: foreground -> rows 10..30
    a = _mask_file(tmp_path, "a.png", m)
    # 0/1 mask: foreground is value 1
    m01 = np.zeros((H, W), np.uint8)
    m01[40:50, 5:15] = 1
    b = _mask_file(tmp_path, "b.png", m01)
    pairs = [
        (frame(0, None, a), {"box": norm([20, 10, 30, 21])}),
        (frame(1, None, b), {"box": norm([5, 40, 10, 10])}),
        (frame(2), {"box": norm([0, 0, 10, 10])}),  # no GT at all: not scored
    ]
    res = run(pairs)[TASK]
    assert res["num_frames"] == 2.0 and res["num_gt_boxes"] == 2.0
    assert res["mean_iou"] == pytest.approx(1.0) and res["AP"] == pytest.approx(1.0)


def test_mask_of_another_size_is_scaled_to_the_frame(tmp_path):
    m = np.zeros((H // 2, W // 2), np.uint8)
    m[5:15, 10:20] = 255  # [10, 5, 10, 10] at half size -> [20, 10, 20, 20] in the frame
    a = _mask_file(tmp_path, "half.png", m)
    res = run([(frame(0, None, a), {"box": norm([20, 10, 20, 20])})])[TASK]
    assert res["mean_iou"] == pytest.approx(1.0)


def _random_case(seed, n=30):
    rng = np.random.default_rng(seed)
    pairs, gts, preds = [], [], []
    for i in range(n):
        w, h = int(rng.integers(40, 120)), int(rng.integers(40, 120))
        gt = None
        if rng.random() < 0.85:
            bw, bh = rng.uniform(4, w / 2), rng.uniform(4, h / 2)
            gt = [float(rng.uniform(0, w - bw)), float(rng.uniform(0, h - bh)), bw, bh]
        pred, out = None, {}
        if rng.random() < 0.8:
            base = gt or [w / 4, h / 4, w / 3, h / 3]
            jit = rng.normal(0, 0.15, 4) * np.array([base[2], base[3], base[2], base[3]])
            pred = [
                base[0] + jit[0],
                base[1] + jit[1],
                max(1.0, base[2] + jit[2]),
                max(1.0, base[3] + jit[3]),
            ]
            out = {"box": norm(pred, w, h), "box_score": float(rng.random())}
        vid = f"case{1 + i // 10}"
        inp = frame(i % 10, gt, None, vid, w, h)
        if gt is None:  # an empty GT mask
            inp["gt_file_name"] = "EMPTY"
        pairs.append((inp, out))
        gts.append((vid, i % 10, w, h, gt))
        preds.append((pred, out.get("box_score")))
    return pairs, gts, preds


def test_random_case_against_pycocotools_and_numpy(tmp_path):
    empty = _mask_file(tmp_path, "empty.png", np.zeros((8, 8), np.uint8))
    pairs, gts, preds = _random_case(0)
    for inp, _ in pairs:
        if inp["gt_file_name"] == "EMPTY":
            inp["gt_file_name"] = empty
    res = run(pairs)[TASK]
    # direct pycocotools: images numbered in input order, boxes as given in pixels
    images, anns, dets = [], [], []
    for k, ((_, _, w, h, gt), (pred, score)) in enumerate(zip(gts, preds), 1):
        images.append({"id": k, "width": w, "height": h})
        if gt is not None:
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": k,
                    "category_id": 1,
                    "bbox": gt,
                    "area": gt[2] * gt[3],
                    "iscrowd": 0,
                }
            )
        if pred is not None:
            dets.append({"image_id": k, "category_id": 1, "bbox": pred, "score": score})
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {
            "images": images,
            "annotations": anns,
            "categories": [{"id": 1, "name": "polyp"}],
        }
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert 0.05 < ev.stats[0] < 0.95  # a non-trivial case
    assert res["AP"] == pytest.approx(ev.stats[0], abs=1e-9)
    assert res["AP50"] == pytest.approx(ev.stats[1], abs=1e-9)
    assert res["AP75"] == pytest.approx(ev.stats[2], abs=1e-9)
    ious = [
        np_iou(p, g) if p is not None else 0.0
        for (*_, g), (p, _) in zip(gts, preds)
        if g is not None
    ]
    assert res["mean_iou"] == pytest.approx(np.mean(ious), abs=1e-9)
    assert res["num_gt_boxes"] == len(ious)


def test_no_boxes_gives_empty_result(caplog):
    pairs = [(frame(i, b), {"prob": torch.zeros(H, W)}) for i, b in enumerate(GT)]
    with caplog.at_level(logging.INFO, logger=det_mod.__name__):
        assert run(pairs) == {}
    msgs = [r for r in caplog.records if r.name == det_mod.__name__]
    assert len(msgs) == 1 and msgs[0].levelno == logging.INFO and "'box'" in msgs[0].getMessage()


def test_bad_outputs_are_errors():
    ev = DetectionEvaluator(dataset_name="ds")
    with pytest.raises(ValueError, match=r"'box' of frame 0 of video 'case1'"):
        ev.process([frame(0, GT[0])], [{"box": torch.ones(3)}])
    with pytest.raises(ValueError, match="box_score"):
        ev.process([frame(0, GT[0])], [{"box": norm(GT[0]), "box_score": float("inf")}])
    with pytest.raises(KeyError, match="'height' and 'width'"):
        ev.process(
            [{"video_id": "case1", "frame_index": 0, "gt_box": GT[0]}], [{"box": norm(GT[0])}]
        )


def test_built_from_config_and_registry(tmp_path):
    cfg = get_cfg()
    cfg.OUTPUT_DIR = str(tmp_path)
    ev = EVALUATOR_REGISTRY.get("DetectionEvaluator")(cfg, "ds")
    assert isinstance(ev, DetectionEvaluator) and ev.output_dir == str(tmp_path)
    assert DetectionEvaluator(cfg, "ds", "x").output_dir == "x"


def test_two_process_merge_equals_one_process(tmp_path, monkeypatch):
    empty = _mask_file(tmp_path, "empty.png", np.zeros((8, 8), np.uint8))
    pairs, _, _ = _random_case(3)
    for inp, _ in pairs:
        if inp["gt_file_name"] == "EMPTY":
            inp["gt_file_name"] = empty
    single = run(pairs)[TASK]
    a, b = DetectionEvaluator(dataset_name="ds"), DetectionEvaluator(dataset_name="ds")
    for i, (inp, out) in enumerate(pairs):
        (b if i % 3 == 0 else a).process([inp], [out])
    comm = det_mod.comm
    monkeypatch.setattr(comm, "get_world_size", lambda: 2)
    monkeypatch.setattr(comm, "all_gather", lambda obj: [obj, b.state()])
    monkeypatch.setattr(comm, "is_main_process", lambda: True)
    assert a.evaluate()[TASK] == pytest.approx(single)
    monkeypatch.setattr(comm, "is_main_process", lambda: False)
    assert b.evaluate() == {}


def test_sample_dataset_oracle_outputs(tiny_sample_root):
    """Test frames of the sample data carry class_id and gt_box: oracle outputs score 1."""
    root = os.path.join(tiny_sample_root, "vps-sample")
    recs = load_sun_seg(root, "TestHardDataset/Unseen", "hard")
    det, cls = DetectionEvaluator(dataset_name="hard"), ClassificationEvaluator(dataset_name="hard")
    n = 0
    for rec in recs:
        assert rec["class_id"] >= 0
        for f in VideoTestFrames(rec):
            assert f["gt_box"] is not None  # test clips always show the polyp
            out = {
                "box": norm(f["gt_box"], f["width"], f["height"]),
                "class_scores": torch.nn.functional.one_hot(torch.tensor(f["class_id"]), 6),
            }
            det.process([f], [out])
            cls.process([f], [out])
            n += 1
    d, c = det.evaluate()["hard/detection"], cls.evaluate()["hard/classification"]
    assert d["AP"] == pytest.approx(1.0) and d["mean_iou"] == pytest.approx(1.0)
    assert d["num_frames"] == n and c["num_frames"] == n and c["num_cases"] == len(recs)
    assert c["frame_accuracy"] == 1.0 and c["case_macro_f1"] == 1.0
