"""Shared losses against independent float64 NumPy computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vps_d2.modeling.losses import (
    adversarial_d_loss,
    adversarial_g_loss,
    bce_loss,
    box_l1_loss,
    box_mean,
    cross_entropy_loss,
    dice_loss,
    giou_loss,
    iou_loss,
    mse_loss,
    structure_loss,
)


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


# ---------------------------------------------------------------- classification, boxes, GAN


def _assert_graph_zero(loss: torch.Tensor, leaf: torch.Tensor) -> None:
    """A zero that still belongs to the graph: backward works and gives a zero gradient."""
    assert loss.item() == 0.0 and loss.requires_grad and loss.grad_fn is not None
    loss.backward()
    assert leaf.grad is not None and torch.isfinite(leaf.grad).all() and (leaf.grad == 0).all()


def _np_log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def test_cross_entropy_loss_against_numpy_with_ignore():
    g = torch.Generator().manual_seed(4)
    logits = 2 * torch.randn(7, 6, generator=g)
    targets = torch.tensor([0, 5, -1, 2, 2, -1, 3])
    logp = _np_log_softmax(logits.double().numpy())
    keep = [i for i, t in enumerate(targets.tolist()) if t != -1]
    want = -np.mean([logp[i, targets[i]] for i in keep])
    assert cross_entropy_loss(logits, targets).item() == pytest.approx(want, rel=1e-6)
    # label smoothing eps: (1 - eps) * NLL + eps * mean over classes of -log p
    eps = 0.2
    want_ls = np.mean([(1 - eps) * -logp[i, targets[i]] - eps * logp[i].mean() for i in keep])
    got_ls = cross_entropy_loss(logits, targets, label_smoothing=eps).item()
    assert got_ls == pytest.approx(want_ls, rel=1e-6)
    # another ignore value
    t2 = torch.where(targets < 0, torch.full_like(targets, 255), targets)
    assert cross_entropy_loss(logits, t2, ignore_index=255).item() == pytest.approx(want, rel=1e-6)
    # ignored rows (even NaN) get no loss and an exact 0 gradient; the others softmax - onehot
    leaf = logits.clone()
    leaf[2] = float("nan")
    leaf.requires_grad_(True)
    assert cross_entropy_loss(leaf, targets).item() == pytest.approx(want, rel=1e-6)
    cross_entropy_loss(leaf, targets).backward()
    p = np.exp(logp)
    onehot = np.eye(6)[targets.clamp(min=0).numpy()]
    want_grad = (p - onehot) * (targets != -1).numpy()[:, None] / len(keep)
    np.testing.assert_allclose(leaf.grad.numpy(), want_grad, rtol=1e-5, atol=1e-7)


def test_cross_entropy_loss_all_ignored_and_errors():
    logits = torch.randn(3, 6, requires_grad=True)
    _assert_graph_zero(cross_entropy_loss(logits, torch.full((3,), -1)), logits)
    with pytest.raises(ValueError, match="cross_entropy_loss"):
        cross_entropy_loss(torch.randn(3, 6), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        cross_entropy_loss(torch.randn(3, 6), torch.zeros(3))


def test_mse_loss_against_numpy_with_valid():
    g = torch.Generator().manual_seed(5)
    pred, target = torch.randn(5, 3, 2, generator=g), torch.randn(5, 3, 2, generator=g)
    p, t = pred.double().numpy(), target.double().numpy()
    assert mse_loss(pred, target).item() == pytest.approx(((p - t) ** 2).mean(), rel=1e-6)
    valid = torch.tensor([True, False, True, True, False])
    pred_nan = pred.clone()
    pred_nan[1] = float("nan")  # invalid samples never contribute
    want = ((p - t)[valid.numpy()] ** 2).mean()
    assert mse_loss(pred_nan, target, valid).item() == pytest.approx(want, rel=1e-6)
    pred_nan.requires_grad_(True)
    mse_loss(pred_nan, target, valid).backward()
    want_grad = 2 * (p - t) * valid.numpy()[:, None, None] / (valid.sum().item() * 6)
    np.testing.assert_allclose(pred_nan.grad.numpy(), want_grad, rtol=1e-5, atol=1e-7)
    leaf = torch.randn(5, 3, 2, requires_grad=True)
    _assert_graph_zero(mse_loss(leaf, target, torch.zeros(5, dtype=torch.bool)), leaf)
    with pytest.raises(ValueError, match="same shape"):
        mse_loss(pred, target[:4])
    with pytest.raises(ValueError, match="valid"):
        mse_loss(pred, target, valid[:4])


def _giou_by_hand(a, b) -> float:
    """GIoU of two (x1, y1, x2, y2) boxes from its definition."""
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = area(a) + area(b) - inter
    hull = (max(a[2], b[2]) - min(a[0], b[0])) * (max(a[3], b[3]) - min(a[1], b[1]))
    return inter / union - (hull - union) / hull


def test_giou_loss_two_boxes_by_hand():
    # A = [0.1, 0.2, 0.5, 0.6] (0.4 x 0.4), B = [0.3, 0.3, 0.9, 0.5] (0.6 x 0.2):
    # inter 0.2 x 0.2 = 0.04, union 0.16 + 0.12 - 0.04 = 0.24, hull 0.8 x 0.4 = 0.32,
    # GIoU = 0.04/0.24 - 0.08/0.32 = 1/6 - 1/4 = -1/12 -> loss 13/12
    pred = torch.tensor([[0.3, 0.4, 0.4, 0.4]])  # cxcywh of A
    target = torch.tensor([[0.6, 0.4, 0.6, 0.2]])  # cxcywh of B
    assert giou_loss(pred, target).item() == pytest.approx(13 / 12, rel=1e-5)
    assert 1 - _giou_by_hand([0.1, 0.2, 0.5, 0.6], [0.3, 0.3, 0.9, 0.5]) == pytest.approx(13 / 12)
    # disjoint: A = [0, 0, 0.2, 0.2], B = [0.5, 0.5, 0.7, 0.7]: IoU 0, hull 0.49, union 0.08
    disjoint = giou_loss(torch.tensor([[0.1, 0.1, 0.2, 0.2]]), torch.tensor([[0.6, 0.6, 0.2, 0.2]]))
    assert disjoint.item() == pytest.approx(1 + (0.49 - 0.08) / 0.49, rel=1e-5)
    same = torch.tensor([[0.5, 0.5, 0.3, 0.2]])
    assert giou_loss(same, same).item() == pytest.approx(0.0, abs=1e-5)


def test_giou_and_l1_box_losses_average_valid_boxes():
    g = torch.Generator().manual_seed(6)

    def boxes():  # (6, 4) cxcywh, sizes in [0.1, 0.6]
        centres, sizes = torch.rand(6, 2, generator=g), torch.rand(6, 2, generator=g)
        return torch.cat([centres, 0.1 + 0.5 * sizes], 1)

    pred, target = boxes(), boxes()
    valid = torch.tensor([True, True, False, True, False, True])

    def xyxy(b):
        cx, cy, w, h = b.tolist()
        return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]

    keep = [i for i in range(6) if valid[i]]
    want_giou = np.mean([1 - _giou_by_hand(xyxy(pred[i]), xyxy(target[i])) for i in keep])
    want_l1 = np.mean([np.abs(pred[i].numpy() - target[i].numpy()).sum() for i in keep])
    assert giou_loss(pred, target, valid).item() == pytest.approx(want_giou, rel=1e-5)
    assert box_l1_loss(pred, target, valid).item() == pytest.approx(want_l1, rel=1e-5)
    all_l1 = np.abs(pred.numpy() - target.numpy()).sum(1).mean()
    assert box_l1_loss(pred, target).item() == pytest.approx(all_l1, rel=1e-5)
    # garbage (zero-size / NaN) boxes where invalid do not leak in
    bad = pred.clone()
    bad[2] = 0.0
    bad[4] = float("nan")
    assert giou_loss(bad, target, valid).item() == pytest.approx(want_giou, rel=1e-5)
    assert box_l1_loss(bad, target, valid).item() == pytest.approx(want_l1, rel=1e-5)
    for fn in (giou_loss, box_l1_loss):  # ... nor into the gradient (exactly 0 there)
        leaf, ref = bad.clone().requires_grad_(True), pred[valid].clone().requires_grad_(True)
        fn(leaf, target, valid).backward()
        fn(ref, target[valid]).backward()
        assert torch.isfinite(leaf.grad).all() and (leaf.grad[~valid] == 0).all()
        torch.testing.assert_close(leaf.grad[valid], ref.grad)
    for fn in (giou_loss, box_l1_loss):
        leaf = pred.clone().requires_grad_(True)
        _assert_graph_zero(fn(leaf, target, torch.zeros(6, dtype=torch.bool)), leaf)
        with pytest.raises(ValueError, match="(N, 4)"):
            fn(pred[:, :3], target[:, :3])
        with pytest.raises(ValueError, match="valid"):
            fn(pred, target, valid.long())


def test_adversarial_losses_closed_form_and_stable():
    real = torch.tensor([2.0, -1.0, 0.5])
    fake = torch.tensor([[-3.0, 0.0], [1.5, 4.0]])
    sig = lambda z: 1 / (1 + np.exp(-np.asarray(z, dtype=np.float64)))  # noqa: E731
    want_d = -np.log(sig(real.numpy())).mean() - np.log(1 - sig(fake.numpy())).mean()
    want_g = -np.log(sig(fake.numpy())).mean()
    assert adversarial_d_loss(real, fake).item() == pytest.approx(want_d, rel=1e-6)
    assert adversarial_g_loss(fake).item() == pytest.approx(want_g, rel=1e-6)
    # non-saturating: a confidently rejected fake (D(fake) -> 0) still gets a large gradient
    z = torch.tensor([-30.0], requires_grad=True)
    loss = adversarial_g_loss(z)
    loss.backward()
    assert loss.item() == pytest.approx(30.0, rel=1e-6)  # -log sigmoid(-30) = 30 + log(1+e^-30)
    assert z.grad.item() == pytest.approx(-1.0, rel=1e-6)  # d/dz softplus(-z) = -sigmoid(-z)
    # finite for extreme logits (log(sigmoid) would underflow to -inf)
    extreme = torch.tensor([-200.0, 200.0])
    assert torch.isfinite(adversarial_d_loss(extreme, extreme))
    assert adversarial_d_loss(extreme, extreme).item() == pytest.approx(200.0, rel=1e-6)
