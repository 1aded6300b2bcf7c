"""ArSDM's losses: the adaptive diffusion loss (talk Eq. 7-8) and the refinement loss.

* :func:`adaptive_weights`: Eq. 7, per pixel ``1 - r`` on the polyp and ``r`` on the
  background, ``r`` = polyp area / (H x W) of each frame; a frame with ``r`` 0 or 1 (an
  empty or full mask) gets weight 1 everywhere, since Eq. 7 would zero its loss;
* ``loss_diffusion``: the weighted distance between the true and the predicted noise,
  ``mean(W * |eps - eps_hat|)`` ("l1", the code's) or ``mean(W * (eps - eps_hat) ** 2)``
  ("l2", Eq. 8), averaged over pixels, channels and frames;
* ``loss_refine``: PraNet's structure loss (what the code applies to its frozen PraNet), here
  on the frozen segmenter's foreground probabilities of the generated x~_0 against the
  conditioning mask: weighted BCE + weighted IoU with ``w = 1 + 5 |avgpool31(m) - m|``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vps_d2.modeling.criterion import Criterion

__all__ = ["ArSDMCriterion", "adaptive_weights", "structure_loss"]

LOSS_TYPES = ("l1", "l2")


def adaptive_weights(masks: torch.Tensor) -> torch.Tensor:
    """Eq. 7: masks (N, H, W) in {0, 1} -> weights (N, H, W): ``m (1 - r) + (1 - m) r``,
    ``r`` the mask's mean; frames with r in {0, 1} get all ones."""
    m = masks.float()
    r = m.mean(dim=(-2, -1), keepdim=True)
    w = m * (1 - r) + (1 - m) * r
    degenerate = (r <= 0) | (r >= 1)
    return torch.where(degenerate, torch.ones_like(w), w)


def structure_loss(probs: torch.Tensor, masks: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """PraNet's structure loss on probabilities: probs, masks (N, H, W) -> scalar, the batch
    mean of ``wBCE + wIoU`` with ``w = 1 + 5 |avg_pool_31(m) - m|``."""
    m = masks.float()[:, None]
    p = probs.float()[:, None].clamp(eps, 1 - eps)
    w = 1 + 5 * (F.avg_pool2d(m, 31, stride=1, padding=15) - m).abs()
    wbce = F.binary_cross_entropy(p, m, reduction="none")
    wbce = (w * wbce).sum(dim=(2, 3)) / w.sum(dim=(2, 3))
    inter = (p * m * w).sum(dim=(2, 3))
    union = ((p + m) * w).sum(dim=(2, 3))
    wiou = 1 - (inter + 1) / (union - inter + 1)
    return (wbce + wiou).mean()


class ArSDMCriterion(Criterion):
    """Unweighted ``loss_diffusion`` and ``loss_refine``; weights from
    MODEL.ARSDM.LOSS.{DIFFUSION,REFINE}_WEIGHT."""

    def __init__(self, weight_dict, loss_type: str = "l1", adaptive: bool = True) -> None:
        super().__init__(weight_dict)
        if loss_type not in LOSS_TYPES:
            raise ValueError(
                f"MODEL.ARSDM.LOSS.TYPE must be one of {LOSS_TYPES}, got {loss_type!r}"
            )
        self.loss_type = loss_type
        self.adaptive = bool(adaptive)

    @classmethod
    def from_config(cls, cfg, refine: bool) -> ArSDMCriterion:
        loss = cfg.MODEL.ARSDM.LOSS
        weights = {"loss_diffusion": loss.DIFFUSION_WEIGHT}
        if refine:
            weights["loss_refine"] = loss.REFINE_WEIGHT
        return cls(weights, loss.TYPE, loss.ADAPTIVE)

    def diffusion(self, eps_hat: torch.Tensor, eps: torch.Tensor, masks: torch.Tensor):
        """eps_hat, eps (N, C, H, W), masks (N, H, W) -> scalar."""
        diff = (eps - eps_hat.float()).abs() if self.loss_type == "l1" else (eps - eps_hat) ** 2
        if self.adaptive:
            diff = diff * adaptive_weights(masks)[:, None]
        return diff.mean()

    def apply_weights(self, losses):
        """As :meth:`Criterion.apply_weights`; ``loss_refine`` may be absent (an iteration
        between two refinement steps, MODEL.ARSDM.REFINE.PERIOD > 1)."""
        if "loss_refine" in losses or not self.weight_dict.get("loss_refine"):
            return super().apply_weights(losses)
        zero = losses["loss_diffusion"].new_zeros(())
        out = super().apply_weights({**losses, "loss_refine": zero})
        out.pop("loss_refine")
        return out

    def forward(
        self,
        eps_hat: torch.Tensor,
        eps: torch.Tensor,
        masks: torch.Tensor,
        refine_probs: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        out = {"loss_diffusion": self.diffusion(eps_hat, eps, masks)}
        if refine_probs is not None:
            out["loss_refine"] = structure_loss(refine_probs, masks)
        return out
