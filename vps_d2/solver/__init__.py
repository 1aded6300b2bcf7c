"""Optimizers, LR schedules (fvcore ParamSchedulers) and their builders."""

from .build import build_lr_scheduler, build_optimizer, get_param_groups
from .lr_scheduler import LRMultiplier, PolyLRWithConstantEnding, WarmupParamScheduler

__all__ = [
    "LRMultiplier",
    "PolyLRWithConstantEnding",
    "WarmupParamScheduler",
    "build_lr_scheduler",
    "build_optimizer",
    "get_param_groups",
]
