"""``vps_d2.d2.Trainer``: Detectron2's DefaultTrainer running vps_d2's parts.

The same model, named optimizers and LR schedules, training step, loaders and evaluators as
vps_d2's own :class:`~vps_d2.engine.Trainer`, on Detectron2's TrainerBase, hooks,
DetectionCheckpointer, DDP wrapper and ``inference_on_dataset``. On one process, a run
gives bit-identical weights and metrics to vps_d2's engine (same seed, same threads).

Checkpoints have vps_d2's layout (``model``, ``optimizer``, ``scheduler``,
``optimizer_<name>``, ``scheduler_<name>``, ``trainer``, ``iteration``), so each engine
resumes the other's. What differs from vps_d2's engine (docs/detectron2.md): mixed precision is
not available here (Detectron2's AMPTrainer has one optimizer), and DDP is Detectron2's
(``create_ddp_model``) instead of Lightning Fabric's.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.engine import DefaultTrainer, SimpleTrainer, create_ddp_model
from detectron2.engine import hooks as d2_hooks
from detectron2.engine.defaults import default_writers
from detectron2.engine.train_loop import TrainerBase as D2TrainerBase
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.utils import comm

from vps_d2.checkpoint import AtomicSaveMixin
from vps_d2.engine import hooks as vps_hooks
from vps_d2.engine.launch import ddp_kwargs_from_cfg
from vps_d2.engine.trainer import Trainer as VPSTrainer
from vps_d2.engine.trainer import (
    best_checkpoint_target,
    build_optimizers,
    make_checkpointer,
    make_optimizer_set,
    run_train_step,
    test_splits,
)
from vps_d2.modeling import resolve_clip_config
from vps_d2.solver import build_lr_scheduler
from vps_d2.solver.train_step import OptimizerSet, TrainStep, build_train_step

from .modeling import build_model

__all__ = ["BestCheckpointer", "NamedLRScheduler", "PlainBackend", "StepTrainer", "Trainer"]

logger = logging.getLogger(__name__)


class PlainBackend:
    """What :class:`~vps_d2.engine.train_step.OptimizerSet` needs from Fabric, in plain
    PyTorch: ``backward`` and gradient clipping over one optimizer's parameters (FP32)."""

    @staticmethod
    def backward(loss: torch.Tensor) -> None:
        loss.backward()

    @staticmethod
    def clip_gradients(
        module, optimizer, clip_val=None, max_norm=None, norm_type=2.0, error_if_nonfinite=True
    ):
        params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        if clip_val is not None:
            torch.nn.utils.clip_grad_value_(params, clip_val)
            return None
        return torch.nn.utils.clip_grad_norm_(
            params, max_norm, norm_type=norm_type, error_if_nonfinite=error_if_nonfinite
        )


class StepTrainer(SimpleTrainer):
    """Detectron2's SimpleTrainer running a vps_d2 :class:`TrainStep` over named optimizers.

    Per iteration: one batch, the per-iteration seed of vps_d2's engine (``SEED``-derived, so
    a resumed run reproduces an uninterrupted one), the step, then Detectron2's metric
    writing (the "main" losses under their names, another optimizer's as ``<name>/...``).
    """

    def __init__(self, model, data_loader, optim: OptimizerSet, step: TrainStep, seed: int):
        super().__init__(model, data_loader, optim["main"])
        self.optim, self.step, self.seed = optim, step, int(seed)

    def run_step(self) -> None:
        assert self.model.training, "[StepTrainer] model was changed to eval mode!"
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        data_time = time.perf_counter() - start
        losses = run_train_step(self.step, self.model, data, self.optim, self.seed, self.iter)
        for name, loss_dict in losses.items():
            prefix = "" if name == "main" else f"{name}/"
            named = {f"{prefix}{k}": v.detach() for k, v in loss_dict.items()}
            self._write_metrics(named, data_time, prefix=prefix)

    def load_state_dict(self, state_dict: dict) -> None:
        # A vps_d2 checkpoint keeps the optimizers at its top level (loaded from there).
        D2TrainerBase.load_state_dict(self, state_dict)
        if "optimizer" in state_dict:
            self.optimizer.load_state_dict(state_dict["optimizer"])


class NamedLRScheduler(d2_hooks.HookBase):
    """Log the lr of a non-"main" optimizer as ``<name>/lr`` and step its scheduler."""

    def __init__(self, name: str, optimizer, scheduler) -> None:
        self._name, self._optimizer, self._scheduler = name, optimizer, scheduler
        self._group = d2_hooks.LRScheduler.get_best_param_group_id(optimizer)

    def after_step(self) -> None:
        lr = self._optimizer.param_groups[self._group]["lr"]
        self.trainer.storage.put_scalar(f"{self._name}/lr", lr, smoothing_hint=False)
        self._scheduler.step()


class BestCheckpointer(d2_hooks.HookBase):
    """vps_d2's best-checkpoint rule as a Detectron2 hook (same class name, so its state is
    shared with vps_d2's engine in checkpoints): model_best.pth / .json when the tracked
    metric improves, the best surviving ``resume``."""

    def __init__(self, checkpointer, dataset: str, metric: str) -> None:
        self._best = vps_hooks.BestCheckpointer(checkpointer, dataset, metric)

    def __call__(self, results: dict, iteration: int) -> None:
        self._best(results, iteration)

    def state_dict(self) -> dict:
        return self._best.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self._best.load_state_dict(state)


class _AtomicCheckpointer(AtomicSaveMixin, DetectionCheckpointer):
    """Detectron2's DetectionCheckpointer whose files are written atomically."""


