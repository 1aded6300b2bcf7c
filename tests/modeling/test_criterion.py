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


@pytest.mark.parametrize(
    "bad",
    [{}, {"loss_a": "1"}, {"loss_a": float("nan")}, {3: 1.0}, {"loss_a": True}, [("loss_a", 1.0)]],
)
def test_bad_weight_dict_raises(bad):
    with pytest.raises(ValueError, match="_Seg"):
        _Seg(bad)


def test_base_forward_is_abstract_and_repr_shows_weights():
    crit = Criterion({"loss_a": 1.0})
    with pytest.raises(NotImplementedError):
        crit()
    assert "loss_a" in repr(crit)


# ------------------------------------------------------------------ every method's criterion
# Each method weights its losses through a Criterion whose weight_dict comes from
# MODEL.<METHOD>.LOSS.<NAME>_WEIGHT (logged as loss_<name>): weight 0 drops the term,
# weight 2 doubles it, and a former key name still works (with a warning) or names the new
# keys.
import logging  # noqa: E402

import vps_d2  # noqa: E402,F401  (registers the built-in methods)
from vps_d2.config import ConfigError, add_vps_config, get_cfg  # noqa: E402
from vps_d2.methods.diff_vps.criterion import (  # noqa: E402
    DiffVPSCriterion,
    build_weight_dict,
    split_weight_dict,
)
from vps_d2.methods.frame_baseline.model import FrameBaselineCriterion  # noqa: E402
from vps_d2.methods.pgn_aen.criterion import PGNAENCriterion  # noqa: E402
from vps_d2.methods.sali.model import SALICriterion  # noqa: E402


def _method_losses(method, cfg):
    """(criterion built from cfg as the method's from_config does, its weighted losses)."""
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 1, 16, 16, generator=g)
    masks = (torch.rand(2, 16, 16, generator=g) > 0.5).float()
    if method == "FRAME_BASELINE":
        crit = FrameBaselineCriterion.from_config(cfg)
        raw = crit(logits, masks)
    elif method == "SALI":
        crit = SALICriterion.from_config(cfg)
        maps = {
            n: torch.randn(2, 1, 4 * 2**i, 4 * 2**i, generator=g)
            for i, n in enumerate(["sg", "s5", "s4", "s3"])
        }
        raw = crit(maps, masks)
    elif method == "PGN_AEN":
        crit = PGNAENCriterion(cfg)
        raw = crit(logits, masks, torch.randn(2, 1, 16, 16, generator=g))
    else:
        d = cfg.MODEL.DIFF_VPS
        gen, _ = split_weight_dict(
            build_weight_dict(d.LOSS, use_mdm=True, use_trm=True, use_adversarial=True)
        )
        crit = DiffVPSCriterion(gen, seg_loss=d.LOSS.SEG, box_loss=d.LOSS.BOX)
        raw = crit(
            mask_logits=logits,
            masks=masks,
            class_logits=torch.randn(2, 6, generator=g),
            class_ids=torch.tensor([1, 2]),
            boxes=torch.rand(2, 4, generator=g),
            box_targets=torch.rand(2, 4, generator=g),
            box_valid=torch.ones(2).bool(),
            reconstruction=torch.randn(2, 3, 8, 8, generator=g),
            frames=torch.randn(2, 3, 8, 8, generator=g),
        )
    return crit, crit.apply_weights(raw)


# method -> (a weight key under MODEL.<METHOD>.LOSS, the losses it weights, extra opts)
WEIGHT_KEYS = {
    "FRAME_BASELINE": [("BCE_WEIGHT", ["loss_bce"]), ("DICE_WEIGHT", ["loss_dice"])],
    "SALI": [
        ("GLOBAL_WEIGHT", ["loss_global"]),
        ("COARSE_WEIGHT", ["loss_coarse"]),
        ("MIDDLE_WEIGHT", ["loss_middle"]),
        ("FINE_WEIGHT", ["loss_fine"]),
    ],
    "PGN_AEN": [("PGN_AUX_WEIGHT", ["loss_pgn_aux_bce", "loss_pgn_aux_dice"])],
    "DIFF_VPS": [
        ("CLS_WEIGHT", ["loss_cls"]),
        ("BOX_WEIGHT", ["loss_box"]),
        ("RECON_WEIGHT", ["loss_recon"]),
        ("SEG_WEIGHT", ["loss_seg_ce", "loss_seg_mse", "loss_seg_iou"]),
    ],
}
CASES = [(m, k, names) for m, keys in WEIGHT_KEYS.items() for k, names in keys]


def _cfg(method, *opts):
    cfg = add_vps_config(get_cfg())
    if method == "PGN_AEN":
        opts = ("MODEL.PGN_AEN.LOSS.PGN_AUX", "True", *opts)
    cfg.merge_from_list(list(opts))
    return cfg


@pytest.mark.parametrize("method,key,names", CASES, ids=[f"{m}.{k}" for m, k, _ in CASES])
def test_method_weight_keys_scale_their_losses(method, key, names):
    full = f"MODEL.{method}.LOSS.{key}"
    crit, one = _method_losses(method, _cfg(method, full, "1.0"))
    _, two = _method_losses(method, _cfg(method, full, "2.0"))
    _, zero = _method_losses(method, _cfg(method, full, "0.0"))
    # the logged names are loss_<name>, lowercase, as the key's <NAME>
    assert key.removesuffix("_WEIGHT").lower() in " ".join(names)
    assert set(names) <= set(crit.loss_names)
    for name in names:
        torch.testing.assert_close(two[name], 2 * one[name], rtol=0, atol=0)
        assert name not in zero
    for name in set(one) - set(names):  # the other terms do not move
        assert torch.equal(one[name], two[name]) and torch.equal(one[name], zero[name])


def test_old_loss_weight_keys(tmp_path, caplog):
    """Former names keep working with a warning (FRAME_BASELINE) or name the new keys (SALI's
    list, which cannot map 1:1 to its four keys)."""
    cfg = add_vps_config(get_cfg())
    with caplog.at_level(logging.WARNING, logger="vps_d2.config.config"):
        cfg.merge_from_list(
            ["MODEL.FRAME_BASELINE.BCE_WEIGHT", "2.0", "MODEL.BASELINE.LOSS.DICE_WEIGHT", "0.5"]
        )
    assert "deprecated" in caplog.text and "MODEL.FRAME_BASELINE.LOSS.BCE_WEIGHT" in caplog.text
    crit = FrameBaselineCriterion.from_config(cfg)
    assert crit.weight_dict == {"loss_bce": 2.0, "loss_dice": 0.5}
    path = tmp_path / "old_sali.yaml"
    path.write_text("MODEL:\n  SALI:\n    LOSS_WEIGHTS: [1.0, 1.0, 1.0, 2.0]\n")
    with pytest.raises(ConfigError, match="LOSS_WEIGHTS.*MODEL.SALI.LOSS.*FINE_WEIGHT"):
        add_vps_config(get_cfg()).merge_from_file(str(path))
    with pytest.raises(ConfigError, match="command-line.*MODEL.SALI.LOSS_WEIGHTS"):
        add_vps_config(get_cfg()).merge_from_list(["MODEL.SALI.LOSS_WEIGHTS", "[1, 1, 1, 1]"])
