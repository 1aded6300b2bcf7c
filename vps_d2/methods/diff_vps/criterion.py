"""Diff-VPS losses (Eqs. 3-6 of the paper) with a weight dict.

Unweighted terms (names):

* segmentation, on the x4-upsampled x0 mask logits vs the target frame's mask:
  ``LOSS.SEG "paper"``: ``loss_seg_ce`` (pixel-wise binary CE), ``loss_seg_mse``
  (MSE(sigmoid, mask)), ``loss_seg_iou`` (soft IoU); ``"code"``: ``loss_seg_dice``,
  ``loss_seg_bce``, ``loss_seg_mse``;
* ``loss_cls``: cross-entropy over the 6 classes, clips with ``class_id`` -1 left out;
* box, normalised (cx, cy, w, h) of the target frame, frames without a box left out:
  ``LOSS.BOX "mse"``: ``loss_box``; ``"l1_giou"``: ``loss_box_l1`` + ``loss_box_giou``;
* ``loss_recon``: MSE(reconstruction, normalised target frame);
* ``loss_adv``: -log D(fake) (the generator's adversarial term, with gradient into G);
* ``loss_d``: -log D(real) - log(1 - D(fake)) (the discriminator's, real label 1, fake 0).

:func:`build_weight_dict` turns the paper's lambdas into one weight per name:
segmentation terms MDM x SEG, ``loss_cls`` MDM x CLS, box terms MDM x BOX, ``loss_recon``
TRM x RECON, ``loss_adv`` TRM x ADV, ``loss_d`` D. :class:`DiffVPSCriterion` computes the
generator's terms (one forward), :class:`AdversarialCriterion` the two adversarial ones
(computed in other forwards of the training step).
"""

from __future__ import annotations

import torch

from vps_d2.modeling.criterion import Criterion
from vps_d2.modeling.losses import (
    adversarial_d_loss,
    adversarial_g_loss,
    bce_loss,
    box_l1_loss,
    cross_entropy_loss,
    dice_loss,
    giou_loss,
    iou_loss,
    mse_loss,
)

__all__ = [
    "BOX_LOSSES",
    "SEG_LOSSES",
    "AdversarialCriterion",
    "DiffVPSCriterion",
    "build_weight_dict",
    "split_weight_dict",
]

SEG_LOSSES = {
    "paper": ("loss_seg_ce", "loss_seg_mse", "loss_seg_iou"),
    "code": ("loss_seg_dice", "loss_seg_bce", "loss_seg_mse"),
}
BOX_LOSSES = {"mse": ("loss_box",), "l1_giou": ("loss_box_l1", "loss_box_giou")}


def _check_choice(key: str, value: str, choices) -> None:
    if value not in choices:
        raise ValueError(
            f"MODEL.DIFF_VPS.LOSS.{key} must be one of {sorted(choices)}, got {value!r}"
        )


def build_weight_dict(loss_cfg, *, use_mdm: bool, use_trm: bool, use_adversarial: bool) -> dict:
    """MODEL.DIFF_VPS.LOSS -> {loss name: weight} for the enabled parts."""
    _check_choice("SEG", loss_cfg.SEG, SEG_LOSSES)
    _check_choice("BOX", loss_cfg.BOX, BOX_LOSSES)
    mdm, trm = loss_cfg.MDM_WEIGHT, loss_cfg.TRM_WEIGHT
    w = {name: mdm * loss_cfg.SEG_WEIGHT for name in SEG_LOSSES[loss_cfg.SEG]}
    if use_mdm:
        w["loss_cls"] = mdm * loss_cfg.CLS_WEIGHT
        w.update({name: mdm * loss_cfg.BOX_WEIGHT for name in BOX_LOSSES[loss_cfg.BOX]})
    if use_trm:
        w["loss_recon"] = trm * loss_cfg.RECON_WEIGHT
    if use_adversarial:
        w["loss_adv"] = trm * loss_cfg.ADV_WEIGHT
        w["loss_d"] = loss_cfg.D_WEIGHT
    return {k: float(v) for k, v in w.items()}


def split_weight_dict(weights: dict) -> tuple[dict, dict | None]:
    """-> (the generator criterion's weights, the adversarial criterion's or None)."""
    adv = {k: weights[k] for k in ("loss_d", "loss_adv") if k in weights}
    gen = {k: v for k, v in weights.items() if k not in adv}
    return gen, (adv or None)


