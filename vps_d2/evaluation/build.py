"""EVALUATOR_REGISTRY and build_evaluator: evaluation chosen by config, composable.

Every evaluator registered here is built as ``cls(cfg, dataset_name, output_dir)`` and
follows :class:`~vps_d2.evaluation.evaluator.DatasetEvaluator`. ``TEST.EVALUATORS`` lists
the evaluators of every test split; :func:`build_evaluator` runs them together on one pass
of the model (:class:`~vps_d2.evaluation.evaluator.DatasetEvaluators`).
"""

from __future__ import annotations

from vps_d2.utils.registry import Registry

from .evaluator import DatasetEvaluator, DatasetEvaluators

__all__ = ["EVALUATOR_REGISTRY", "build_evaluator"]

EVALUATOR_REGISTRY = Registry("EVALUATOR")
EVALUATOR_REGISTRY.__doc__ = """
Registry for evaluators: ``cls(cfg, dataset_name, output_dir)`` -> DatasetEvaluator.
Per-frame inputs are the test frame dicts of :mod:`vps_d2.data`; outputs are the model's
per-frame dicts (``"prob"``, optional ``"class_scores"``, ``"box"``, ``"box_score"``).
An evaluator whose outputs are absent (a model without class scores or boxes) returns {}.
"""


def build_evaluator(cfg, dataset_name: str, output_dir: str | None = None) -> DatasetEvaluator:
    """The evaluators of ``TEST.EVALUATORS`` for ``dataset_name``, run together.

    Each is built as ``cls(cfg, dataset_name, output_dir)`` from EVALUATOR_REGISTRY (the
    segmentation one is :class:`VPSEvaluator`, the SUN-SEG toolbox protocol; it uses
    TEST.VPS.*; ``output_dir`` defaults to cfg.OUTPUT_DIR). Their results are merged:
    ``{task: {metric: value}}`` with one task per evaluator and split.
    """
    names = list(cfg.TEST.EVALUATORS)
    if not names:
        raise ValueError("TEST.EVALUATORS is empty: name at least one evaluator")
    evaluators = [
        EVALUATOR_REGISTRY.get_for(name, "TEST.EVALUATORS")(cfg, dataset_name, output_dir)
        for name in names
    ]
    return evaluators[0] if len(evaluators) == 1 else DatasetEvaluators(evaluators)
