"""Evaluation: the SUN-SEG toolbox metrics (fast, equal to the toolbox) and evaluators.

- :mod:`.build`: EVALUATOR_REGISTRY; :func:`build_evaluator` composes the evaluators of
  ``TEST.EVALUATORS`` into one, run on a single pass of the model.
- :mod:`.metrics`: per-frame metrics (``frame_metrics`` computes all of them at once).
- :mod:`.protocol`: reading frames, per-case accumulation, per-split results, output.
- :mod:`.vps_evaluation`: ``VPSEvaluator``, the DatasetEvaluator of the protocol.
- :mod:`.classification`, :mod:`.detection`: class (six SUN-SEG classes, per frame and per
  case) and box (COCO AP through pycocotools, mean IoU) evaluators.
- :mod:`.worst_cases`: the K worst frames of an evaluation (``TEST.VPS.DUMP_WORST_CASES``),
  kept and written as data (drawn by :mod:`vps_d2.visualization`).
- :mod:`.reference`: the slow per-threshold reference used by tests and the benchmark.
"""

from __future__ import annotations

# stream_video is defined beside the meta-architecture protocol; re-exported for users.
from vps_d2.modeling.meta_arch.streaming import stream_video

from .build import EVALUATOR_REGISTRY, build_evaluator
from .classification import ClassificationEvaluator
from .detection import DetectionEvaluator
from .evaluator import (
    DatasetEvaluator,
    DatasetEvaluators,
    inference_on_dataset,
    print_csv_format,
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
from .vps_evaluation import VPSEvaluator, prediction_subdir, worst_cases_folder
from .worst_cases import WORST_CASES_INDEX, WorstCaseKeeper, load_worst_cases, write_worst_cases

__all__ = [
    "CURVE_KEYS",
    "EVALUATOR_REGISTRY",
    "METRIC_KEYS",
    "MEDICAL_THRESHOLDS",
    "SCALAR_KEYS",
    "SUN_SEG_TEST_SPLITS",
    "CaseAccumulator",
    "ClassificationEvaluator",
    "DatasetEvaluator",
    "DatasetEvaluators",
    "DetectionEvaluator",
    "VPSEvaluator",
    "WORST_CASES_INDEX",
    "WorstCaseKeeper",
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
    "load_worst_cases",
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
    "worst_cases_folder",
    "write_worst_cases",
]
