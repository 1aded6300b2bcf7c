"""vps_d2 inside a real Detectron2 (optional: Detectron2 is not on PyPI).

Importing this package needs Detectron2 (an ImportError says so otherwise) and calls
:func:`register_all` once: Detectron2's ``build_model``, ``get_cfg``, ``DatasetCatalog``
and ``MetadataCatalog`` then know vps_d2's models, keys and datasets. What it gives a
Detectron2 user (docs/detectron2.md):

* :func:`add_vps_config` / :func:`get_cfg`: Detectron2's ``get_cfg()`` extended with every
  vps_d2 key (created with the type of the given cfg), so every ``configs/*.yaml`` of the
  project merges unchanged with Detectron2's own ``merge_from_file``;
* :func:`register_all`: vps_d2's meta-architectures (under all their names, with outputs
  in Detectron2's conventions: "sem_seg", "instances"), backbones, vps_d2's keys in
  Detectron2's defaults, and the datasets as Detectron2's standard per-frame dicts with
  their metadata (:mod:`vps_d2.d2.datasets`), with the dataset options of a cfg;
* :func:`build_model`: a model with Detectron2 outputs (:mod:`vps_d2.d2.modeling`);
* :class:`VideoDefaultPredictor`: Detectron2's DefaultPredictor for video frames, keeping
  the model's state per video (:mod:`vps_d2.d2.predictor`);
* :class:`Trainer`: a ``DefaultTrainer`` whose builders are vps_d2's (model, named
  optimizers and LR schedules, the model's own training step, resumable train loader, test
  loader, evaluators), writing the same OUTPUT_DIR artifacts as vps_d2's engine, with
  checkpoints interchangeable between the two;
* :func:`main` / :func:`launch_main`: ``tools/train_net.py --engine detectron2``.
"""

from __future__ import annotations

try:
    import detectron2  # noqa: F401
except ImportError as e:  # pragma: no cover - the path CI takes
    raise ImportError(
        "vps_d2.d2 needs Detectron2, which is not on PyPI: install it from "
        "https://github.com/facebookresearch/detectron2 (vps_d2 itself never needs it)"
    ) from e

from .config import add_vps_config, extend_detectron2_defaults, get_cfg
from .datasets import frame_dicts
from .modeling import build_model, to_d2_outputs, to_instances
from .predictor import VideoDefaultPredictor
from .register import D2BackboneAdapter, register_all
from .train_net import launch_main, main
from .trainer import StepTrainer, Trainer

register_all()

__all__ = [
    "D2BackboneAdapter",
    "StepTrainer",
    "Trainer",
    "VideoDefaultPredictor",
    "add_vps_config",
    "build_model",
    "extend_detectron2_defaults",
    "frame_dicts",
    "get_cfg",
    "launch_main",
    "main",
    "register_all",
    "to_d2_outputs",
    "to_instances",
]
