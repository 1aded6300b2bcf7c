"""build_optimizer and build_lr_scheduler from SOLVER.* (or a named optimizer's section).

A run has one optimizer per name of the meta-architecture's ``optimizer_groups()``: "main"
reads ``cfg.SOLVER``; any other name ``n`` reads ``cfg.SOLVER.<N>`` (upper case), a section
with the same optimizer, schedule and clipping keys that the method's config adder creates
with :func:`add_optimizer_config`. ``SOLVER.MAX_ITER`` is shared by all of them.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from fvcore.common.config import CfgNode  # vps_d2's and Detectron2's CfgNode both are one
from fvcore.common.param_scheduler import CosineParamScheduler, MultiStepParamScheduler

from .lr_scheduler import (
    ConstantMultiplier,
    LRMultiplier,
    PolyLRWithConstantEnding,
    WarmupParamScheduler,
)

__all__ = [
    "OPTIMIZER_KEYS",
    "add_optimizer_config",
    "build_lr_scheduler",
    "build_optimizer",
    "get_param_groups",
    "solver_section",
]

#: The keys of ``cfg.SOLVER`` that a named optimizer's section repeats (its own optimizer,
#: learning-rate schedule and gradient clipping); the rest of SOLVER is shared.
OPTIMIZER_KEYS = (
    "OPTIMIZER",
    "LR_SCHEDULER_NAME",
    "BASE_LR",
    "POLY_LR_POWER",
    "POLY_LR_CONSTANT_ENDING",
    "BASE_LR_END",
    "MOMENTUM",
    "NESTEROV",
    "BETAS",
    "WEIGHT_DECAY",
    "WEIGHT_DECAY_NORM",
    "WEIGHT_DECAY_BIAS",
    "BIAS_LR_FACTOR",
    "BACKBONE_MULTIPLIER",
    "GAMMA",
    "STEPS",
    "WARMUP_FACTOR",
    "WARMUP_ITERS",
    "WARMUP_METHOD",
    "CLIP_GRADIENTS",
)

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
    only=None,
) -> list[dict[str, Any]]:
    """Param groups with per-parameter lr / weight decay, merged by equal values.

    * parameters of normalisation layers: ``weight_decay_norm`` (None = weight_decay);
    * biases: lr * ``bias_lr_factor`` and ``weight_decay_bias`` (None = weight_decay);
    * parameters under a child module named ``backbone``: lr * ``backbone_multiplier``;
    * ``only``: an iterable of parameters to keep (the others are left out).
    """
    keep = None if only is None else {id(p) for p in only}
    seen: set[int] = set()
    groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    for module_name, module in model.named_modules():
        is_norm = isinstance(module, _NORM_TYPES)
        in_backbone = module_name == "backbone" or module_name.startswith("backbone.")
        for pname, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen or (keep is not None and id(p) not in keep):
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


def add_optimizer_config(cfg: CfgNode, name: str, **overrides) -> CfgNode:
    """Create ``cfg.SOLVER.<NAME>``: the :data:`OPTIMIZER_KEYS` with SOLVER's defaults,
    then ``overrides`` (e.g. ``OPTIMIZER="AdamW", LR_SCHEDULER_NAME="WarmupConstantLR"``).

    For a method's config adder; idempotent. Returns the section.
    """
    key = name.upper()
    if key in cfg.SOLVER and isinstance(cfg.SOLVER[key], CfgNode):
        return cfg.SOLVER[key]
    if key in cfg.SOLVER:
        raise ValueError(f"add_optimizer_config: SOLVER.{key} already exists and is not a section")
    node = type(cfg)(
        {
            k: cfg.SOLVER[k].clone() if isinstance(cfg.SOLVER[k], CfgNode) else cfg.SOLVER[k]
            for k in OPTIMIZER_KEYS
        }
    )
    for k, v in overrides.items():
        if k not in OPTIMIZER_KEYS:
            raise KeyError(f"add_optimizer_config({name!r}): {k} is not one of {OPTIMIZER_KEYS}")
        node[k] = v
    cfg.SOLVER[key] = node
    return node


def solver_section(cfg, name: str = "main") -> tuple[CfgNode, str]:
    """``(section, its key path)`` of optimizer ``name``: ``cfg.SOLVER`` for "main", else
    ``cfg.SOLVER.<NAME>``. Raises a KeyError naming the missing section."""
    if name == "main":
        return cfg.SOLVER, "SOLVER"
    key = name.upper()
    node = cfg.SOLVER.get(key)
    if not isinstance(node, CfgNode):
        raise KeyError(
            f"Optimizer {name!r} needs the config section SOLVER.{key} (created by the method's "
            "config adder with vps_d2.solver.add_optimizer_config)"
        )
    return node, f"SOLVER.{key}"


def build_optimizer(
    cfg, model: torch.nn.Module, params=None, name: str = "main"
) -> torch.optim.Optimizer:
    """SGD / Adam / AdamW over :func:`get_param_groups` of ``model`` (``<section>.OPTIMIZER``).

    Args:
        params: the parameters of this optimizer (default: every trainable one of ``model``);
            per-parameter lr / weight decay still follow their module in ``model``.
        name: the optimizer's name ("main" reads SOLVER, others SOLVER.<NAME>).
    """
    s, where = solver_section(cfg, name)
    groups = get_param_groups(
        model,
        base_lr=s.BASE_LR,
        weight_decay=s.WEIGHT_DECAY,
        weight_decay_norm=s.WEIGHT_DECAY_NORM,
        weight_decay_bias=s.WEIGHT_DECAY_BIAS,
        bias_lr_factor=s.BIAS_LR_FACTOR,
        backbone_multiplier=s.BACKBONE_MULTIPLIER,
        only=params,
    )
    if not groups:
        raise ValueError(f"Optimizer {name!r} ({where}) has no trainable parameter")
    kind = s.OPTIMIZER.lower()
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=s.BASE_LR, momentum=s.MOMENTUM, nesterov=s.NESTEROV)
    if kind == "adam":
        return torch.optim.Adam(groups, lr=s.BASE_LR, betas=tuple(s.BETAS))
    if kind == "adamw":
        return torch.optim.AdamW(groups, lr=s.BASE_LR, betas=tuple(s.BETAS))
    raise ValueError(f"{where}.OPTIMIZER must be SGD, Adam or AdamW, got {s.OPTIMIZER!r}")


def build_lr_scheduler(cfg, optimizer: torch.optim.Optimizer, name: str = "main") -> LRMultiplier:
    """WarmupPolyLR / WarmupMultiStepLR / WarmupCosineLR / WarmupConstantLR
    (``<section>.LR_SCHEDULER_NAME``) over ``cfg.SOLVER.MAX_ITER`` iterations."""
    s, where = solver_section(cfg, name)
    max_iter = cfg.SOLVER.MAX_ITER
    kind = s.LR_SCHEDULER_NAME
    if max_iter <= 0:
        raise ValueError(f"SOLVER.MAX_ITER must be > 0, got {max_iter}")
    if kind == "WarmupPolyLR":
        sched = PolyLRWithConstantEnding(s.POLY_LR_POWER, s.POLY_LR_CONSTANT_ENDING)
    elif kind == "WarmupMultiStepLR":
        steps = [x for x in s.STEPS if x <= max_iter]
        if len(steps) != len(s.STEPS):
            logger.warning("%s.STEPS larger than SOLVER.MAX_ITER are ignored: %s", where, s.STEPS)
        sched = MultiStepParamScheduler(
            values=[s.GAMMA**k for k in range(len(steps) + 1)],
            milestones=steps,
            num_updates=max_iter,
        )
    elif kind == "WarmupCosineLR":
        sched = CosineParamScheduler(1.0, s.BASE_LR_END / s.BASE_LR if s.BASE_LR else 0.0)
    elif kind == "WarmupConstantLR":
        sched = ConstantMultiplier()
    else:
        raise ValueError(
            f"{where}.LR_SCHEDULER_NAME must be WarmupPolyLR, WarmupMultiStepLR, "
            f"WarmupCosineLR or WarmupConstantLR, got {kind!r}"
        )
    warmup_length = min(s.WARMUP_ITERS / max_iter, 1.0)
    if warmup_length > 0:
        sched = WarmupParamScheduler(sched, s.WARMUP_FACTOR, warmup_length, s.WARMUP_METHOD)
    return LRMultiplier(optimizer, multiplier=sched, max_iter=max_iter)
