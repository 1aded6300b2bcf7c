"""PGN+AEN's exported clip step (the clip memory as fixed-size state with a window count):
40 frames = 10 clips of 4 in ONNX Runtime equal the eager model's stream at every frame."""

import os

import pytest
from export_check import build_random_model, compare_onnx_with_eager, synthetic_video

from vps_d2.modeling.export import ExportError, build_streaming_step

CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "pgn_aen_sample.yaml")
# Clips of 4 (40 frames: no shorter last clip, which the step pads), a memory of 2 windows
# (the graph holds one PGN + AEN per window count 0..2: the export takes about a minute).
OPTS = ["MODEL.PGN_AEN.CLIP_LENGTH", "4", "MODEL.PGN_AEN.MEMORY_LENGTH", "2"]
OPTS += ["INPUT.CLIP.LENGTH", "12"]


@pytest.mark.slow
def test_pgn_aen_onnx_streams_like_eager(tmp_path):
    res = compare_onnx_with_eager(CONFIG, tmp_path, opts=OPTS)
    meta = res["meta"]
    assert meta["frames_per_step"] == 4
    shapes = {s["name"]: s["shape"] for s in meta["states"]}
    assert shapes["past_fused"][0] == 8 and shapes["csa_states"][:2] == [2, 4]
    assert shapes["count"] == [1]
    assert res["max_diff"]["prob"] <= 1e-4, res["max_diff"]
    # the memory matters: the second clip run as a video of its own gives other maps
    frames = synthetic_video(8, 80, 100)
    fresh = [o["prob"] for o in res["model"].stream(frames[4:8])]
    streamed = [o["prob"] for o in res["onnx"][4:8]]
    assert max((a - b).abs().max().item() for a, b in zip(fresh, streamed)) > 3e-4


def test_sliding_mode_is_refused():
    _, model = build_random_model(CONFIG, ["MODEL.PGN_AEN.STREAM_MODE", "sliding"])
    with pytest.raises(ExportError, match="STREAM_MODE 'sliding'"):
        build_streaming_step(model)
