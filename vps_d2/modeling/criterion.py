"""Criterion base: a method's loss module computes UNWEIGHTED named losses; the weights come
from one ``weight_dict`` (Mask2Former's SetCriterion idea), built in the meta-architecture's
``from_config`` from the method's config keys.

A subclass implements ``forward(outputs, targets, ...) -> {name: scalar}`` and may skip the
losses whose weight is 0 (:meth:`Criterion.is_active`); :meth:`Criterion.apply_weights`
multiplies each computed loss by its weight, drops the zero-weight ones and raises on names
that are unknown or missing, so a typo cannot silently turn a loss off::

    class MyCriterion(Criterion):
        def forward(self, logits, masks):
            out = {"loss_bce": bce_loss(logits, masks)}
            if self.is_active("loss_dice"):
                out["loss_dice"] = dice_loss(logits, masks)
            return out

    crit = MyCriterion({"loss_bce": 1.0, "loss_dice": 0.5})
    losses = crit.apply_weights(crit(logits, masks))  # already weighted, ready to sum
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

import torch
import torch.nn as nn

__all__ = ["Criterion"]


class Criterion(nn.Module):
    """Base class of loss modules; ``weight_dict`` {loss name: float weight}."""

    def __init__(self, weight_dict: Mapping[str, float]) -> None:
        super().__init__()
        name = type(self).__name__
        if not isinstance(weight_dict, Mapping) or not weight_dict:
            raise ValueError(
                f"{name}: weight_dict must be a non-empty mapping of loss names to "
                f"weights, got {weight_dict!r}"
            )
        weights: dict[str, float] = {}
        for key, w in weight_dict.items():
            if not isinstance(key, str):
                raise ValueError(f"{name}: loss names must be strings, got {key!r}")
            if isinstance(w, bool) or not isinstance(w, numbers.Real) or not math.isfinite(w):
                raise ValueError(
                    f"{name}: the weight of {key!r} must be a finite number, got {w!r}"
                )
            weights[key] = float(w)
        self.weight_dict = weights

    @property
    def loss_names(self) -> list[str]:
        """Every loss name this criterion knows (weight 0 included)."""
        return list(self.weight_dict)

    def is_active(self, name: str) -> bool:
        """True when ``name`` has a non-zero weight (compute it); unknown names raise."""
        if name not in self.weight_dict:
            raise ValueError(
                f"{type(self).__name__}: unknown loss {name!r}; weight_dict has "
                f"{sorted(self.weight_dict)}"
            )
        return self.weight_dict[name] != 0

    def forward(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        """Unweighted named scalar losses (implemented by subclasses)."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward()")

    def apply_weights(self, losses: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """{name: unweighted scalar} -> {name: weight * loss} without the zero-weight names.

        Raises ValueError naming the losses that are not in ``weight_dict`` (unknown) and
        the non-zero-weight losses that were not computed (missing).
        """
        unknown = sorted(set(losses) - set(self.weight_dict))
        missing = sorted(k for k, w in self.weight_dict.items() if w != 0 and k not in losses)
        if unknown or missing:
            parts = []
            if unknown:
                parts.append(f"unknown losses {unknown} (not in weight_dict)")
            if missing:
                parts.append(f"missing losses {missing} (non-zero weight but not computed)")
            raise ValueError(
                f"{type(self).__name__}.apply_weights: "
                + "; ".join(parts)
                + f"; weight_dict has {sorted(self.weight_dict)}"
            )
        return {k: v * self.weight_dict[k] for k, v in losses.items() if self.weight_dict[k] != 0}

    def extra_repr(self) -> str:
        return f"weight_dict={self.weight_dict}"
