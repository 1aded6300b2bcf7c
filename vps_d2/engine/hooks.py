"""Training hooks: timing, LR step, periodic checkpoints, evaluation + best checkpoint,
metric writers and a progress bar."""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable

import torch
from fvcore.common.checkpoint import PeriodicCheckpointer as _FvPeriodicCheckpointer
from tqdm import tqdm

from vps_d2.solver.train_step import NonFiniteLossError
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
    """Log the lr of the largest param group of each optimizer, then step its scheduler.

    ``optimizers`` / ``schedulers``: ``{name: ...}``; the "main" lr is logged as "lr",
    another optimizer's as "<name>/lr".
    """

    def __init__(self, optimizers: dict, schedulers: dict) -> None:
        self._optimizers = dict(optimizers)
        self._schedulers = dict(schedulers)
        self._groups = {
            name: max(
                range(len(opt.param_groups)), key=lambda i, o=opt: len(o.param_groups[i]["params"])
            )
            for name, opt in self._optimizers.items()
        }

    def after_step(self) -> None:
        for name, opt in self._optimizers.items():
            lr = opt.param_groups[self._groups[name]]["lr"]
            key = "lr" if name == "main" else f"{name}/lr"
            self.trainer.storage.put_scalar(key, lr, smoothing_hint=False)
            self._schedulers[name].step()


def nonfinite_weights(model) -> list[str]:
    """Names of the model's floating-point tensors (parameters, buffers) with a NaN or Inf."""
    return [
        k
        for k, v in model.state_dict().items()
        if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()
    ]


class PeriodicCheckpointer(_FvPeriodicCheckpointer, HookBase):
    """fvcore's PeriodicCheckpointer as a hook: model_XXXXXXX.pth every period, model_final.

    Weights are checked before every save: NaN/Inf weights are never written (so
    last_checkpoint always names weights a resumed run can continue from); training stops
    with a :class:`NonFiniteLossError` instead.
    """

    def before_train(self) -> None:
        self.max_iter = self.trainer.max_iter

    def after_step(self) -> None:
        it = self.trainer.iter
        if (it + 1) % self.period == 0 or it >= self.max_iter - 1:
            bad = nonfinite_weights(self.checkpointer.model)
            if bad:
                raise NonFiniteLossError(
                    f"Weights became infinite or NaN at iteration {it} ({bad[:3]}): "
                    "the checkpoint of this iteration was not saved."
                )
        self.step(it)


class EvalHook(HookBase):
    """Run ``eval_function()`` every ``period`` iterations and after the last one.

    The results go to the storage (``<dataset>/<metric>``) and to ``callbacks``, called
    with ``(results, iteration)``: the iteration whose weights were evaluated (the final
    evaluation is labelled ``max_iter - 1``, like model_final.pth). When ``record`` is a
    path, ``{"iteration", "final"}`` is written there after each evaluation, so a run killed
    during its final evaluation knows on ``--resume`` that it still has to run it.
    """

    def __init__(
        self,
        period: int,
        eval_function: Callable[[], dict],
        callbacks: list[Callable[[dict, int], None]] | None = None,
        record: str = "",
    ) -> None:
        self._period = period
        self._func = eval_function
        self._callbacks = callbacks or []
        self._record = record

    def run_final(self, max_iter: int) -> None:
        """The final evaluation (also what ``--resume`` runs when it did not finish)."""
        self._do_eval(max_iter - 1, final=True)

    @staticmethod
    def final_done(record: str, max_iter: int) -> bool:
        """Whether ``record`` says the final evaluation of ``max_iter`` iterations finished."""
        try:
            with open(record, encoding="utf-8") as f:
                state = json.load(f)
        except (OSError, ValueError):
            return False
        return bool(state.get("final")) and int(state.get("iteration", -1)) == max_iter - 1

    def _do_eval(self, iteration: int, final: bool = False) -> None:
        results = self._func()
        if comm.is_main_process() and results:
            flat = {
                f"{ds}/{k}": v
                for ds, res in results.items()
                for k, v in res.items()
                if isinstance(v, (int, float)) and math.isfinite(v)
            }
            self.trainer.storage.put_scalars(smoothing_hint=False, **flat)
        for cb in self._callbacks:
            cb(results, iteration)
        if self._record and comm.is_main_process():
            dump_json_atomic(self._record, {"iteration": iteration, "final": final})
        comm.synchronize()

    def after_step(self) -> None:
        next_iter = self.trainer.iter + 1
        if (
            self._period > 0
            and next_iter % self._period == 0
            and next_iter != self.trainer.max_iter
        ):
            self._do_eval(self.trainer.iter)

    def after_train(self) -> None:
        # Evaluate once at the end, only if training ran to completion.
        if self.trainer.iter >= self.trainer.max_iter:
            self.run_final(self.trainer.max_iter)


