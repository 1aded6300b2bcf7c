"""build_optimizer and build_lr_scheduler from SOLVER.*."""

from __future__ import annotations

import logging
from typing import Any

import torch
from fvcore.common.param_scheduler import CosineParamScheduler, MultiStepParamScheduler

from .lr_scheduler import LRMultiplier, PolyLRWithConstantEnding, WarmupParamScheduler

__all__ = ["build_lr_scheduler", "build_optimizer", "get_param_groups"]

logger = logging.getLogger(__name__)

_NORM_TYPES = (
    torch.nn.modules.batchnorm._NormBase,
    torch.nn.GroupNorm,
    torch.nn.LayerNorm,
    torch.nn.LocalResponseNorm,
)


def get_param_groups(
    model: torch.nn.Module,
    *,
    base_lr: float,
    weight_decay: float,
    weight_decay_norm: float | None = None,
    weight_decay_bias: float | None = None,
    bias_lr_factor: float = 1.0,
    backbone_multiplier: float = 1.0,
) -> list[dict[str, Any]]:
    """Param groups with per-parameter lr / weight decay, merged by equal values.

    * parameters of normalisation layers: ``weight_decay_norm`` (None = weight_decay);
    * biases: lr * ``bias_lr_factor`` and ``weight_decay_bias`` (None = weight_decay);
    * parameters under a child module named ``backbone``: lr * ``backbone_multiplier``.
    """
    seen: set[int] = set()
    groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    for module_name, module in model.named_modules():
        is_norm = isinstance(module, _NORM_TYPES)
        in_backbone = module_name == "backbone" or module_name.startswith("backbone.")
        for pname, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            lr, wd = base_lr, weight_decay
            if in_backbone:
                lr *= backbone_multiplier
            if is_norm and weight_decay_norm is not None:
                wd = weight_decay_norm
            elif pname == "bias":
                lr *= bias_lr_factor
                if weight_decay_bias is not None:
                    wd = weight_decay_bias
            groups.setdefault((lr, wd), []).append(p)
    return [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]


def build_optimizer(cfg, model: torch.nn.Module) -> torch.optim.Optimizer:
    """SGD / Adam / AdamW over :func:`get_param_groups` (SOLVER.OPTIMIZER)."""
    s = cfg.SOLVER
    groups = get_param_groups(
        model,
        base_lr=s.BASE_LR,
        weight_decay=s.WEIGHT_DECAY,
        weight_decay_norm=s.WEIGHT_DECAY_NORM,
        weight_decay_bias=s.WEIGHT_DECAY_BIAS,
        bias_lr_factor=s.BIAS_LR_FACTOR,
        backbone_multiplier=s.BACKBONE_MULTIPLIER,
    )
    if not groups:
        raise ValueError("The model has no trainable parameter")
    name = s.OPTIMIZER.lower()
    if name == "sgd":
        return torch.optim.SGD(groups, lr=s.BASE_LR, momentum=s.MOMENTUM, nesterov=s.NESTEROV)
    if name == "adam":
        return torch.optim.Adam(groups, lr=s.BASE_LR, betas=tuple(s.BETAS))
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=s.BASE_LR, betas=tuple(s.BETAS))
    raise ValueError(f"SOLVER.OPTIMIZER must be SGD, Adam or AdamW, got {s.OPTIMIZER!r}")


def build_lr_scheduler(cfg, optimizer: torch.optim.Optimizer) -> LRMultiplier:
    """WarmupPolyLR / WarmupMultiStepLR / WarmupCosineLR (SOLVER.LR_SCHEDULER_NAME)."""
    s = cfg.SOLVER
    name = s.LR_SCHEDULER_NAME
    if s.MAX_ITER <= 0:
        raise ValueError(f"SOLVER.MAX_ITER must be > 0, got {s.MAX_ITER}")
    if name == "WarmupPolyLR":
        sched = PolyLRWithConstantEnding(s.POLY_LR_POWER, s.POLY_LR_CONSTANT_ENDING)
    elif name == "WarmupMultiStepLR":
        steps = [x for x in s.STEPS if x <= s.MAX_ITER]
        if len(steps) != len(s.STEPS):
            logger.warning("SOLVER.STEPS larger than SOLVER.MAX_ITER are ignored: %s", s.STEPS)
        sched = MultiStepParamScheduler(
            values=[s.GAMMA**k for k in range(len(steps) + 1)],
            milestones=steps,
            num_updates=s.MAX_ITER,
        )
    elif name == "WarmupCosineLR":
        sched = CosineParamScheduler(1.0, s.BASE_LR_END / s.BASE_LR if s.BASE_LR else 0.0)
    else:
        raise ValueError(
            "SOLVER.LR_SCHEDULER_NAME must be WarmupPolyLR, WarmupMultiStepLR or "
            f"WarmupCosineLR, got {name!r}"
        )
    warmup_length = min(s.WARMUP_ITERS / s.MAX_ITER, 1.0)
    if warmup_length > 0:
        sched = WarmupParamScheduler(sched, s.WARMUP_FACTOR, warmup_length, s.WARMUP_METHOD)
    return LRMultiplier(optimizer, multiplier=sched, max_iter=s.MAX_ITER)
