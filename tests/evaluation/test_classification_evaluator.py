"""ClassificationEvaluator against hand-computed values and an independent NumPy reference."""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest
import torch

from vps_d2.config import get_cfg
from vps_d2.data import CLASS_NAMES
from vps_d2.evaluation import classification as cls_mod
from vps_d2.evaluation.build import EVALUATOR_REGISTRY
from vps_d2.evaluation.classification import ClassificationEvaluator

K = len(CLASS_NAMES)
TASK = "ds/classification"


def onehot(k, high=0.7):
    """Scores whose argmax is k: ``high`` on k, the rest spread evenly."""
    s = np.full(K, (1.0 - high) / (K - 1))
    s[k] = high
    return s


def run(frames, evaluator=None):
    """frames: list of (video_id, class_id, scores or None). Returns evaluate()'s dict."""
    ev = evaluator or ClassificationEvaluator(dataset_name="ds")
    ev.reset()
    for i, (vid, gt, scores) in enumerate(frames):
        out = {"prob": torch.zeros(2, 2)}
        if scores is not None:
            out["class_scores"] = torch.as_tensor(scores, dtype=torch.float32)
        ev.process([{"video_id": vid, "frame_index": i, "class_id": gt}], [out])
    return ev.evaluate()


# ---- independent reference (written from the definitions, per class, with sets) ----------
def ref_metrics(y_true, y_pred):
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    cm = np.zeros((K, K), np.int64)
    for t, p in zip(y_true, y_pred):
        cm[t, p] += 1
    acc = float(np.mean(y_true == y_pred))
    recalls = [np.mean(y_pred[y_true == c] == c) for c in sorted(set(y_true.tolist()))]
    f1s = []
    for c in sorted(set(y_true.tolist()) | set(y_pred.tolist())):
        tp = np.sum((y_true == c) & (y_pred == c))
        fp = np.sum((y_true != c) & (y_pred == c))
        fn = np.sum((y_true == c) & (y_pred != c))
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1s.append(2 * prec * rec / (prec + rec) if prec + rec else 0.0)
    return cm, acc, float(np.mean(recalls)), float(np.mean(f1s))


