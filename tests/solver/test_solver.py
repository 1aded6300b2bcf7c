"""Optimizer param groups and LR schedules, checked against closed-form values."""

import math

import pytest
import torch

from vps_d2.config import get_cfg
from vps_d2.solver import build_lr_scheduler, build_optimizer


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
        self.head = torch.nn.Conv2d(4, 1, 1)


def _lrs(cfg, n):
    model = torch.nn.Linear(2, 2)
    opt = build_optimizer(cfg, model)
    sched = build_lr_scheduler(cfg, opt)
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def _cfg(**solver):
    cfg = get_cfg()
    cfg.SOLVER.BASE_LR = 0.1
    cfg.SOLVER.MAX_ITER = 100
    for k, v in solver.items():
        cfg.SOLVER[k] = v
    return cfg


def test_poly_without_warmup():
    lrs = _lrs(_cfg(WARMUP_ITERS=0, POLY_LR_POWER=0.9), 100)
    for i in (0, 1, 37, 99):
        assert lrs[i] == pytest.approx(0.1 * (1 - i / 100) ** 0.9, rel=1e-12)


def test_poly_with_linear_warmup_and_constant_ending():
    cfg = _cfg(WARMUP_ITERS=10, WARMUP_FACTOR=0.01, POLY_LR_CONSTANT_ENDING=0.2)
    lrs = _lrs(cfg, 100)
    end_of_warmup = (1 - 10 / 100) ** 0.9
    assert lrs[0] == pytest.approx(0.1 * 0.01, rel=1e-12)
    # linear from 0.01 * poly(0) to poly(0.1) over the first 10 iterations
    assert lrs[5] == pytest.approx(0.1 * (0.01 + (end_of_warmup - 0.01) * 0.5), rel=1e-12)
    assert lrs[20] == pytest.approx(0.1 * (1 - 0.2) ** 0.9, rel=1e-12)
    # floor: (1 - i/100)^0.9 < 0.2 for i >= 84
    assert lrs[90] == pytest.approx(0.1 * 0.2, rel=1e-12)
    assert lrs[80] == pytest.approx(0.1 * 0.2**0.9, rel=1e-12)


def test_multistep_and_cosine():
    lrs = _lrs(_cfg(LR_SCHEDULER_NAME="WarmupMultiStepLR", STEPS=(30, 60), GAMMA=0.5), 100)
    assert lrs[29] == pytest.approx(0.1) and lrs[30] == pytest.approx(0.05)
    assert lrs[60] == pytest.approx(0.025)
    lrs = _lrs(_cfg(LR_SCHEDULER_NAME="WarmupCosineLR", BASE_LR_END=0.0), 100)
    for i in (0, 25, 50, 99):
        assert lrs[i] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * i / 100)), abs=1e-12)


def test_constant_warmup():
    lrs = _lrs(_cfg(WARMUP_ITERS=10, WARMUP_FACTOR=0.1, WARMUP_METHOD="constant"), 12)
    assert lrs[3] == pytest.approx(0.01) and lrs[11] == pytest.approx(0.1 * 0.89**0.9)


def test_param_groups_multiplier_and_norm_decay():
    cfg = _cfg(
        BACKBONE_MULTIPLIER=0.1, WEIGHT_DECAY=0.05, WEIGHT_DECAY_NORM=0.0, WEIGHT_DECAY_BIAS=0.0
    )
    net = _Net()
    opt = build_optimizer(cfg, net)
    by_param = {id(p): g for g in opt.param_groups for p in g["params"]}
    assert by_param[id(net.backbone[0].weight)]["lr"] == pytest.approx(0.01)
    assert by_param[id(net.backbone[0].weight)]["weight_decay"] == 0.05
    assert by_param[id(net.backbone[1].weight)]["weight_decay"] == 0.0
    assert by_param[id(net.head.bias)]["weight_decay"] == 0.0
    assert by_param[id(net.head.weight)]["lr"] == pytest.approx(0.1)
    assert isinstance(opt, torch.optim.AdamW)


@pytest.mark.parametrize(
    "key,value", [("OPTIMIZER", "Lion"), ("LR_SCHEDULER_NAME", "Poly"), ("WARMUP_METHOD", "exp")]
)
def test_bad_names_raise(key, value):
    cfg = _cfg(WARMUP_ITERS=5)
    cfg.SOLVER[key] = value
    with pytest.raises(ValueError, match=key):
        opt = build_optimizer(cfg, torch.nn.Linear(2, 2))
        build_lr_scheduler(cfg, opt)


def test_named_optimizer_section_has_its_own_settings():
    from vps_d2.solver import OPTIMIZER_KEYS, add_optimizer_config, solver_section

    cfg = get_cfg()
    cfg.SOLVER.MAX_ITER = 10
    node = add_optimizer_config(
        cfg,
        "critic",
        OPTIMIZER="SGD",
        BASE_LR=0.5,
        LR_SCHEDULER_NAME="WarmupConstantLR",
        WARMUP_ITERS=4,
        WARMUP_FACTOR=0.5,
    )
    assert set(node) == set(OPTIMIZER_KEYS) and cfg.SOLVER.CRITIC is node
    assert add_optimizer_config(cfg, "critic") is node  # idempotent
    model = _Net()
    heads = list(model.head.parameters())
    opt = build_optimizer(cfg, model, params=heads, name="critic")
    assert isinstance(opt, torch.optim.SGD)
    assert {id(p) for g in opt.param_groups for p in g["params"]} == {id(p) for p in heads}
    sched = build_lr_scheduler(cfg, opt, name="critic")
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    # linear warmup from 0.5 * 0.5 to 0.5 over 4 of 10 iterations, then constant
    expected = [0.5 * (0.5 + 0.5 * min(i / 4, 1.0)) for i in range(10)]
    assert lrs == pytest.approx(expected)
    with pytest.raises(KeyError, match="SOLVER.OTHER"):
        solver_section(cfg, "other")
    cfg.SOLVER.CRITIC.OPTIMIZER = "Lion"
    with pytest.raises(ValueError, match="SOLVER.CRITIC.OPTIMIZER"):
        build_optimizer(cfg, model, params=heads, name="critic")
    with pytest.raises(KeyError, match="NOT_A_KEY"):
        add_optimizer_config(cfg, "x", NOT_A_KEY=1)
