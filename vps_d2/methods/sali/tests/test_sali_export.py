"""SALI's exported streaming step (previous frame + memory banks as fixed-size state with
validity masks, the plain-op deformable conv): 40 frames in ONNX Runtime equal the eager
model's stream at every frame, memory eviction included."""

import os

import pytest
import torch
from export_check import (
    build_random_model,
    compare_onnx_with_eager,
    fresh_state_probs,
    synthetic_video,
)
from torchvision.ops import deform_conv2d as tv_deform_conv2d

from vps_d2.modeling.export import ExportError, export_streaming_step
from vps_d2.modeling.layers import deform_conv2d_torch

CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "sali_sample.yaml")


@pytest.mark.slow
@pytest.mark.parametrize(
    "opts",
    [
        # a small memory written every 2 frames: 20 writes into 3 slots, relevance eviction
        ["MODEL.SALI.MEMORY.CAPACITY", "3", "MODEL.SALI.MEMORY.WRITE_EVERY", "2"],
        # FIFO eviction, the final map as the write mask, zeros for the empty read
        ["MODEL.SALI.MEMORY.CAPACITY", "2", "MODEL.SALI.MEMORY.WRITE_EVERY", "3"]
        + ["MODEL.SALI.MEMORY.EVICTION", "fifo", "MODEL.SALI.LIM.WRITE_MASK", "final"]
        + ["MODEL.SALI.LIM.EMPTY_READ", "zeros"],
    ],
    ids=["relevance", "fifo"],
)
def test_sali_onnx_streams_like_eager(tmp_path, opts):
    res = compare_onnx_with_eager(CONFIG, tmp_path, opts=opts)
    names = [s["name"] for s in res["meta"]["states"]]
    assert names[:4] == ["prev0", "prev1", "prev2", "prev_valid"] and names[-1] == "t"
    slots = int(opts[1])
    assert res["meta"]["states"][5]["shape"][0] == slots  # mem_keys0: one frame per slot
    assert res["max_diff"]["prob"] <= 1e-4, res["max_diff"]
    frames = synthetic_video(8, 80, 100)
    fresh = fresh_state_probs(res["model"], frames)
    streamed = [o["prob"] for o in res["onnx"][:8]]
    assert (fresh[0] - streamed[0]).abs().max() <= 1e-4
    # (random init: the memory and the neighbour move the maps by ~1e-3, over the tolerance)
    assert max((a - b).abs().max().item() for a, b in zip(fresh[1:], streamed[1:])) > 3e-4


def test_usage_eviction_is_refused(tmp_path):
    _, model = build_random_model(CONFIG, ["MODEL.SALI.MEMORY.EVICTION", "usage"])
    with pytest.raises(ExportError, match="EVICTION 'usage'"):
        export_streaming_step(model, str(tmp_path / "sali.onnx"))
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize(
    "b, c, h, w, groups, cout, stride, pad, dil",
    [(2, 16, 7, 9, 8, 5, 1, 1, 1), (1, 8, 5, 6, 2, 4, 1, 2, 2), (1, 6, 8, 8, 3, 4, 2, 1, 1)],
)
def test_plain_deform_conv_equals_torchvision(b, c, h, w, groups, cout, stride, pad, dil):
    g = torch.Generator().manual_seed(b * 100 + c)
    x = torch.randn(b, c, h, w, generator=g)
    weight, bias = torch.randn(cout, c, 3, 3, generator=g), torch.randn(cout, generator=g)
    ho = (h + 2 * pad - dil * 2 - 1) // stride + 1
    wo = (w + 2 * pad - dil * 2 - 1) // stride + 1
    # offsets of a few pixels: many samples fall between pixels and some outside the image
    offset = torch.randn(b, 2 * groups * 9, ho, wo, generator=g) * 3
    mask = torch.rand(b, groups * 9, ho, wo, generator=g)
    ref = tv_deform_conv2d(
        x, offset, weight, bias, stride=stride, padding=pad, dilation=dil, mask=mask
    )
    got = deform_conv2d_torch(x, offset, weight, bias, stride, pad, dil, mask)
    assert got.shape == ref.shape == (b, cout, ho, wo)
    assert (got - ref).abs().max() <= 1e-5
    plain = torch.nn.functional.conv2d(x, weight, bias, stride, pad, dil)
    assert (ref - plain).abs().max() > 1  # the offsets matter: not a plain convolution
