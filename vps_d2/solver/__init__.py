"""Optimizers, LR schedules (fvcore ParamSchedulers), their builders and the training step."""

from .build import (
    OPTIMIZER_KEYS,
    add_optimizer_config,
    build_lr_scheduler,
    build_optimizer,
    get_param_groups,
    solver_section,
)
from .lr_scheduler import LRMultiplier, PolyLRWithConstantEnding, WarmupParamScheduler
from .train_step import (
    TRAIN_STEP_REGISTRY,
    DefaultTrainStep,
    NonFiniteLossError,
    OptimizerSet,
    TrainStep,
    build_train_step,
)

__all__ = [
    "OPTIMIZER_KEYS",
    "TRAIN_STEP_REGISTRY",
    "DefaultTrainStep",
    "LRMultiplier",
    "NonFiniteLossError",
    "OptimizerSet",
    "PolyLRWithConstantEnding",
    "TrainStep",
    "WarmupParamScheduler",
    "add_optimizer_config",
    "build_lr_scheduler",
    "build_optimizer",
    "build_train_step",
    "get_param_groups",
    "solver_section",
]
