"""The training step: a replaceable object that runs one iteration (Detectron2's
SimpleTrainer.run_step, lifted out of the trainer so that a method can own it).

It lives below the engine, beside the optimizers: a method registers its step without
importing :mod:`vps_d2.engine` (which re-exports these names).

The trainer composes one :class:`TrainStep` (named by the meta-architecture's
``train_step`` attribute, or by ``SOLVER.TRAIN_STEP``) and an :class:`OptimizerSet` holding
the run's named optimizers, all set up through Lightning Fabric (devices, DDP, AMP). Per
iteration the trainer calls ``step(model, data, optim)`` with the Fabric-wrapped model and
logs what it returns: ``{optimizer name: {loss name: scalar tensor}}``.

* :class:`DefaultTrainStep`: ``losses = model(data)``; summed, one backward, clipping, one
  step of the "main" optimizer (what every single-optimizer method needs).
* A method with several optimizers (a GAN) registers its own step in
  :data:`TRAIN_STEP_REGISTRY` and calls :meth:`OptimizerSet.minimize` once per optimizer.
  Always call the *wrapped* ``model(...)`` (DDP's hooks run in its forward), passing a
  ``mode`` the meta-architecture's forward understands.

Isolation: :meth:`OptimizerSet.minimize` zeroes the gradients of its own group before its
backward, so gradients that another group's backward left on these parameters never reach
this optimizer's step; each optimizer only holds its own group's parameters.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from vps_d2.utils.registry import Registry

__all__ = [
    "TRAIN_STEP_REGISTRY",
    "DefaultTrainStep",
    "NonFiniteLossError",
    "OptimizerSet",
    "TrainStep",
    "build_train_step",
]

logger = logging.getLogger(__name__)

TRAIN_STEP_REGISTRY = Registry("TRAIN_STEP")
TRAIN_STEP_REGISTRY.__doc__ = """
Registry for training steps: ``cls(cfg)``, called as ``step(model, data, optim)`` ->
``{optimizer name: {loss name: tensor}}`` (see vps_d2.solver.train_step).
"""


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or Inf; the message names the iteration and the term."""


