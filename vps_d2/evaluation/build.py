"""EVALUATOR_REGISTRY and build_evaluator: evaluation chosen by config, composable.

Every evaluator registered here is built as ``cls(cfg, dataset_name, output_dir)`` and
follows :class:`~vps_d2.evaluation.evaluator.DatasetEvaluator`. ``TEST.EVALUATORS`` lists
the evaluators of every test split; :func:`build_evaluator` runs them together on one pass
of the model (:class:`~vps_d2.evaluation.evaluator.DatasetEvaluators`).
"""

from __future__ import annotations

from vps_d2.utils.registry import Registry

__all__ = ["EVALUATOR_REGISTRY"]

EVALUATOR_REGISTRY = Registry("EVALUATOR")
EVALUATOR_REGISTRY.__doc__ = """
Registry for evaluators: ``cls(cfg, dataset_name, output_dir)`` -> DatasetEvaluator.
Per-frame inputs are the test frame dicts of :mod:`vps_d2.data`; outputs are the model's
per-frame dicts (``"prob"``, optional ``"class_scores"``, ``"box"``, ``"box_score"``).
An evaluator whose outputs are absent (a model without class scores or boxes) returns {}.
"""
