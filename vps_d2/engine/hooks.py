"""Training hooks: timing, LR step, periodic checkpoints, evaluation + best checkpoint,
metric writers and a progress bar."""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable

from fvcore.common.checkpoint import PeriodicCheckpointer as _FvPeriodicCheckpointer

from vps_d2.utils import comm
from vps_d2.utils.events import EventWriter, dump_json_atomic

from .train_loop import HookBase

__all__ = [
    "BestCheckpointer",
    "EvalHook",
    "IterationTimer",
    "LRScheduler",
    "PeriodicCheckpointer",
    "PeriodicWriter",
    "ProgressBar",
]

logger = logging.getLogger(__name__)


class IterationTimer(HookBase):
    """Put the duration of each step in the storage as "time"."""

    def before_step(self) -> None:
        self._start = time.perf_counter()

    def after_step(self) -> None:
        self.trainer.storage.put_scalar("time", time.perf_counter() - self._start)


class LRScheduler(HookBase):
    """Log the lr of the largest param group, then step the scheduler."""

    def __init__(self, optimizer, scheduler) -> None:
        self._optimizer = optimizer
        self._scheduler = scheduler
        largest = max(range(len(optimizer.param_groups)),
                      key=lambda i: len(optimizer.param_groups[i]["params"]))  # fmt: skip
        self._group = largest

    def after_step(self) -> None:
        lr = self._optimizer.param_groups[self._group]["lr"]
        self.trainer.storage.put_scalar("lr", lr, smoothing_hint=False)
        self._scheduler.step()


class PeriodicCheckpointer(_FvPeriodicCheckpointer, HookBase):
    """fvcore's PeriodicCheckpointer as a hook: model_XXXXXXX.pth every period, model_final."""

    def before_train(self) -> None:
        self.max_iter = self.trainer.max_iter

    def after_step(self) -> None:
        self.step(self.trainer.iter)


class EvalHook(HookBase):
    """Run ``eval_function()`` every ``period`` iterations and after the last one.

    The results go to the storage (``<dataset>/<metric>``) and to ``callbacks``.
    """

    def __init__(self, period: int, eval_function: Callable[[], dict],
                 callbacks: list[Callable[[dict, int], None]] | None = None) -> None:  # fmt: skip
        self._period = period
        self._func = eval_function
        self._callbacks = callbacks or []

    def _do_eval(self) -> None:
        results = self._func()
        if comm.is_main_process() and results:
            flat = {f"{ds}/{k}": v for ds, res in results.items() for k, v in res.items()
                    if isinstance(v, (int, float)) and math.isfinite(v)}  # fmt: skip
            self.trainer.storage.put_scalars(smoothing_hint=False, **flat)
        for cb in self._callbacks:
            cb(results, self.trainer.iter)
        comm.synchronize()

    def after_step(self) -> None:
        next_iter = self.trainer.iter + 1
        if (
            self._period > 0
            and next_iter % self._period == 0
            and next_iter != self.trainer.max_iter
        ):
            self._do_eval()

    def after_train(self) -> None:
        # Evaluate once at the end, only if training ran to completion.
        if self.trainer.iter >= self.trainer.max_iter:
            self._do_eval()


class BestCheckpointer:
    """Evaluation callback: save model_best.pth when ``dataset/metric`` improves."""

    def __init__(self, checkpointer, dataset: str, metric: str, mode: str = "max") -> None:
        self._ckpt = checkpointer
        self.dataset, self.metric, self.mode = dataset, metric, mode
        self.best: float | None = None

    def __call__(self, results: dict, iteration: int) -> None:
        if not comm.is_main_process():
            return
        value = results.get(self.dataset, {}).get(self.metric)
        if value is None or not math.isfinite(value):
            logger.warning("Best checkpoint: %s/%s not in the evaluation results (%s)",
                           self.dataset, self.metric, list(results))  # fmt: skip
            return
        better = self.best is None or (
            value > self.best if self.mode == "max" else value < self.best
        )
        if better:
            logger.info("New best %s/%s = %.4f at iteration %d (previous %s): saving model_best",
                        self.dataset, self.metric, value, iteration, self.best)  # fmt: skip
            self.best = value
            self._ckpt.save("model_best", tag_last=False, iteration=iteration)
            dump_json_atomic(
                os.path.join(self._ckpt.save_dir, "model_best.json"),
                {"iteration": iteration, "dataset": self.dataset, "metric": self.metric,
                 "value": value},
            )  # fmt: skip


class PeriodicWriter(HookBase):
    """Call every writer every ``period`` iterations and at the end."""

    def __init__(self, writers: list[EventWriter], period: int = 20) -> None:
        self._writers = writers
        self._period = period

    def after_step(self) -> None:
        if (
            self.trainer.iter + 1
        ) % self._period == 0 or self.trainer.iter == self.trainer.max_iter - 1:
            for w in self._writers:
                w.write()

    def after_train(self) -> None:
        for w in self._writers:
            w.write()
            w.close()


class ProgressBar(HookBase):
    """A tqdm bar over iterations with ETA and the smoothed total loss (main process)."""

    def before_train(self) -> None:
        from tqdm import tqdm

        self._bar = tqdm(
            total=self.trainer.max_iter,
            initial=self.trainer.start_iter,
            desc="train",
            dynamic_ncols=True,
            mininterval=1.0,
            disable=not comm.is_main_process(),
        )

    def after_step(self) -> None:
        self._bar.update(1)
        if (self.trainer.iter + 1) % 10 == 0:
            self._bar.set_postfix(loss=f"{self.trainer.storage.median('total_loss'):.4f}")

    def after_train(self) -> None:
        self._bar.close()