class Trainer(DefaultTrainer):
    """Detectron2's DefaultTrainer whose builders are vps_d2's (see the module docstring).

    ``Trainer(cfg)`` with a Detectron2 cfg after :func:`vps_d2.d2.add_vps_config` (and
    :func:`vps_d2.d2.register_all`), then ``resume_or_load(resume)`` and ``train()``, as
    with any DefaultTrainer. ``Trainer.test(cfg, model)`` evaluates with Detectron2's
    ``inference_on_dataset``.
    """

    def __init__(self, cfg) -> None:  # noqa: D107 - replaces DefaultTrainer.__init__
        D2TrainerBase.__init__(self)
        if cfg.SOLVER.AMP.ENABLED:
            raise ValueError(
                "SOLVER.AMP.ENABLED: mixed precision is not available with the Detectron2 "
                "engine (its AMPTrainer has one optimizer); use vps_d2's engine"
            )
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        cfg = resolve_clip_config(cfg)  # INPUT.CLIP.* against the model's clip contract
        model = self.build_model(cfg)
        optimizers, self.schedulers = build_optimizers(cfg, model)
        data_loader = self.build_train_loader(cfg)
        ddp = dict(ddp_kwargs_from_cfg(cfg))
        if not torch.cuda.is_available():
            ddp["device_ids"] = None  # CPU processes (gloo)
        wrapped = create_ddp_model(model, **ddp)
        optim = make_optimizer_set(cfg, PlainBackend(), wrapped, optimizers)
        optim.after_backward = lambda name: self.after_backward()
        self._trainer = StepTrainer(
            wrapped, data_loader, optim, build_train_step(cfg, model), cfg.SEED
        )
        self.optimizers = optimizers
        self.scheduler = self.schedulers["main"]
        self.checkpointer = make_checkpointer(
            _AtomicCheckpointer, wrapped, cfg, self, optimizers, self.schedulers
        )
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    # ------------------------------------------------------------------ builders
    @classmethod
    def build_model(cls, cfg):
        """vps_d2's model with Detectron2 outputs added in eval mode (same parameters)."""
        model = build_model(cfg)
        n = sum(p.numel() for p in model.parameters())
        logger.info("Model %s: %.2f M parameters", type(model).__name__, n / 1e6)
        return model

    @classmethod
    def build_optimizer(cls, cfg, model):
        """The "main" optimizer (the others: :func:`vps_d2.engine.trainer.build_optimizers`)."""
        return build_optimizers(cfg, model)[0]["main"]

    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer):
        return build_lr_scheduler(cfg, optimizer)

    @classmethod
    def build_train_loader(cls, cfg, start_iter: int = 0):
        return VPSTrainer.build_train_loader(cfg, start_iter=start_iter)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name: str):
        return VPSTrainer.build_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name: str, output_folder: str | None = None):
        return VPSTrainer.build_evaluator(cfg, dataset_name, output_folder)

    def build_hooks(self) -> list:
        cfg = self.cfg
        ret: list = [
            d2_hooks.IterationTimer(),
            d2_hooks.LRScheduler(self.optimizers["main"], self.scheduler),
        ]
        ret += [
            NamedLRScheduler(n, o, self.schedulers[n])
            for n, o in self.optimizers.items()
            if n != "main"
        ]
        if comm.is_main_process():
            ret.append(
                d2_hooks.PeriodicCheckpointer(
                    self.checkpointer,
                    cfg.SOLVER.CHECKPOINT_PERIOD,
                    max_iter=cfg.SOLVER.MAX_ITER,
                    max_to_keep=cfg.SOLVER.MAX_TO_KEEP or None,
                )
            )
        if cfg.DATASETS.TEST:
            target = best_checkpoint_target(cfg)
            best = BestCheckpointer(self.checkpointer, *target) if target else None

            def test_and_save_results():
                results = self.test(self.cfg, self._trainer.model)
                if best is not None:
                    best(results, min(self.iter, self.max_iter - 1))
                self._last_eval_results = results
                # Detectron2's EvalHook stores every scalar: keep the finite ones.
                return {
                    t: {k: v for k, v in r.items() if isinstance(v, float) and math.isfinite(v)}
                    for t, r in results.items()
                }

            ret.append(best)
            ret.append(d2_hooks.EvalHook(cfg.TEST.EVAL_PERIOD, test_and_save_results))
        if comm.is_main_process():
            ret.append(
                d2_hooks.PeriodicWriter(default_writers(cfg.OUTPUT_DIR, self.max_iter), period=20)
            )
        return ret

    # ------------------------------------------------------------------ resume
    def resume_or_load(self, resume: bool = True) -> None:
        """DefaultTrainer's, then the train loader restarts at the right sample."""
        super().resume_or_load(resume=resume)
        if self.start_iter:
            self._trainer.reset_data_loader(
                lambda: self.build_train_loader(self.cfg, start_iter=self.start_iter)
            )

    def load_state_dict(self, state_dict: dict) -> None:
        D2TrainerBase.load_state_dict(self, state_dict)
        if "_trainer" in state_dict:  # Detectron2's layout; vps_d2's has none
            self._trainer.load_state_dict(state_dict["_trainer"])

    # ------------------------------------------------------------------ test
    @classmethod
    def test(cls, cfg, model, evaluators=None) -> OrderedDict:
        """Detectron2's ``inference_on_dataset`` on every DATASETS.TEST split; the results
        (``{task: {metric: value}}``, one task per evaluator and split) are printed and
        written to OUTPUT_DIR/results.json as vps_d2's engine does."""
        return test_splits(
            cfg,
            model,
            evaluators,
            cls.build_test_loader,
            cls.build_evaluator,
            inference_on_dataset,
            print_csv=print_csv_format,
        )