class OptimizerSet:
    """The named optimizers of a run (Fabric-wrapped) and their clipping settings.

    Args:
        fabric: the run's Fabric (backward with AMP scaling, gradient clipping); any object
            with Fabric's ``backward(loss)`` and ``clip_gradients(module, optimizer, ...)``
            works (Detectron2's engine uses a plain-PyTorch one, vps_d2.d2.trainer).
        model: the Fabric-wrapped model (for clipping).
        optimizers: ``{name: Fabric-wrapped optimizer}``; "main" first.
        clip_cfgs: ``{name: CLIP_GRADIENTS node}`` of each optimizer's config section.
        check_finite: raise :class:`NonFiniteLossError` on a NaN/Inf loss.
    """

    def __init__(
        self,
        fabric,
        model: torch.nn.Module,
        optimizers: dict[str, torch.optim.Optimizer],
        clip_cfgs: dict,
        check_finite: bool = True,
    ) -> None:
        self.fabric = fabric
        self.model = model
        self.optimizers = dict(optimizers)
        self.clip_cfgs = dict(clip_cfgs)
        self.check_finite_losses = bool(check_finite)
        #: The current iteration (set by the trainer; used in error messages).
        self.iteration = 0
        #: Called with the optimizer's name after each backward, before clipping and the step
        #: (the trainer runs its hooks' ``after_backward`` there).
        self.after_backward: Callable[[str], None] | None = None

    @property
    def names(self) -> list[str]:
        return list(self.optimizers)

    def __getitem__(self, name: str) -> torch.optim.Optimizer:
        try:
            return self.optimizers[name]
        except KeyError as e:
            raise KeyError(f"No optimizer named {name!r}; the run has {self.names}") from e

    def zero_grad(self, name: str) -> None:
        self[name].zero_grad(set_to_none=True)

    def backward(self, loss: torch.Tensor, name: str = "main") -> None:
        """Back-propagate ``loss`` through Fabric (AMP-scaled when enabled)."""
        self.fabric.backward(loss)
        if self.after_backward is not None:
            self.after_backward(name)

    def clip(self, name: str) -> None:
        """Clip the gradients of optimizer ``name`` as its CLIP_GRADIENTS section says."""
        c = self.clip_cfgs.get(name)
        if c is None or not c.ENABLED:
            return
        opt = self[name]
        kind = c.CLIP_TYPE
        if kind == "value":
            self.fabric.clip_gradients(self.model, opt, clip_val=c.CLIP_VALUE)
        elif kind == "full_model":
            self.fabric.clip_gradients(
                self.model,
                opt,
                max_norm=c.CLIP_VALUE,
                norm_type=c.NORM_TYPE,
                error_if_nonfinite=False,
            )
        elif kind == "norm":
            # Let Fabric unscale AMP gradients (an infinite max_norm clips nothing), then
            # clip each parameter's gradient norm on its own.
            self.fabric.clip_gradients(
                self.model, opt, max_norm=float("inf"), error_if_nonfinite=False
            )
            for group in opt.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        torch.nn.utils.clip_grad_norm_(p, c.CLIP_VALUE, c.NORM_TYPE)
        else:
            raise ValueError(
                f"CLIP_GRADIENTS.CLIP_TYPE of optimizer {name!r} must be value, norm or "
                f"full_model, got {kind!r}"
            )

    def step(self, name: str) -> None:
        """Clip, then step optimizer ``name``."""
        self.clip(name)
        self[name].step()

    def check_finite(self, loss_dict: dict[str, torch.Tensor], name: str = "main") -> None:
        """Raise NonFiniteLossError naming the iteration, the optimizer and the bad terms."""
        if not self.check_finite_losses:
            return
        bad = {k: float(v.detach()) for k, v in loss_dict.items() if not torch.isfinite(v).all()}
        if bad:
            which = "" if name == "main" else f" (optimizer {name!r})"
            raise NonFiniteLossError(
                f"Loss became infinite or NaN at iteration {self.iteration}{which}: "
                + ", ".join(f"{k} = {v}" for k, v in bad.items())
                + ". Training stopped; lower the learning rate, enable gradient clipping or "
                "check the data."
            )

    def minimize(self, name: str, loss_dict: dict[str, torch.Tensor]) -> torch.Tensor:
        """Check, zero this group's gradients, backward the sum, clip, step; returns the sum."""
        if not isinstance(loss_dict, dict) or not loss_dict:
            raise TypeError(f"minimize({name!r}) needs a non-empty dict of losses")
        self.check_finite(loss_dict, name)
        total = sum(loss_dict.values())
        self.zero_grad(name)
        self.backward(total, name)
        self.step(name)
        return total


class TrainStep:
    """One training iteration. Subclass, register in TRAIN_STEP_REGISTRY, implement __call__.

    ``__call__(model, data, optim)``: ``model`` is the Fabric-wrapped model in train mode,
    ``data`` the batch (a list of clip dicts), ``optim`` the :class:`OptimizerSet`.
    Returns ``{optimizer name: {loss name: scalar tensor}}`` for logging.
    """

    def __init__(self, cfg=None) -> None:
        self.cfg = cfg

    def __call__(self, model, data, optim: OptimizerSet) -> dict[str, dict[str, torch.Tensor]]:
        raise NotImplementedError


@TRAIN_STEP_REGISTRY.register()
class DefaultTrainStep(TrainStep):
    """``model(data)`` -> named losses, summed, minimised by the "main" optimizer."""

    def __call__(self, model, data, optim: OptimizerSet) -> dict[str, dict[str, torch.Tensor]]:
        loss_dict = model(data)
        if not isinstance(loss_dict, dict) or not loss_dict:
            raise TypeError(
                f"{type(getattr(model, 'module', model)).__name__} must return a non-empty dict "
                "of losses in training mode"
            )
        optim.minimize("main", loss_dict)
        return {"main": loss_dict}


def build_train_step(cfg, model) -> TrainStep:
    """``SOLVER.TRAIN_STEP`` if set, else the meta-architecture's ``train_step``."""
    name = cfg.SOLVER.TRAIN_STEP or getattr(model, "train_step", "DefaultTrainStep")
    where = "SOLVER.TRAIN_STEP" if cfg.SOLVER.TRAIN_STEP else f"{type(model).__name__}.train_step"
    return TRAIN_STEP_REGISTRY.get_for(name, where)(cfg)
