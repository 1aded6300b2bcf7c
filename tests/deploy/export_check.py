"""Shared helper of the export tests: a method's exported ONNX step streamed in ONNX Runtime
against the eager model's own ``stream`` (imported by each method's tests/test_*_export.py)."""

from __future__ import annotations

import argparse

import numpy as np
import torch

from vps_d2.deploy import OnnxRuntimePredictor
from vps_d2.engine.defaults import setup_cfg
from vps_d2.modeling import build_model
from vps_d2.modeling.export import export_streaming_step


def synthetic_video(num_frames: int, height: int, width: int, seed: int = 0) -> list[dict]:
    """Test frames (uint8 (3, H, W), video_id, frame_index): a bright disk moving over noise."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    frames = []
    for i in range(num_frames):
        img = torch.randint(40, 140, (3, height, width), generator=g).float()
        cx, cy = width * (0.2 + 0.6 * i / max(1, num_frames - 1)), height * 0.5
        disk = ((xx - cx) ** 2 + (yy - cy) ** 2) < (min(height, width) / 5) ** 2
        img[:, disk] = 230.0
        frames.append({"image": img.to(torch.uint8), "video_id": "v0", "frame_index": i})
    return frames


def build_random_model(config_file: str, opts=()):
    """(cfg, eval-mode model at random init, seed 0)."""
    cfg = setup_cfg(argparse.Namespace(config_file=config_file, opts=list(opts), plugin=[]))
    torch.manual_seed(0)
    return cfg, build_model(cfg).eval()


def compare_onnx_with_eager(
    config_file: str,
    tmp_path,
    opts=(),
    num_frames: int = 40,
    size: tuple[int, int] = (80, 100),
    model=None,
) -> dict:
    """Export, stream ``num_frames`` frames through eager ``model.stream`` and ONNX Runtime.

    Returns {"eager": [outputs], "onnx": [outputs], "max_diff": {key: max |diff| over frames},
    "meta": the export's metadata}.
    """
    cfg, built = build_random_model(config_file, opts)
    model = model or built
    path = str(tmp_path / "model.onnx")
    meta = export_streaming_step(model, path, "onnx", input_format=cfg.INPUT.FORMAT)
    frames = synthetic_video(num_frames, *size)
    eager = [{k: v for k, v in o.items()} for o in model.stream(frames)]
    onnx_out = list(OnnxRuntimePredictor(path, num_threads=1)(frames))
    assert len(eager) == len(onnx_out) == num_frames
    diffs: dict[str, float] = {}
    for e, o in zip(eager, onnx_out):
        assert o["prob"].shape == e["prob"].shape == size
        for key, v in e.items():
            d = float(np.abs(o[key].numpy() - v.detach().float().cpu().numpy()).max())
            diffs[key] = max(diffs.get(key, 0.0), d)
    return {"eager": eager, "onnx": onnx_out, "max_diff": diffs, "meta": meta, "model": model}


def fresh_state_probs(model, frames: list[dict]) -> list[torch.Tensor]:
    """Each frame run as the first frame of its own video (no state carried)."""
    return [next(iter(model.stream([f])))["prob"] for f in frames]
