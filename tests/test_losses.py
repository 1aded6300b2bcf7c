"""Shared losses against independent float64 NumPy computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vps_d2.modeling.losses import bce_loss, box_mean, dice_loss, iou_loss, structure_loss


def _inputs(seed=0, n=2, h=40, w=52):
    g = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(n, 1, h, w, generator=g)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    masks = torch.stack(
        [((yy - 12 - 6 * i) ** 2 + (xx - 20 - 9 * i) ** 2 < (9 + 2 * i) ** 2) for i in range(n)]
    )[:, None].float()
    return logits, masks


def _np_box_mean(m: np.ndarray, size: int) -> np.ndarray:
    """Zero-padded box mean, written as an explicit window sum (divides by size^2)."""
    r = size // 2
    h, w = m.shape
    pad = np.zeros((h + 2 * r, w + 2 * r))
    pad[r : r + h, r : r + w] = m
    out = np.empty((h, w))
    for y in range(h):
        for x in range(w):
            out[y, x] = pad[y : y + size, x : x + size].sum() / size**2
    return out


def _np_structure_loss(logits: np.ndarray, masks: np.ndarray) -> float:
    total = 0.0
    for z, m in zip(logits[:, 0].astype(np.float64), masks[:, 0].astype(np.float64)):
        weit = 1 + 5 * np.abs(_np_box_mean(m, 31) - m)
        bce = np.maximum(z, 0) - z * m + np.log1p(np.exp(-np.abs(z)))
        wbce = (weit * bce).sum() / weit.sum()
        p = 1 / (1 + np.exp(-z))
        inter = (p * m * weit).sum()
        union = ((p + m) * weit).sum()
        total += wbce + 1 - (inter + 1) / (union - inter + 1)
    return total / len(logits)


def test_box_mean_equals_avg_pool_and_explicit_sum():
    x = torch.rand(2, 3, 23, 37, dtype=torch.float64)
    got = box_mean(x, 31)
    assert got.shape == x.shape
    torch.testing.assert_close(got, F.avg_pool2d(x, 31, stride=1, padding=15))
    np.testing.assert_allclose(got[1, 2].numpy(), _np_box_mean(x[1, 2].numpy(), 31), atol=1e-12)
    with pytest.raises(ValueError, match="odd"):
        box_mean(x, 4)


def test_structure_loss_matches_numpy_and_is_weighted():
    logits, masks = _inputs()
    got = structure_loss(logits, masks).item()
    want = _np_structure_loss(logits.numpy(), masks.numpy())
    assert got == pytest.approx(want, rel=1e-5)
    # the pixel weights matter: the unweighted sum (public code's silent behaviour) differs
    unweighted = bce_loss(logits, masks).item() + iou_loss(logits, masks, smooth=1.0).item()
    assert abs(got - unweighted) > 1e-3
    # (N, H, W) input is accepted and gives the same value
    assert structure_loss(logits[:, 0], masks[:, 0]).item() == pytest.approx(got, rel=1e-6)


def test_structure_loss_gradient_and_perfect_prediction():
    logits, masks = _inputs(1)
    logits.requires_grad_(True)
    structure_loss(logits, masks).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    perfect = (masks * 2 - 1) * 30.0  # saturated logits on the right side
    assert structure_loss(perfect, masks).item() < 1e-6
    assert structure_loss(-perfect, masks).item() > 1.0


def test_bce_dice_iou_against_numpy():
    logits, masks = _inputs(2)
    z, m = logits.double().numpy()[:, 0], masks.double().numpy()[:, 0]
    p = 1 / (1 + np.exp(-z))
    bce = (np.maximum(z, 0) - z * m + np.log1p(np.exp(-np.abs(z)))).mean()
    inter = (p * m).sum((1, 2))
    dice = 1 - (2 * inter + 1) / (p.sum((1, 2)) + m.sum((1, 2)) + 1)
    iou = 1 - (inter + 1) / (p.sum((1, 2)) + m.sum((1, 2)) - inter + 1)
    assert bce_loss(logits, masks).item() == pytest.approx(bce, rel=1e-5)
    assert dice_loss(logits, masks).item() == pytest.approx(dice.mean(), rel=1e-5)
    assert iou_loss(logits, masks).item() == pytest.approx(iou.mean(), rel=1e-5)
