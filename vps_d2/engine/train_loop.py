"""Iteration-based training loop with hooks (Detectron2's TrainerBase / HookBase).

The trainer's state (iteration and every hook's ``state_dict()``, e.g. the best
checkpoint's value) is itself a checkpointable (``"trainer"`` in a checkpoint), so
``--resume`` restores it, as Detectron2's ``TrainerBase.state_dict`` does.
"""

from __future__ import annotations

import logging
import time
import weakref

import torch

from vps_d2.solver.train_step import NonFiniteLossError
from vps_d2.utils.events import EventStorage, get_event_storage

__all__ = ["HookBase", "NonFiniteLossError", "TrainerBase"]

logger = logging.getLogger(__name__)


class HookBase:
    """before_train / before_step / after_backward / after_step / after_train.

    ``self.trainer`` is set when registered. A hook with state returns it from
    ``state_dict()`` (saved in checkpoints under the hook's class name) and restores it in
    ``load_state_dict()``.
    """

    trainer: TrainerBase

    def before_train(self) -> None: ...

    def after_train(self) -> None: ...

    def before_step(self) -> None: ...

    def after_backward(self) -> None: ...

    def after_step(self) -> None: ...

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None: ...


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

    def after_backward(self) -> None:
        for h in self._hooks:
            h.after_backward()

    def state_dict(self) -> dict:
        """``{"iteration", "hooks": {hook class name: state}}`` (hooks with state only)."""
        hooks_state: dict[str, dict] = {}
        for h in self._hooks:
            sd = h.state_dict()
            if sd:
                hooks_state.setdefault(type(h).__qualname__, sd)
        ret: dict = {"iteration": self.iter}
        if hooks_state:
            ret["hooks"] = hooks_state
        return ret

    def load_state_dict(self, state: dict) -> None:
        self.iter = int(state.get("iteration", self.iter))
        for key, value in state.get("hooks", {}).items():
            for h in self._hooks:
                if type(h).__qualname__ == key:
                    h.load_state_dict(value)
                    break
            else:
                logger.warning(
                    "Checkpoint holds the state of hook %r, which this run does not have: ignored",
                    key,
                )


def put_step_metrics(losses: dict[str, dict[str, torch.Tensor]], data_time: float) -> None:
    """Log the losses of every optimizer: the "main" ones under their own names plus
    ``total_loss``; another optimizer's as ``<name>/<loss>`` plus ``<name>/total_loss``."""
    storage = get_event_storage()
    storage.put_scalar("data_time", data_time)
    for opt_name, loss_dict in losses.items():
        values = {k: float(v.detach()) for k, v in loss_dict.items()}
        prefix = "" if opt_name == "main" else f"{opt_name}/"
        storage.put_scalar(f"{prefix}total_loss", sum(values.values()))
        for k, v in values.items():
            storage.put_scalar(f"{prefix}{k}", v)


def now() -> float:
    return time.perf_counter()
