"""Iteration-based training loop with hooks (Detectron2's TrainerBase / HookBase)."""

from __future__ import annotations

import logging
import time
import weakref

import torch

from vps_d2.utils.events import EventStorage, get_event_storage

__all__ = ["HookBase", "TrainerBase", "NonFiniteLossError"]

logger = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or Inf; the message names the iteration and the term."""


class HookBase:
    """before_train / before_step / after_step / after_train; ``self.trainer`` is set."""

    trainer: TrainerBase

    def before_train(self) -> None: ...

    def after_train(self) -> None: ...

    def before_step(self) -> None: ...

    def after_step(self) -> None: ...

    def state_dict(self) -> dict:
        return {}


class TrainerBase:
    """Runs ``run_step`` from ``start_iter`` to ``max_iter`` calling the hooks around it."""

    def __init__(self) -> None:
        self._hooks: list[HookBase] = []
        self.iter = 0
        self.start_iter = 0
        self.max_iter = 0
        self.storage: EventStorage

    def register_hooks(self, hooks: list[HookBase | None]) -> None:
        for h in hooks:
            if h is None:
                continue
            h.trainer = weakref.proxy(self)  # type: ignore[assignment]
            self._hooks.append(h)

    def train(self, start_iter: int, max_iter: int) -> None:
        logger.info("Starting training from iteration %d", start_iter)
        self.iter = self.start_iter = start_iter
        self.max_iter = max_iter
        with EventStorage(start_iter) as self.storage:
            try:
                for h in self._hooks:
                    h.before_train()
                for self.iter in range(start_iter, max_iter):
                    self.storage.iter = self.iter
                    for h in self._hooks:
                        h.before_step()
                    self.run_step()
                    for h in self._hooks:
                        h.after_step()
                self.iter += 1  # after the loop, iter == max_iter
            finally:
                for h in self._hooks:
                    h.after_train()

    def run_step(self) -> None:
        raise NotImplementedError


def check_finite_losses(loss_dict: dict[str, torch.Tensor], iteration: int) -> None:
    """Raise NonFiniteLossError naming the iteration and every non-finite loss term."""
    bad = {k: float(v.detach()) for k, v in loss_dict.items() if not torch.isfinite(v).all()}
    if bad:
        raise NonFiniteLossError(
            f"Loss became infinite or NaN at iteration {iteration}: "
            + ", ".join(f"{k} = {v}" for k, v in bad.items())
            + ". Training stopped; lower SOLVER.BASE_LR, enable SOLVER.CLIP_GRADIENTS or check "
            "the data. The last good checkpoint is in OUTPUT_DIR/last_checkpoint."
        )


def put_step_metrics(loss_dict: dict[str, torch.Tensor], data_time: float) -> None:
    storage = get_event_storage()
    values = {k: float(v.detach()) for k, v in loss_dict.items()}
    storage.put_scalar("data_time", data_time)
    storage.put_scalar("total_loss", sum(values.values()))
    storage.put_scalars(**values)


def now() -> float:
    return time.perf_counter()
