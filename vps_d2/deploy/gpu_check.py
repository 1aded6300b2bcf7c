"""The ONNX Runtime row of the GPU check (:mod:`vps_d2.engine.gpu_check`, ``vps-gpu-check``).

The setting's model (random init, as every speed row) is exported to a temporary ONNX file
(:func:`~vps_d2.modeling.export.export_streaming_step`) and synthetic frames are streamed
through ONNX Runtime on the check's device: ``CUDAExecutionProvider`` on a GPU (the
``onnxruntime-gpu`` package), the CPU provider with ``--device cpu``. Importing
:mod:`vps_d2.deploy` registers :func:`measure_onnxruntime` in the check's
``RUNTIME_RUNNERS``; the engine itself imports no runtime.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import time

import torch

from vps_d2.engine.gpu_check import RUNTIME_RUNNERS, stream_fps
from vps_d2.modeling import build_model
from vps_d2.modeling.export import STREAMING_STEP_REGISTRY, export_streaming_step
from vps_d2.utils.benchmark import synthetic_frames

from .ort_predictor import OnnxRuntimePredictor

__all__ = ["measure_onnxruntime", "onnxruntime_unavailable"]


def onnxruntime_unavailable() -> str:
    """Why the ONNX Runtime row cannot run ("" when it can)."""
    missing = [m for m in ("onnx", "onnxscript", "onnxruntime") if not importlib.util.find_spec(m)]
    if missing:
        return f"not available ({', '.join(missing)} not installed: pip install 'vps_d2[deploy]')"
    return ""


def measure_onnxruntime(plan, setting, variant, cfg) -> dict:
    """Export ``cfg``'s model, stream ``plan.infer_warmup + plan.infer_frames`` synthetic
    frames at INPUT.SIZE_TEST through ONNX Runtime; the row's values (fps, ms per frame, the
    export's seconds) or why it was skipped."""
    import onnxruntime as ort

    provider = "CUDAExecutionProvider" if plan.device == "cuda" else "CPUExecutionProvider"
    if provider not in ort.get_available_providers():
        why = f"onnxruntime {ort.__version__} has no {provider} (pip install onnxruntime-gpu)"
        return {"status": "skipped", "note": why}
    arch = cfg.MODEL.META_ARCHITECTURE
    if arch not in STREAMING_STEP_REGISTRY:
        return {"status": "skipped", "note": f"{arch} has no exportable streaming step"}
    cpu_cfg = cfg.clone()
    cpu_cfg.defrost()
    cpu_cfg.MODEL.DEVICE = "cpu"  # the graph is exported from the CPU model
    cpu_cfg.freeze()
    torch.manual_seed(0)
    model = build_model(cpu_cfg).eval()
    h, w = (int(s) for s in cfg.INPUT.SIZE_TEST)
    with tempfile.TemporaryDirectory(prefix="vps_d2_gpu_check_") as folder:
        path = os.path.join(folder, "step.onnx")
        t0 = time.perf_counter()
        export_streaming_step(model, path, "onnx", input_format=cfg.INPUT.FORMAT)
        export_s = time.perf_counter() - t0
        del model
        streamer = OnnxRuntimePredictor(path, providers=[provider]).model
        n = plan.infer_warmup + plan.infer_frames
        frames = list(synthetic_frames(n, h, w))
        t0 = time.perf_counter()
        fps, ms, timed = stream_fps(streamer, frames, plan.infer_warmup, torch.device("cpu"))
    values = {
        "fps": fps,
        "ms_per_frame": ms,
        "timed_frames": timed,
        "size": [h, w],
        "export_s": export_s,
        "wall_s": time.perf_counter() - t0,
    }
    return {"status": "ok", "note": f"{provider}, opset 18", "values": values}


RUNTIME_RUNNERS["onnxruntime"] = (onnxruntime_unavailable, measure_onnxruntime)
