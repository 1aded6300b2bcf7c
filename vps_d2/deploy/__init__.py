"""Deployment runtimes: stream a video through an exported streaming step
(:mod:`vps_d2.modeling.export`, ``tools/export.py``) outside PyTorch's eager mode.
Importing it registers the ONNX Runtime row of the GPU check (:mod:`vps_d2.deploy.gpu_check`).
"""

from .gpu_check import measure_onnxruntime
from .ort_predictor import ORT_PROVIDERS, OnnxRuntimePredictor, onnxruntime_session

__all__ = ["ORT_PROVIDERS", "OnnxRuntimePredictor", "measure_onnxruntime", "onnxruntime_session"]
