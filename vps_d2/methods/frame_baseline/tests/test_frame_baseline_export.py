"""FrameBaseline's exported step (no state): 40 frames in ONNX Runtime equal eager, at a
frame size other than INPUT.SIZE_TEST (the graph resizes, H and W dynamic)."""

import os

from export_check import compare_onnx_with_eager

CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "frame_baseline_sample.yaml")


def test_frame_baseline_onnx_streams_like_eager(tmp_path):
    res = compare_onnx_with_eager(CONFIG, tmp_path, size=(72, 90))
    assert res["meta"]["states"] == [] and res["meta"]["frames_per_step"] == 1
    assert res["max_diff"]["prob"] <= 1e-4
    probs = [o["prob"] for o in res["onnx"]]
    assert probs[0].shape == (72, 90) and 0 <= float(probs[0].min()) <= 1


def test_frame_baseline_onnx_other_size(tmp_path):
    """One export serves several frame sizes (dynamic height and width)."""
    res = compare_onnx_with_eager(CONFIG, tmp_path, num_frames=3, size=(130, 170))
    assert res["max_diff"]["prob"] <= 1e-4
