"""Evaluation: the SUN-SEG toolbox metrics (fast, equal to the toolbox) and evaluators.

- :mod:`.metrics`: per-frame metrics (``frame_metrics`` computes all of them at once).
- :mod:`.protocol`: reading frames, per-case accumulation, per-split results, output.
- :mod:`.vps_evaluation`: ``VPSEvaluator``, the DatasetEvaluator of the protocol.
- :mod:`.reference`: the slow per-threshold reference used by tests and the benchmark.
"""

from __future__ import annotations

import logging

from .evaluator import (
    DatasetEvaluator,
    DatasetEvaluators,
    inference_on_dataset,
    print_csv_format,
    stream_video,
)
from .metrics import (
    CURVE_KEYS,
    MEDICAL_THRESHOLDS,
    SCALAR_KEYS,
    e_measure,
    f_measure,
    frame_metrics,
    mae,
    medical_curves,
    normalization_lut,
    quantize_probability,
    s_measure,
    weighted_f_measure,
)
from .protocol import (
    METRIC_KEYS,
    SUN_SEG_TEST_SPLITS,
    CaseAccumulator,
    aggregate_cases,
    average_cases,
    case_metrics,
    evaluate_case,
    format_results_table,
    format_vps_results,
    list_gt_cases,
    load_frame,
    match_prediction,
    read_gray,
    read_gt,
    summarize,
    toolbox_frames,
)
from .vps_evaluation import VPSEvaluator, prediction_subdir

__all__ = [
    "CURVE_KEYS",
    "METRIC_KEYS",
    "MEDICAL_THRESHOLDS",
    "SCALAR_KEYS",
    "SUN_SEG_TEST_SPLITS",
    "CaseAccumulator",
    "DatasetEvaluator",
    "DatasetEvaluators",
    "VPSEvaluator",
    "aggregate_cases",
    "average_cases",
    "build_evaluator",
    "case_metrics",
    "e_measure",
    "evaluate_case",
    "f_measure",
    "format_results_table",
    "format_vps_results",
    "frame_metrics",
    "inference_on_dataset",
    "list_gt_cases",
    "load_frame",
    "mae",
    "match_prediction",
    "medical_curves",
    "normalization_lut",
    "prediction_subdir",
    "print_csv_format",
    "quantize_probability",
    "read_gray",
    "read_gt",
    "s_measure",
    "stream_video",
    "summarize",
    "toolbox_frames",
    "weighted_f_measure",
]

logger = logging.getLogger(__name__)


def build_evaluator(cfg, dataset_name: str, output_dir: str | None = None) -> DatasetEvaluator:
    """The evaluator of ``dataset_name``: a :class:`VPSEvaluator` (SUN-SEG toolbox protocol).

    Uses cfg.TEST.VPS.SAVE_PREDICTIONS and cfg.TEST.VPS.MODEL_NAME; ``output_dir``
    defaults to cfg.OUTPUT_DIR (predictions go to ``<output_dir>/predictions/...``).
    """
    return VPSEvaluator(cfg, dataset_name, output_dir)
