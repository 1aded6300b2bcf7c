"""DatasetEvaluator protocol and the inference loop (Detectron2's, on video batches).

The test loader yields batches of consecutive frames of one video; ``outputs =
model(batch)`` gives one output per frame (the model keeps its stream state per video, see
:mod:`vps_d2.modeling.meta_arch.base`); evaluators see ``process(inputs, outputs)`` with
the test frame dicts (see :mod:`vps_d2.data`) and the per-frame outputs (``"prob"``: float
(H, W) at the frame's original size, optional ``"class_scores"``, ``"box"``). This is
exactly Detectron2's ``inference_on_dataset`` protocol, so Detectron2's own loop gives the
same numbers. Memory stays bounded by what an evaluator keeps (per-case sums), never by
the length of a video.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections import OrderedDict
from collections.abc import Iterable

import torch

from vps_d2.utils import comm

from .protocol import format_value

__all__ = [
    "DatasetEvaluator",
    "DatasetEvaluators",
    "inference_on_dataset",
    "print_csv_format",
]

logger = logging.getLogger(__name__)


class DatasetEvaluator:
    """Base class: ``reset()``, ``process(inputs, outputs)``, ``evaluate()``."""

    def reset(self) -> None:
        """Called before a new round of evaluation."""

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        """Accumulate one batch of frames (inputs[i] pairs with outputs[i])."""

    def evaluate(self) -> OrderedDict[str, dict[str, float]] | dict:
        """Return ``{task: {metric: value}}`` on the main process (may be {} elsewhere)."""
        return {}


class DatasetEvaluators(DatasetEvaluator):
    """Run several evaluators as one."""

    def __init__(self, evaluators: list[DatasetEvaluator]) -> None:
        super().__init__()
        self._evaluators = evaluators

    def reset(self) -> None:
        for e in self._evaluators:
            e.reset()

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        for e in self._evaluators:
            e.process(inputs, outputs)

    def evaluate(self) -> OrderedDict:
        results: OrderedDict = OrderedDict()
        for e in self._evaluators:
            for k, v in (e.evaluate() or {}).items():
                if k in results:
                    raise KeyError(f"Two evaluators returned the task {k!r}")
                results[k] = v
        return results


def inference_on_dataset(model, data_loader: Iterable, evaluator: DatasetEvaluator | None):
    """Run ``model`` on every batch of ``data_loader`` and evaluate (Detectron2's loop).

    ``data_loader`` yields lists of consecutive test frame dicts of one video
    (:func:`vps_d2.data.build_test_loader`); ``model(batch)`` returns one output dict per
    frame. Returns ``evaluator.evaluate()``.
    """
    evaluator = evaluator or DatasetEvaluators([])
    evaluator.reset()
    was_training = model.training
    model.eval()
    n_frames, start = 0, time.perf_counter()
    try:
        with torch.no_grad():
            for inputs in data_loader:
                outputs = model(inputs)
                if len(outputs) != len(inputs):
                    raise RuntimeError(
                        f"{type(model).__name__} returned {len(outputs)} outputs "
                        f"for {len(inputs)} frames"
                    )
                evaluator.process(inputs, outputs)
                n_frames += len(inputs)
    finally:
        reset = getattr(model, "reset", None)
        if callable(reset):
            reset()  # free the last video's stream state
        model.train(was_training)
    total = time.perf_counter() - start
    logger.info(
        "Inference done on %d frames in %s (%.4f s/frame on this process)",
        n_frames,
        datetime.timedelta(seconds=int(total)),
        total / max(n_frames, 1),
    )
    comm.synchronize()
    results = evaluator.evaluate()
    return results if results is not None else {}


def print_csv_format(results: dict) -> None:
    """Log ``{task: {metric: value}}`` as Detectron2's copy-paste lines."""
    for task, res in results.items():
        if not isinstance(res, dict):
            continue
        logger.info("copypaste: Task: %s", task)
        logger.info("copypaste: %s", ",".join(res.keys()))
        logger.info("copypaste: %s", ",".join(format_value(k, v, 4) for k, v in res.items()))
