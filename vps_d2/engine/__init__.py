"""Engine: Detectron2-style argument parser, set-up, Fabric launch, trainer and hooks."""

from vps_d2.solver.train_step import (
    TRAIN_STEP_REGISTRY,
    DefaultTrainStep,
    NonFiniteLossError,
    OptimizerSet,
    TrainStep,
    build_train_step,
)

from .defaults import add_plugin_argument, default_argument_parser, default_setup, setup_cfg
from .hooks import (
    BestCheckpointer,
    EvalHook,
    IterationTimer,
    LRScheduler,
    PeriodicCheckpointer,
    PeriodicWriter,
    ProgressBar,
)
from .launch import ddp_kwargs_from_cfg, get_fabric, launch, make_fabric
from .predictor import LatencyStats, VideoPredictor
from .train_loop import HookBase, TrainerBase
from .trainer import Trainer

__all__ = [
    "TRAIN_STEP_REGISTRY",
    "BestCheckpointer",
    "DefaultTrainStep",
    "EvalHook",
    "HookBase",
    "IterationTimer",
    "LRScheduler",
    "LatencyStats",
    "NonFiniteLossError",
    "OptimizerSet",
    "PeriodicCheckpointer",
    "PeriodicWriter",
    "ProgressBar",
    "TrainStep",
    "Trainer",
    "TrainerBase",
    "VideoPredictor",
    "add_plugin_argument",
    "build_train_step",
    "ddp_kwargs_from_cfg",
    "default_argument_parser",
    "default_setup",
    "get_fabric",
    "launch",
    "make_fabric",
    "setup_cfg",
]