class DiffVPSCriterion(Criterion):
    """The generator's L_MDM terms and the reconstruction MSE: ``forward`` gives them
    unweighted, :meth:`Criterion.apply_weights` weights them. Zero-weight terms are skipped."""

    def __init__(
        self, weight_dict: dict, *, seg_loss: str = "paper", box_loss: str = "mse"
    ) -> None:
        super().__init__(weight_dict)
        _check_choice("SEG", seg_loss, SEG_LOSSES)
        _check_choice("BOX", box_loss, BOX_LOSSES)
        self.seg_loss, self.box_loss = seg_loss, box_loss

    def _active(self, names) -> list[str]:
        return [n for n in names if self.is_active(n)]

    def segmentation(self, logits: torch.Tensor, masks: torch.Tensor) -> dict[str, torch.Tensor]:
        """logits (B, 1, H, W), masks (B, H, W) 0/1 -> unweighted segmentation terms."""
        masks = masks.float()
        terms = {
            "loss_seg_ce": lambda: bce_loss(logits, masks),
            "loss_seg_bce": lambda: bce_loss(logits, masks),
            "loss_seg_mse": lambda: mse_loss(logits[:, 0].float().sigmoid(), masks),
            "loss_seg_iou": lambda: iou_loss(logits, masks),
            "loss_seg_dice": lambda: dice_loss(logits, masks),
        }
        return {n: terms[n]() for n in self._active(SEG_LOSSES[self.seg_loss])}

    def box(
        self, pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """pred, target (B, 4) normalised cxcywh, valid (B,) bool -> unweighted box terms."""
        terms = {
            "loss_box": lambda: mse_loss(pred, target, valid),
            "loss_box_l1": lambda: box_l1_loss(pred, target, valid),
            "loss_box_giou": lambda: giou_loss(pred, target, valid),
        }
        return {n: terms[n]() for n in self._active(BOX_LOSSES[self.box_loss])}

    def forward(
        self,
        *,
        mask_logits: torch.Tensor,
        masks: torch.Tensor,
        class_logits: torch.Tensor | None = None,
        class_ids: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
        box_targets: torch.Tensor | None = None,
        box_valid: torch.Tensor | None = None,
        reconstruction: torch.Tensor | None = None,
        frames: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Unweighted terms of the parts given.

        mask_logits (B, 1, H, W), masks (B, H, W); class_logits (B, C), class_ids (B,) long
        (-1: unknown, left out); boxes / box_targets (B, 4), box_valid (B,) bool;
        reconstruction and frames (B, 3, H, W).
        """
        losses = self.segmentation(mask_logits, masks)
        if class_logits is not None and self.is_active("loss_cls"):
            losses["loss_cls"] = cross_entropy_loss(
                class_logits.float(), class_ids.long(), ignore_index=-1
            )
        if boxes is not None:
            losses.update(self.box(boxes.float(), box_targets.float(), box_valid.bool()))
        if reconstruction is not None and self.is_active("loss_recon"):
            losses["loss_recon"] = mse_loss(reconstruction.float(), frames.float())
        return losses


class AdversarialCriterion(Criterion):
    """The adversarial terms, weighted: weight_dict {"loss_d": D, "loss_adv": TRM x ADV}.

    :meth:`discriminator_losses` (real 1, fake 0) and :meth:`generator_losses` (-log D(fake))
    take D's logits (no sigmoid inside D: the losses apply the only one).
    """

    def __init__(self, weight_dict: dict) -> None:
        super().__init__(weight_dict)
        if set(self.weight_dict) != {"loss_d", "loss_adv"}:
            raise ValueError(
                f"AdversarialCriterion: weight_dict must have loss_d and loss_adv, "
                f"got {sorted(self.weight_dict)}"
            )

    def forward(self, *, real_logits=None, fake_logits=None, fake_logits_g=None) -> dict:
        """Unweighted: "loss_d" from (real_logits, fake_logits), "loss_adv" from fake_logits_g."""
        out = {}
        if real_logits is not None:
            out["loss_d"] = adversarial_d_loss(real_logits.float(), fake_logits.float())
        if fake_logits_g is not None:
            out["loss_adv"] = adversarial_g_loss(fake_logits_g.float())
        return out

    def discriminator_losses(
        self, real_logits: torch.Tensor, fake_logits: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """D's logits (B,) on real and (detached) fake frames -> {"loss_d": weighted L_D}."""
        loss = self(real_logits=real_logits, fake_logits=fake_logits)["loss_d"]
        return {"loss_d": self.weight_dict["loss_d"] * loss}

    def generator_losses(self, fake_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        """D's logits (B,) on the reconstructions (with graph) -> {"loss_adv": weighted}."""
        loss = self(fake_logits_g=fake_logits)["loss_adv"]
        return {"loss_adv": self.weight_dict["loss_adv"] * loss}
