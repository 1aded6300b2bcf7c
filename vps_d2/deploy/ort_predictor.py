"""ONNX Runtime backend: :class:`OnnxRuntimePredictor`, VideoPredictor's API on an exported
ONNX file.

``OnnxRuntimePredictor("model.onnx")`` reads the step's description stored in the file
(:func:`~vps_d2.modeling.export.read_metadata`), opens an ONNX Runtime session and streams
frames through it with the state held as numpy arrays between calls
(:class:`~vps_d2.modeling.export.StepStreamer`). ``run(frames)`` yields ``(frame, output)``
pairs and ``__call__`` the outputs, exactly as :class:`~vps_d2.engine.VideoPredictor`
(``"prob"`` float (H, W) at the frame's image size, the model's optional outputs,
``"frame_index"``, ``"latency_ms"``; :attr:`latency` keeps the statistics). Needs the
``deploy`` extra (``pip install vps_d2[deploy]``: onnx, onnxruntime).
"""

from __future__ import annotations

import logging
import os

from vps_d2.engine.predictor import LatencyStats, VideoPredictor
from vps_d2.modeling.export import StepStreamer, read_metadata

__all__ = ["ORT_PROVIDERS", "OnnxRuntimePredictor", "onnxruntime_session"]

logger = logging.getLogger(__name__)

#: Execution providers tried in order (those the installed onnxruntime has).
ORT_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")


def onnxruntime_session(path: str, num_threads: int = 0, providers=None):
    """An ``onnxruntime.InferenceSession`` of ``path`` (``num_threads`` 0: ORT's default,
    all cores; full graph optimisation)."""
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise RuntimeError(
            "onnxruntime is not installed: pip install 'vps_d2[deploy]' (onnx, onnxruntime)"
        ) from e
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--model-file not found: {path!r}")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    if num_threads > 0:
        opts.intra_op_num_threads = int(num_threads)
        opts.inter_op_num_threads = 1
    available = set(ort.get_available_providers())
    chosen = [p for p in (providers or ORT_PROVIDERS) if p in available]
    try:
        return ort.InferenceSession(path, sess_options=opts, providers=chosen)
    except Exception as e:  # onnxruntime raises its own exception types
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path}: ONNX Runtime cannot load it ({first[:300]})") from e


class _SessionStreamer(StepStreamer):
    """The StepStreamer on a session, with the two methods VideoPredictor calls on a model."""

    def eval(self) -> _SessionStreamer:
        return self


class OnnxRuntimePredictor(VideoPredictor):
    """VideoPredictor's API on an exported ONNX file (see the module docstring).

    Args:
        model_file: a file written by ``tools/export.py --format onnx``.
        num_threads: ONNX Runtime intra-op threads (0: its default).
        input_format: channel order of the frames given (default: the exported INPUT.FORMAT).
        providers: ONNX Runtime execution providers tried in order (default
            :data:`ORT_PROVIDERS`, those installed).
    """

    def __init__(
        self, model_file: str, *, num_threads: int = 0, input_format: str = "", providers=None
    ) -> None:
        meta = read_metadata(model_file)
        if meta.get("format") != "onnx":
            raise ValueError(
                f"{model_file}: a {meta.get('format')!r} export, not ONNX (tools/export.py "
                "--format onnx)"
            )
        self.session = onnxruntime_session(model_file, num_threads, providers)
        names = [o.name for o in self.session.get_outputs()]

        def run(inputs: dict) -> list:
            return self.session.run(names, inputs)

        self.meta = meta
        self.model = _SessionStreamer(run, meta)
        self.input_format = input_format or meta.get("input_format", "RGB")
        if self.input_format != meta.get("input_format", self.input_format):
            raise ValueError(
                f"input_format {self.input_format!r} but {model_file} was exported for "
                f"{meta.get('input_format')!r} frames"
            )
        self.to_cpu = True
        self.latency = LatencyStats()
        logger.info(
            "ONNX Runtime: %s (%s), providers %s",
            model_file,
            meta["meta_architecture"],
            self.session.get_providers(),
        )
