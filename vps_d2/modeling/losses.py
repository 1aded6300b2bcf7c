"""Losses shared by all methods. Every loss returns an unweighted scalar.

* Segmentation (:func:`bce_loss`, :func:`dice_loss`, :func:`iou_loss`,
  :func:`structure_loss`): ``logits`` and ``masks`` (0/1 floats) are (N, 1, H, W) or
  (N, H, W).
* Classification :func:`cross_entropy_loss`, regression :func:`mse_loss`, boxes
  :func:`box_l1_loss` and :func:`giou_loss` (normalised (cx, cy, w, h) boxes), adversarial
  :func:`adversarial_d_loss` / :func:`adversarial_g_loss` (discriminator logits).

The masked losses (``valid`` / ``ignore_index``) average over the valid entries only; when
nothing is valid they return a zero that is still a function of the prediction (so
``backward()`` works and every parameter receives a (zero) gradient, as DDP expects).
Invalid entries are replaced by harmless values before any arithmetic, so they never
contribute, not even NaN or inf, to the loss or to the gradient (which is exactly 0 there).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import box_convert, generalized_box_iou_loss

__all__ = [
    "adversarial_d_loss",
    "adversarial_g_loss",
    "bce_loss",
    "box_l1_loss",
    "box_mean",
    "cross_entropy_loss",
    "dice_loss",
    "giou_loss",
    "iou_loss",
    "mse_loss",
    "structure_loss",
]


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


# ---------------------------------------------------------------------------------------------
# classification, regression, boxes, adversarial


def _masked_mean(values: torch.Tensor, valid: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """Sum of ``values`` where ``valid`` (same shape) divided by ``count`` (0 -> the zero sum,
    still a function of ``values``). No host sync."""
    total = torch.where(valid, values, torch.zeros_like(values)).sum()
    return torch.where(count > 0, total / count.clamp(min=1), total)


def _where_valid(valid: torch.Tensor, x: torch.Tensor, fill: float | torch.Tensor) -> torch.Tensor:
    """``x`` with the rows of invalid samples replaced by ``fill`` (valid: (N,), x: (N, ...)):
    the backward of ``torch.where`` gives those rows an exact 0 gradient."""
    mask = valid.view(-1, *([1] * (x.dim() - 1)))
    return torch.where(mask, x, torch.as_tensor(fill, dtype=x.dtype, device=x.device))


def _check_valid(name: str, valid: torch.Tensor | None, n: int, device) -> torch.Tensor:
    if valid is None:
        return torch.ones(n, dtype=torch.bool, device=device)
    if valid.dtype != torch.bool or valid.shape != (n,):
        raise ValueError(
            f"{name}: valid must be a bool tensor of shape ({n},), got "
            f"{valid.dtype} {tuple(valid.shape)}"
        )
    return valid.to(device)


def cross_entropy_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    ignore_index: int = -1,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Softmax cross-entropy averaged over the samples whose target is not ``ignore_index``.

    Args:
        logits: (N, C) float.
        targets: (N,) long class indices in [0, C), or ``ignore_index``.
        label_smoothing: as ``F.cross_entropy``.
    Returns:
        scalar; a graph-connected 0 when every target is ignored.
    """
    if logits.dim() != 2 or targets.shape != logits.shape[:1] or targets.is_floating_point():
        raise ValueError(
            f"cross_entropy_loss: need logits (N, C) and integer targets (N,), got "
            f"{tuple(logits.shape)} and {targets.dtype} {tuple(targets.shape)}"
        )
    targets = targets.long()
    valid = targets != ignore_index
    logits = _where_valid(valid, logits.float(), 0.0)
    # N, 0 where ignored
    per = F.cross_entropy(
        logits,
        targets,
        ignore_index=ignore_index,
        reduction="none",
        label_smoothing=label_smoothing,
    )
    return _masked_mean(per, valid, valid.sum())


def mse_loss(
    pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean squared error over the elements of the valid samples.

    Args:
        pred, target: (N, ...) same shape.
        valid: optional (N,) bool; a sample's elements count only where True.
    Returns:
        scalar: sum over valid samples and their elements of (pred - target)^2, divided by
        the number of those elements; a graph-connected 0 when no sample is valid.
    """
    if pred.shape != target.shape or pred.dim() < 1:
        raise ValueError(
            f"mse_loss: pred {tuple(pred.shape)} and target {tuple(target.shape)} "
            "must have the same shape (N, ...)"
        )
    valid = _check_valid("mse_loss", valid, pred.shape[0], pred.device)
    pred, target = _where_valid(valid, pred.float(), 0.0), _where_valid(valid, target.float(), 0.0)
    sq = (pred - target) ** 2  # N, ...
    mask = valid.view(-1, *([1] * (pred.dim() - 1))).expand_as(sq)
    return _masked_mean(sq, mask, mask.sum())


def _valid_boxes(
    name: str, pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Check (N, 4) boxes; return float pred and target with the invalid rows set to the
    unit box (0.5, 0.5, 1, 1), and valid (N,) bool."""
    if pred.dim() != 2 or pred.shape[1] != 4 or pred.shape != target.shape:
        raise ValueError(
            f"{name}: need pred and target boxes (N, 4) (cx, cy, w, h), got "
            f"{tuple(pred.shape)} and {tuple(target.shape)}"
        )
    valid = _check_valid(name, valid, pred.shape[0], pred.device)
    unit = torch.tensor([0.5, 0.5, 1.0, 1.0], device=pred.device)
    return _where_valid(valid, pred.float(), unit), _where_valid(valid, target.float(), unit), valid


def box_l1_loss(
    pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """L1 distance of (cx, cy, w, h) boxes, summed over the 4 coordinates and averaged over
    the valid boxes (DETR's box loss per box).

    pred, target: (N, 4) normalised cxcywh; valid: optional (N,) bool -> scalar
    (graph-connected 0 when no box is valid).
    """
    pred, target, valid = _valid_boxes("box_l1_loss", pred, target, valid)
    per = (pred - target).abs().sum(1)  # N
    return _masked_mean(per, valid, valid.sum())


def giou_loss(
    pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """``1 - GIoU`` of (cx, cy, w, h) boxes, averaged over the valid boxes
    (``torchvision.ops.generalized_box_iou_loss`` on the boxes converted to xyxy).

    pred, target: (N, 4) normalised cxcywh (w, h >= 0); valid: optional (N,) bool ->
    scalar in [0, 2] (graph-connected 0 when no box is valid).
    """
    pred, target, valid = _valid_boxes("giou_loss", pred, target, valid)
    p = box_convert(pred, "cxcywh", "xyxy")
    t = box_convert(target, "cxcywh", "xyxy")
    per = generalized_box_iou_loss(p, t, reduction="none")  # N
    return _masked_mean(per, valid, valid.sum())


def adversarial_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator loss ``mean(-log D(real)) + mean(-log(1 - D(fake)))``, D = sigmoid of
    the logits (BCE with logits: stable for any logit).

    real_logits: (N, ...) any shape; fake_logits: (M, ...) any shape -> scalar.
    """
    real, fake = real_logits.float(), fake_logits.float()
    return F.binary_cross_entropy_with_logits(
        real, torch.ones_like(real)
    ) + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))


def adversarial_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss ``mean(-log D(fake))`` (D = sigmoid of the logits).

    fake_logits: any shape -> scalar.
    """
    fake = fake_logits.float()
    return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))
