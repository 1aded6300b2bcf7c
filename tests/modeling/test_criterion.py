"""Criterion base (vps_d2/modeling/criterion.py): weights applied by name, strict names."""

from __future__ import annotations

import pytest
import torch

from vps_d2.modeling.criterion import Criterion
from vps_d2.modeling.losses import bce_loss, dice_loss


class _Seg(Criterion):
    """Computes only the active losses (skips zero weights)."""

    def forward(self, logits, masks):
        out = {}
        if self.is_active("loss_bce"):
            out["loss_bce"] = bce_loss(logits, masks)
        if self.is_active("loss_dice"):
            out["loss_dice"] = dice_loss(logits, masks)
        return out


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 1, 8, 8, generator=g), (torch.rand(2, 1, 8, 8, generator=g) > 0.5).float()


def test_apply_weights_multiplies_by_name():
    logits, masks = _data()
    crit = _Seg({"loss_bce": 2.0, "loss_dice": 0.5})
    raw = crit(logits, masks)
    weighted = crit.apply_weights(raw)
    assert sorted(weighted) == ["loss_bce", "loss_dice"]
    torch.testing.assert_close(weighted["loss_bce"], 2.0 * bce_loss(logits, masks))
    torch.testing.assert_close(weighted["loss_dice"], 0.5 * dice_loss(logits, masks))
    assert crit.loss_names == ["loss_bce", "loss_dice"]


def test_zero_weight_losses_are_skipped_or_dropped():
    logits, masks = _data()
    crit = _Seg({"loss_bce": 1.0, "loss_dice": 0})
    raw = crit(logits, masks)
    assert list(raw) == ["loss_bce"]  # not computed
    assert list(crit.apply_weights(raw)) == ["loss_bce"]
    # computed anyway: dropped from the weighted dict
    both = {"loss_bce": bce_loss(logits, masks), "loss_dice": dice_loss(logits, masks)}
    assert list(crit.apply_weights(both)) == ["loss_bce"]


def test_unknown_and_missing_names_raise():
    crit = _Seg({"loss_bce": 1.0, "loss_dice": 1.0})
    one = torch.tensor(1.0)
    with pytest.raises(ValueError, match=r"unknown losses \['loss_mask'\]"):
        crit.apply_weights({"loss_bce": one, "loss_dice": one, "loss_mask": one})
    with pytest.raises(ValueError, match=r"missing losses \['loss_dice'\]"):
        crit.apply_weights({"loss_bce": one})
    with pytest.raises(ValueError, match="unknown loss 'loss_iou'"):
        crit.is_active("loss_iou")


@pytest.mark.parametrize("bad", [{}, {"loss_a": "1"}, {"loss_a": float("nan")}, {3: 1.0},
                                 {"loss_a": True}, [("loss_a", 1.0)]])  # fmt: skip
def test_bad_weight_dict_raises(bad):
    with pytest.raises(ValueError, match="_Seg"):
        _Seg(bad)


def test_base_forward_is_abstract_and_repr_shows_weights():
    crit = Criterion({"loss_a": 1.0})
    with pytest.raises(NotImplementedError):
        crit()
    assert "loss_a" in repr(crit)
