"""Deployment runtimes: stream a video through an exported streaming step
(:mod:`vps_d2.modeling.export`, ``tools/export.py``) outside PyTorch's eager mode."""

from .ort_predictor import ORT_PROVIDERS, OnnxRuntimePredictor, onnxruntime_session

__all__ = ["ORT_PROVIDERS", "OnnxRuntimePredictor", "onnxruntime_session"]