class BestCheckpointer(HookBase):
    """Evaluation callback (of :class:`EvalHook`): save model_best.pth when
    ``dataset/metric`` improves. Registered as a hook too, so the best value and its
    iteration are part of the trainer's state and survive ``--resume``."""

    def __init__(self, checkpointer, dataset: str, metric: str, mode: str = "max") -> None:
        self._ckpt = checkpointer
        self.dataset, self.metric, self.mode = dataset, metric, mode
        self.best: float | None = None
        self.best_iter: int | None = None

    def before_train(self) -> None:
        """Also trust model_best.json: the final evaluation of a run comes after its last
        checkpoint, so a resumed run's state may not know the best that evaluation found."""
        path = os.path.join(self._ckpt.save_dir or "", "model_best.json")
        if not self._ckpt.save_dir or not os.path.isfile(path):
            return
        try:
            with open(path, encoding="utf-8") as f:
                saved = json.load(f)
        except (OSError, ValueError):
            return
        if saved.get("dataset") != self.dataset or saved.get("metric") != self.metric:
            return
        value = float(saved["value"])
        if self.best is None or (value > self.best if self.mode == "max" else value < self.best):
            self.best, self.best_iter = value, int(saved["iteration"])
            logger.info(
                "Best checkpoint so far (model_best.json): %s/%s = %.4f at iteration %d",
                self.dataset,
                self.metric,
                self.best,
                self.best_iter,
            )

    def state_dict(self) -> dict:
        if self.best is None:
            return {}
        return {
            "best": self.best,
            "iteration": self.best_iter,
            "dataset": self.dataset,
            "metric": self.metric,
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("dataset") != self.dataset or state.get("metric") != self.metric:
            logger.info(
                "Best checkpoint: the checkpoint tracked %s/%s, this run %s/%s: starting afresh",
                state.get("dataset"),
                state.get("metric"),
                self.dataset,
                self.metric,
            )
            return
        self.best = float(state["best"])
        self.best_iter = int(state["iteration"])
        logger.info(
            "Best checkpoint so far: %s/%s = %.4f at iteration %d",
            self.dataset,
            self.metric,
            self.best,
            self.best_iter,
        )

    def __call__(self, results: dict, iteration: int) -> None:
        if not comm.is_main_process():
            return
        value = results.get(self.dataset, {}).get(self.metric)
        if value is None or not math.isfinite(value):
            logger.warning(
                "Best checkpoint: %s/%s not in the evaluation results (%s)",
                self.dataset,
                self.metric,
                list(results),
            )
            return
        better = self.best is None or (
            value > self.best if self.mode == "max" else value < self.best
        )
        if better:
            logger.info(
                "New best %s/%s = %.4f at iteration %d (previous %s): saving model_best",
                self.dataset,
                self.metric,
                value,
                iteration,
                self.best,
            )
            self.best, self.best_iter = value, iteration
            self._ckpt.save("model_best", tag_last=False, iteration=iteration)
            dump_json_atomic(
                os.path.join(self._ckpt.save_dir, "model_best.json"),
                {
                    "iteration": iteration,
                    "dataset": self.dataset,
                    "metric": self.metric,
                    "value": value,
                },
            )


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
    """A tqdm bar over iterations with ETA and the smoothed total loss (main process, on a
    terminal only: redirected output gets the log lines alone, none glued to a bar)."""

    def before_train(self) -> None:
        self._bar = tqdm(
            total=self.trainer.max_iter,
            initial=self.trainer.start_iter,
            desc="train",
            dynamic_ncols=True,
            mininterval=1.0,
            disable=None if comm.is_main_process() else True,  # None: off when not a TTY
        )

    def after_step(self) -> None:
        self._bar.update(1)
        if (self.trainer.iter + 1) % 10 == 0:
            self._bar.set_postfix(loss=f"{self.trainer.storage.median('total_loss'):.4f}")

    def after_train(self) -> None:
        self._bar.close()
