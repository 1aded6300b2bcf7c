"""LR schedules as fvcore ParamSchedulers driven by a torch LR scheduler.

``WarmupParamScheduler`` puts a linear/constant warmup in front of any ParamScheduler;
``LRMultiplier`` multiplies every param group's initial lr by ``scheduler(iter / max_iter)``
at each iteration. This is Detectron2's design, on fvcore's schedulers.
"""

from __future__ import annotations

from fvcore.common.param_scheduler import (
    CompositeParamScheduler,
    ConstantParamScheduler,
    LinearParamScheduler,
    ParamScheduler,
    PolynomialDecayParamScheduler,
)
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

__all__ = ["ConstantMultiplier", "LRMultiplier", "PolyLRWithConstantEnding", "WarmupParamScheduler"]


class ConstantMultiplier(ParamScheduler):
    """1.0 over the whole run, ``where`` = 1.0 included (fvcore's ConstantParamScheduler
    rejects it, and the LR scheduler evaluates it after the last iteration)."""

    def __call__(self, where: float) -> float:
        if not 0.0 <= where <= 1.0:
            raise RuntimeError(f"where must be in [0, 1]: got {where}")
        return 1.0


class PolyLRWithConstantEnding(ParamScheduler):
    """``(1 - where) ** power`` floored at ``constant_ending`` when that is > 0 (DeepLab)."""

    def __init__(self, power: float, constant_ending: float = 0.0) -> None:
        self._poly = PolynomialDecayParamScheduler(base_value=1.0, power=power)
        self.constant_ending = float(constant_ending)

    def __call__(self, where: float) -> float:
        value = self._poly(where)
        if self.constant_ending > 0 and value < self.constant_ending:
            return self.constant_ending
        return value


class WarmupParamScheduler(CompositeParamScheduler):
    """Warmup over the first ``warmup_length`` fraction of training, then ``scheduler``.

    The warmup goes from ``warmup_factor * scheduler(0)`` to ``scheduler(warmup_length)``
    (linear) or stays at ``warmup_factor * scheduler(0)`` (constant); after it the values
    are exactly ``scheduler(where)``.
    """

    def __init__(
        self,
        scheduler: ParamScheduler,
        warmup_factor: float,
        warmup_length: float,
        warmup_method: str = "linear",
    ) -> None:
        end_value = scheduler(warmup_length)
        start_value = warmup_factor * scheduler(0.0)
        if warmup_method == "constant":
            warmup: ParamScheduler = ConstantParamScheduler(start_value)
        elif warmup_method == "linear":
            warmup = LinearParamScheduler(start_value, end_value)
        else:
            raise ValueError(
                f"SOLVER.WARMUP_METHOD must be 'linear' or 'constant', got {warmup_method!r}"
            )
        super().__init__(
            [warmup, scheduler],
            interval_scaling=["rescaled", "fixed"],
            lengths=[warmup_length, 1 - warmup_length],
        )


class LRMultiplier(LRScheduler):
    """torch LR scheduler: lr of group g at iteration i = base_lr_g * multiplier(i / max_iter).

    Call ``step()`` once per iteration, after ``optimizer.step()``.
    """

    def __init__(
        self, optimizer: Optimizer, multiplier: ParamScheduler, max_iter: int, last_iter: int = -1
    ) -> None:
        if not isinstance(multiplier, ParamScheduler):
            raise TypeError(f"multiplier must be an fvcore ParamScheduler, got {type(multiplier)}")
        self._multiplier = multiplier
        self._max_iter = int(max_iter)
        super().__init__(optimizer, last_epoch=last_iter)

    def state_dict(self) -> dict:
        # The multiplier is rebuilt from the config; only the position is state.
        return {"base_lrs": self.base_lrs, "last_epoch": self.last_epoch}

    def get_lr(self) -> list[float]:
        where = min(self.last_epoch / self._max_iter, 1.0)
        m = self._multiplier(where)
        return [base_lr * m for base_lr in self.base_lrs]
