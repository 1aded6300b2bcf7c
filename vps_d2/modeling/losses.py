"""Segmentation losses shared by all methods. Inputs are logits; masks are 0/1 floats.

Shapes: ``logits`` and ``masks`` are (N, 1, H, W) (or (N, H, W)); losses return a scalar.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["bce_loss", "box_mean", "dice_loss", "iou_loss", "structure_loss"]


def _as_4d(x: torch.Tensor) -> torch.Tensor:
    return x[:, None] if x.dim() == 3 else x


def bce_loss(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy over pixels."""
    return F.binary_cross_entropy_with_logits(_as_4d(logits).float(), _as_4d(masks).float())


def dice_loss(logits: torch.Tensor, masks: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """1 - soft Dice per sample, averaged: 1 - (2|P.M| + s) / (|P| + |M| + s)."""
    p = _as_4d(logits).float().sigmoid().flatten(1)
    m = _as_4d(masks).float().flatten(1)
    dice = (2 * (p * m).sum(1) + smooth) / (p.sum(1) + m.sum(1) + smooth)
    return (1 - dice).mean()


def iou_loss(logits: torch.Tensor, masks: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """1 - soft IoU per sample, averaged."""
    p = _as_4d(logits).float().sigmoid().flatten(1)
    m = _as_4d(masks).float().flatten(1)
    inter = (p * m).sum(1)
    return (1 - (inter + smooth) / (p.sum(1) + m.sum(1) - inter + smooth)).mean()


def box_mean(x: torch.Tensor, size: int) -> torch.Tensor:
    """``F.avg_pool2d(x, size, stride=1, padding=size // 2)`` (zero padding counted), computed
    as two 1-D box filters: the same values (to rounding) at O(size) instead of O(size^2)
    cost per pixel. ``x``: (N, C, H, W), ``size`` odd; returns (N, C, H, W)."""
    if size % 2 != 1:
        raise ValueError(f"box_mean: size must be odd, got {size}")
    r = size // 2
    x = F.avg_pool2d(x, (size, 1), stride=1, padding=(r, 0))
    return F.avg_pool2d(x, (1, size), stride=1, padding=(0, r))


def structure_loss(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """F3Net structure loss: weighted BCE + weighted IoU, weight 1 + 5|avgpool31(m) - m|.

    The pixel weights really multiply the per-pixel BCE (``reduction="none"``); the
    public SALI/F3Net code passes ``reduce="none"``, which silently averages first.
    """
    logits, masks = _as_4d(logits).float(), _as_4d(masks).float()
    weit = 1 + 5 * torch.abs(box_mean(masks, 31) - masks)
    wbce = F.binary_cross_entropy_with_logits(logits, masks, reduction="none")
    wbce = (weit * wbce).sum(dim=(2, 3)) / weit.sum(dim=(2, 3))
    p = logits.sigmoid()
    inter = (p * masks * weit).sum(dim=(2, 3))
    union = ((p + masks) * weit).sum(dim=(2, 3))
    wiou = 1 - (inter + 1) / (union - inter + 1)
    return (wbce + wiou).mean()
