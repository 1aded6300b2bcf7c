"""``Trainer``: Detectron2's DefaultTrainer on Lightning Fabric.

Builds model, optimizer, LR scheduler, loaders, checkpointer and hooks from a config;
``resume_or_load`` then ``train()``. Fabric owns devices, DDP and mixed precision.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from contextlib import nullcontext

import torch

from vps_d2.checkpoint import VPSCheckpointer
from vps_d2.modeling import build_model
from vps_d2.solver import build_lr_scheduler, build_optimizer
from vps_d2.utils import comm
from vps_d2.utils.events import (
    CommonMetricPrinter,
    JSONWriter,
    TensorboardWriter,
    dump_json_atomic,
)

from . import hooks
from .launch import accelerator_from_cfg, get_fabric, make_fabric, precision_from_cfg
from .train_loop import TrainerBase, check_finite_losses, now, put_step_metrics

__all__ = ["Trainer"]

logger = logging.getLogger(__name__)


class Trainer(TrainerBase):
    """Train ``cfg.MODEL.META_ARCHITECTURE`` on ``cfg.DATASETS.TRAIN``.

    Per iteration: one batch of clips (a list of mapper dicts), ``losses = model(batch)``,
    the sum is back-propagated by Fabric (AMP-aware), gradients optionally clipped,
    optimizer and LR scheduler stepped. A NaN/Inf loss stops training with an error
    naming the iteration and the loss term.
    """

    def __init__(self, cfg) -> None:
        super().__init__()
        self.cfg = cfg
        fabric = get_fabric()
        if fabric is None:  # used outside launch(): one process on MODEL.DEVICE
            acc = accelerator_from_cfg(cfg)
            fabric = make_fabric(1, 1, acc, precision_from_cfg(cfg, acc))
        self.fabric = fabric
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        # Raw module and optimizer: for checkpoints, streaming evaluation, the scheduler.
        self.model_raw, self.optimizer_raw = model, optimizer
        self.model, self.optimizer = fabric.setup(model, optimizer)
        self.checkpointer = VPSCheckpointer(
            self.model_raw,
            cfg.OUTPUT_DIR,
            save_to_disk=comm.is_main_process(),
            optimizer=self.optimizer_raw,
            scheduler=self.scheduler,
        )
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self._data_iter = None
        self.register_hooks(self.build_hooks())

    # ------------------------------------------------------------------ builders
    @classmethod
    def build_model(cls, cfg) -> torch.nn.Module:
        model = build_model(cfg)
        n = sum(p.numel() for p in model.parameters())
        logger.info("Model %s: %.2f M parameters", type(model).__name__, n / 1e6)
        return model

    @classmethod
    def build_optimizer(cls, cfg, model):
        return build_optimizer(cfg, model)

    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer):
        return build_lr_scheduler(cfg, optimizer)

    @classmethod
    def build_train_loader(cls, cfg, start_iter: int = 0):
        from vps_d2.data import build_train_loader

        return build_train_loader(cfg, start_iter=start_iter)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name: str):
        from vps_d2.data import build_test_loader

        return build_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name: str, output_dir: str | None = None):
        from vps_d2.evaluation import build_evaluator

        return build_evaluator(cfg, dataset_name, output_dir)

    def build_hooks(self) -> list:
        cfg = self.cfg
        ret: list = [
            hooks.IterationTimer(),
            hooks.LRScheduler(self.optimizer_raw, self.scheduler),
            hooks.PeriodicCheckpointer(
                self.checkpointer,
                cfg.SOLVER.CHECKPOINT_PERIOD,
                max_iter=cfg.SOLVER.MAX_ITER,
                max_to_keep=cfg.SOLVER.MAX_TO_KEEP or None,
            ),
        ]
        if cfg.DATASETS.TEST:
            best_ds = cfg.TEST.VPS.BEST_DATASET or cfg.DATASETS.TEST[0]
            if best_ds not in cfg.DATASETS.TEST:
                raise KeyError(f"TEST.VPS.BEST_DATASET {best_ds!r} is not in DATASETS.TEST")
            best = hooks.BestCheckpointer(self.checkpointer, best_ds, cfg.TEST.VPS.BEST_METRIC)
            run_eval = lambda: self.test(self.cfg, self.model_raw)  # noqa: E731
            ret.append(hooks.EvalHook(cfg.TEST.EVAL_PERIOD, run_eval, [best]))
        if comm.is_main_process():
            writers = [
                CommonMetricPrinter(self.max_iter),
                JSONWriter(os.path.join(cfg.OUTPUT_DIR, "metrics.json")),
                TensorboardWriter(cfg.OUTPUT_DIR),
            ]
            ret.append(hooks.PeriodicWriter(writers, period=20))
            ret.append(hooks.ProgressBar())
        return ret

    # ------------------------------------------------------------------ resume
    def resume_or_load(self, resume: bool = True) -> None:
        """``resume`` and OUTPUT_DIR/last_checkpoint exists: continue from it (model,
        optimizer, scheduler, iteration). Otherwise load MODEL.WEIGHTS (model only) if set."""
        if resume and self.checkpointer.has_checkpoint():
            path = self.checkpointer.get_checkpoint_file()
            ckpt = self.checkpointer.load(path)
            self.start_iter = int(ckpt.get("iteration", -1)) + 1
            logger.info("Resumed from %s at iteration %d", path, self.start_iter)
        elif self.cfg.MODEL.WEIGHTS:
            self.checkpointer.load(self.cfg.MODEL.WEIGHTS, checkpointables=[])
            self.start_iter = 0
        else:
            self.start_iter = 0

    # ------------------------------------------------------------------ loop
    def train(self) -> OrderedDict | None:
        if self.start_iter >= self.max_iter:
            logger.info("Nothing to train: start iteration %d >= SOLVER.MAX_ITER %d",
                        self.start_iter, self.max_iter)  # fmt: skip
            return None
        self._data_iter = iter(self.build_train_loader(self.cfg, start_iter=self.start_iter))
        self.model.train()
        super().train(self.start_iter, self.max_iter)
        return None

    def run_step(self) -> None:
        t0 = now()
        data = next(self._data_iter)
        data_time = now() - t0
        if self.cfg.SEED >= 0:
            # Model-side randomness (dropout, noise) depends only on the iteration, so a
            # resumed run reproduces an uninterrupted one.
            torch.manual_seed(self.cfg.SEED * 1_000_003 + self.iter * 101 + comm.get_rank())
        loss_dict = self.model(data)
        if not isinstance(loss_dict, dict) or not loss_dict:
            raise TypeError(f"{type(self.model_raw).__name__} must return a dict of losses")
        if self.cfg.SOLVER.CHECK_FINITE_LOSS:
            check_finite_losses(loss_dict, self.iter)
        losses = sum(loss_dict.values())
        self.optimizer.zero_grad(set_to_none=True)
        self.fabric.backward(losses)
        self._clip_gradients()
        self.optimizer.step()
        put_step_metrics(loss_dict, data_time)

    def _clip_gradients(self) -> None:
        c = self.cfg.SOLVER.CLIP_GRADIENTS
        if not c.ENABLED:
            return
        kind = c.CLIP_TYPE
        if kind == "value":
            self.fabric.clip_gradients(self.model, self.optimizer, clip_val=c.CLIP_VALUE)
        elif kind == "full_model":
            self.fabric.clip_gradients(self.model, self.optimizer, max_norm=c.CLIP_VALUE,
                                       norm_type=c.NORM_TYPE, error_if_nonfinite=False)  # fmt: skip
        elif kind == "norm":
            # Let Fabric unscale AMP gradients (an infinite max_norm clips nothing), then
            # clip each parameter's gradient norm on its own.
            self.fabric.clip_gradients(self.model, self.optimizer, max_norm=float("inf"),
                                       error_if_nonfinite=False)  # fmt: skip
            for p in self.model_raw.parameters():
                if p.grad is not None:
                    torch.nn.utils.clip_grad_norm_(p, c.CLIP_VALUE, c.NORM_TYPE)
        else:
            raise ValueError(
                f"SOLVER.CLIP_GRADIENTS.CLIP_TYPE must be value, norm or full_model, got {kind!r}"
            )

    # ------------------------------------------------------------------ test
    @classmethod
    def test(cls, cfg, model, evaluators=None) -> OrderedDict:
        """Stream every video of every DATASETS.TEST through ``model`` and evaluate."""
        from vps_d2.evaluation import format_vps_results, inference_on_dataset, print_csv_format

        results: OrderedDict = OrderedDict()
        fabric = get_fabric()
        for idx, name in enumerate(cfg.DATASETS.TEST):
            loader = cls.build_test_loader(cfg, name)
            evaluator = (evaluators[idx] if evaluators is not None
                         else cls.build_evaluator(cfg, name, cfg.OUTPUT_DIR))  # fmt: skip
            ctx = fabric.autocast() if fabric is not None else nullcontext()
            with ctx:
                res = inference_on_dataset(model, loader, evaluator)
            results.update(res)
        if comm.is_main_process() and results:
            print_csv_format(results)
            logger.info("Evaluation results:\n%s", format_vps_results(results))
            if cfg.OUTPUT_DIR:
                os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
                dump_json_atomic(os.path.join(cfg.OUTPUT_DIR, "results.json"), results)
        return results