def test_hand_computed_frame_metrics():
    # one frame per case: GT [0,0,0,1,1,2], predictions [0,0,1,1,2,2]
    gt, pred = [0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2]
    res = run([(f"case{i}", g, onehot(p)) for i, (g, p) in enumerate(zip(gt, pred))])[TASK]
    assert res["frame_accuracy"] == pytest.approx(4 / 6)
    # recalls 2/3, 1/2, 1
    assert res["frame_balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    # F1: class 0 P=1 R=2/3 -> 0.8; class 1 P=R=1/2 -> 0.5; class 2 P=1/2 R=1 -> 2/3
    assert res["frame_macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert res["num_frames"] == 6.0 and res["num_cases"] == 6.0
    # one frame per case: the case metrics are the frame metrics
    for m in ("accuracy", "balanced_accuracy", "macro_f1"):
        assert res[f"case_{m}"] == pytest.approx(res[f"frame_{m}"])
    assert all(type(v) is float for v in res.values())


def test_f1_counts_classes_predicted_but_absent_from_gt():
    res = run([("case1", 0, onehot(0)), ("case2", 0, onehot(3))])[TASK]
    assert res["frame_accuracy"] == pytest.approx(0.5)
    assert res["frame_balanced_accuracy"] == pytest.approx(0.5)  # only class 0 is in the GT
    assert res["frame_macro_f1"] == pytest.approx((2 / 3 + 0.0) / 2)  # classes {0, 3}


def test_case_prediction_is_the_argmax_of_the_mean_scores():
    a = np.array([0.4, 0.35, 0.1, 0.05, 0.05, 0.05])
    b = np.array([0.0, 0.9, 0.1, 0.0, 0.0, 0.0])
    # frame argmaxes 0, 0, 1 (majority 0); mean (0.8, 1.6, ...) / 3 -> class 1
    frames = [("case7", 1, a), ("case7", 1, a), ("case7", 1, b), ("case8", 4, onehot(4))]
    res = run(frames)[TASK]
    assert res["frame_accuracy"] == pytest.approx(2 / 4)
    assert res["case_accuracy"] == pytest.approx(1.0)
    assert res["num_cases"] == 2.0


def test_unknown_class_frames_are_not_scored():
    frames = [("case1", 2, onehot(2)), ("case2", -1, onehot(0)), ("case2", -1, onehot(1))]
    res = run(frames)[TASK]
    assert res["num_frames"] == 1.0 and res["num_cases"] == 1.0
    assert res["frame_accuracy"] == 1.0


def test_random_against_numpy_reference(tmp_path):
    rng = np.random.default_rng(0)
    frames, case_gt, case_scores = [], {}, {}
    for c in range(25):
        vid, gt = f"case{c + 1}_{c % 3 + 1}", int(rng.integers(0, K))
        if c % 7 == 0:
            gt = -1
        for _ in range(int(rng.integers(1, 9))):
            s = rng.dirichlet(np.ones(K))
            s[gt if gt >= 0 else 0] += rng.uniform(0, 0.3)  # better than chance
            s /= s.sum()
            frames.append((vid, gt, s))
            if gt >= 0:
                case_gt[vid] = gt
                case_scores.setdefault(vid, []).append(s)
    ev = ClassificationEvaluator(dataset_name="ds", output_dir=str(tmp_path))
    res = run(frames, ev)[TASK]
    labelled = [(g, int(np.argmax(s))) for _, g, s in frames if g >= 0]
    cm, acc, bacc, f1 = ref_metrics(*zip(*labelled))
    assert res["frame_accuracy"] == pytest.approx(acc)
    assert res["frame_balanced_accuracy"] == pytest.approx(bacc)
    assert res["frame_macro_f1"] == pytest.approx(f1)
    assert res["num_frames"] == len(labelled)
    vids = sorted(case_gt)
    case_pred = [int(np.argmax(np.mean(case_scores[v], axis=0))) for v in vids]
    ccm, cacc, cbacc, cf1 = ref_metrics([case_gt[v] for v in vids], case_pred)
    assert res["case_accuracy"] == pytest.approx(cacc)
    assert res["case_balanced_accuracy"] == pytest.approx(cbacc)
    assert res["case_macro_f1"] == pytest.approx(cf1)
    assert res["num_cases"] == len(vids)
    with open(os.path.join(tmp_path, "classification", "ds.json")) as f:
        saved = json.load(f)
    assert saved["class_names"] == list(CLASS_NAMES)
    assert np.array_equal(saved["frame"]["confusion_matrix"], cm)
    assert np.array_equal(saved["case"]["confusion_matrix"], ccm)
    assert saved["metrics"] == pytest.approx(res)
    assert {v: saved["case"]["cases"][v]["pred"] for v in vids} == {
        v: CLASS_NAMES[p] for v, p in zip(vids, case_pred)
    }
    assert [n for n in os.listdir(tmp_path / "classification")] == ["ds.json"]  # no temp file


def test_no_class_scores_gives_empty_result(caplog):
    with caplog.at_level(logging.INFO, logger=cls_mod.__name__):
        res = run([("case1", 0, None), ("case2", 3, None)])
    assert res == {}
    msgs = [r for r in caplog.records if r.name == cls_mod.__name__]
    assert len(msgs) == 1 and msgs[0].levelno == logging.INFO
    assert "class_scores" in msgs[0].getMessage()


def test_built_from_config_and_registry(tmp_path):
    cfg = get_cfg()
    cfg.OUTPUT_DIR = str(tmp_path / "out")
    ev = EVALUATOR_REGISTRY.get("ClassificationEvaluator")(cfg, "ds")
    assert isinstance(ev, ClassificationEvaluator) and ev.output_dir == cfg.OUTPUT_DIR
    ev = ClassificationEvaluator(cfg, "ds", str(tmp_path / "other"))
    run([("case1", 5, onehot(5))], ev)
    assert os.path.isfile(tmp_path / "other" / "classification" / "ds.json")


def test_bad_inputs_are_errors():
    ev = ClassificationEvaluator(dataset_name="ds")
    inp = {"video_id": "case1", "frame_index": 3, "class_id": 0}
    with pytest.raises(ValueError, match=r"class_scores.*frame 3.*case1.*shape \(5,\)"):
        ev.process([inp], [{"class_scores": torch.ones(5)}])
    with pytest.raises(ValueError, match="finite"):
        ev.process([inp], [{"class_scores": torch.full((6,), float("nan"))}])
    with pytest.raises(ValueError, match="class_id 6"):
        ev.process([dict(inp, class_id=6)], [{"class_scores": torch.ones(6) / 6}])
    ev.process([inp], [{"class_scores": torch.ones(6) / 6}])
    with pytest.raises(ValueError, match="different class_id"):
        ev.process([dict(inp, class_id=2)], [{"class_scores": torch.ones(6) / 6}])


def test_two_process_merge_equals_one_process(monkeypatch):
    rng = np.random.default_rng(1)
    frames = []
    for c in range(8):
        gt = c % K
        frames += [(f"case{c + 1}", gt, rng.dirichlet(np.ones(K))) for _ in range(5)]
    single = run(frames)[TASK]
    # shard by frame (so that videos are split across "processes" too)
    a = ClassificationEvaluator(dataset_name="ds")
    b = ClassificationEvaluator(dataset_name="ds")
    for i, (vid, gt, s) in enumerate(frames):
        ev = a if i % 2 == 0 else b
        ev.process(
            [{"video_id": vid, "frame_index": i, "class_id": gt}],
            [{"class_scores": torch.as_tensor(s)}],
        )
    comm = cls_mod.comm
    monkeypatch.setattr(comm, "get_world_size", lambda: 2)
    monkeypatch.setattr(comm, "all_gather", lambda obj: [obj, b.state()])
    monkeypatch.setattr(comm, "is_main_process", lambda: True)
    merged = a.evaluate()[TASK]
    assert merged == pytest.approx(single)
    monkeypatch.setattr(comm, "is_main_process", lambda: False)
    assert b.evaluate() == {}
