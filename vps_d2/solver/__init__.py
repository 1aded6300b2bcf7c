"""Optimizers, LR schedules (fvcore ParamSchedulers) and their builders."""

from .build import (
    OPTIMIZER_KEYS,
    add_optimizer_config,
    build_lr_scheduler,
    build_optimizer,
    get_param_groups,
    solver_section,
)
from .lr_scheduler import LRMultiplier, PolyLRWithConstantEnding, WarmupParamScheduler

__all__ = [
    "OPTIMIZER_KEYS",
    "LRMultiplier",
    "PolyLRWithConstantEnding",
    "WarmupParamScheduler",
    "add_optimizer_config",
    "build_lr_scheduler",
    "build_optimizer",
    "get_param_groups",
    "solver_section",
]
