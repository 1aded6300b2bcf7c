"""Loss of PGN+AEN (Eq. 10): (1/L) sum over frames of alpha * BCE + beta * Dice, plus the
optional auxiliary loss on the PGN's own per-frame prediction (CFFM's per-frame loss).

Names and weights (MODEL.PGN_AEN.LOSS): ``loss_bce`` BCE_WEIGHT, ``loss_dice`` DICE_WEIGHT,
``loss_pgn_aux_bce`` / ``loss_pgn_aux_dice`` PGN_AUX_WEIGHT x BCE_WEIGHT / DICE_WEIGHT (0
unless PGN_AUX)."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from vps_d2.config import configurable
from vps_d2.modeling.criterion import Criterion
from vps_d2.modeling.losses import bce_loss, dice_loss

__all__ = ["PGNAENCriterion"]


class PGNAENCriterion(Criterion):
    """Unweighted losses of one window; weights from ``weight_dict`` (``loss_bce``,
    ``loss_dice``, ``loss_pgn_aux_bce``, ``loss_pgn_aux_dice``).

    forward(logits (N, 1, H, W), masks (N, H, W), aux_logits (N, 1, H, W) or None) ->
    {name: scalar}. N = frames of the window(s), all of the same size: the BCE is the mean
    over every pixel of every frame and the Dice loss the mean over frames of each frame's
    soft Dice loss, i.e. (1/L) sum over frames of the per-frame losses.
    """

    @configurable
    def __init__(self, *, weight_dict: Mapping[str, float]) -> None:
        super().__init__(weight_dict)

    @classmethod
    def from_config(cls, cfg) -> dict:
        loss = cfg.MODEL.PGN_AEN.LOSS
        aux = float(loss.PGN_AUX_WEIGHT) if loss.PGN_AUX else 0.0
        return {
            "weight_dict": {
                "loss_bce": loss.BCE_WEIGHT,
                "loss_dice": loss.DICE_WEIGHT,
                "loss_pgn_aux_bce": aux * loss.BCE_WEIGHT,
                "loss_pgn_aux_dice": aux * loss.DICE_WEIGHT,
            }
        }

    def forward(
        self, logits: torch.Tensor, masks: torch.Tensor, aux_logits: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        out = {}
        for prefix, x in (("loss_", logits), ("loss_pgn_aux_", aux_logits)):
            names = (prefix + "bce", prefix + "dice")
            if not any(self.is_active(n) for n in names):
                continue
            if x is None:
                raise ValueError(
                    f"PGNAENCriterion: {names} have non-zero weights but no "
                    "logits were given for them"
                )
            if self.is_active(names[0]):
                out[names[0]] = bce_loss(x, masks)
            if self.is_active(names[1]):
                out[names[1]] = dice_loss(x, masks)
        return out
