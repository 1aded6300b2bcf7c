"""Engine: Detectron2-style argument parser, set-up, Fabric launch, trainer and hooks."""

from .defaults import default_argument_parser, default_setup, setup_cfg
from .hooks import (
    BestCheckpointer,
    EvalHook,
    IterationTimer,
    LRScheduler,
    PeriodicCheckpointer,
    PeriodicWriter,
    ProgressBar,
)
from .launch import get_fabric, launch, make_fabric
from .predictor import LatencyStats, VideoPredictor
from .train_loop import HookBase, NonFiniteLossError, TrainerBase
from .trainer import Trainer

__all__ = [
    "BestCheckpointer",
    "EvalHook",
    "HookBase",
    "IterationTimer",
    "LRScheduler",
    "LatencyStats",
    "NonFiniteLossError",
    "PeriodicCheckpointer",
    "PeriodicWriter",
    "ProgressBar",
    "Trainer",
    "TrainerBase",
    "VideoPredictor",
    "default_argument_parser",
    "default_setup",
    "get_fabric",
    "launch",
    "make_fabric",
    "setup_cfg",
]
