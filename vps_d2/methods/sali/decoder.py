"""SALI's decoder: neighbour-connection partial decoder + group-reversal-attention stages.

Inputs are three levels of C channels, finest first: f_a (stride s), f_b (2s), f_c (4s)
(strides 8/16/32 with PVTv2). Outputs (logits, one channel):

* ``"sg"``: the global map from the partial decoder (SINet-V2's neighbour connection
  decoder), at f_a's size. Each level is connected only to its neighbouring coarser level
  (f_c -> f_b -> f_a): f_b' = f_b * conv(up(f_c)); f_a' = f_a * conv(up(f_b')) *
  conv(up(f_b)); then a concatenation path f_b'' = conv([f_b', conv(up(f_c))]), f_a'' =
  conv([f_a', conv(up(f_b''))]), and two convs to one channel. Every conv is conv + BN
  WITHOUT activation and ``up`` is bilinear x2 with ``align_corners=True`` (both as SINet-V2's
  and SALI's public code).
* reverse-attention stages (SINet-V2's), coarse to fine. A stage gets the guidance g (``sg``
  resized to f_c, then each stage's output upsampled to the next level), reverses it ONCE,
  ``y = 1 - sigmoid(g)``, and runs group reversal attention (GRA) units on the running
  ``y``: the g-channel-group split of the feature is interleaved with y, ``x <- x +
  ReLU(conv3x3([x_1, y, ..., x_g, y]))`` (conv with bias, no norm) and ``y <- y +
  conv3x3(x)``, for g in ``gra_groups`` (1, 4, 32: weak to strong); the stage's output is
  ``y + g``. The outputs are named after their level (``"s5"``, ``"s4"``, ``"s3"`` for
  res5, res4, res3).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from vps_d2.modeling.layers import ConvNormAct

__all__ = ["GroupReversalAttention", "NeighbourConnectionDecoder", "ReverseStage", "SALIDecoder"]


def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Bilinear resize of x to like's size, align_corners=True (the NCD's upsampling)."""
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=True)


class NeighbourConnectionDecoder(nn.Module):
    """forward(f_a, f_b, f_c) each (B, C, H_l, W_l), finest first -> global map (B, 1, H_a, W_a)."""

    def __init__(self, channels: int = 32) -> None:
        super().__init__()
        c = channels
        self.up_c_to_b = ConvNormAct(c, c, act="")
        self.up_b1_to_a = ConvNormAct(c, c, act="")
        self.up_b_to_a = ConvNormAct(c, c, act="")
        self.cat_c = ConvNormAct(c, c, act="")
        self.cat_b = ConvNormAct(2 * c, 2 * c, act="")
        self.cat_b_up = ConvNormAct(2 * c, 2 * c, act="")
        self.cat_a = ConvNormAct(3 * c, 3 * c, act="")
        self.head = nn.Sequential(ConvNormAct(3 * c, 3 * c, act=""), nn.Conv2d(3 * c, 1, 1))

    def forward(self, fa: torch.Tensor, fb: torch.Tensor, fc: torch.Tensor) -> torch.Tensor:
        fb1 = fb * self.up_c_to_b(_up(fc, fb))
        fa1 = fa * self.up_b1_to_a(_up(fb1, fa)) * self.up_b_to_a(_up(fb, fa))
        fb2 = self.cat_b(torch.cat([fb1, self.cat_c(_up(fc, fb))], 1))
        fa2 = self.cat_a(torch.cat([fa1, self.cat_b_up(_up(fb2, fa))], 1))
        return self.head(fa2)


class GroupReversalAttention(nn.Module):
    """forward(x (B, C, H, W), y (B, 1, H, W)) -> (x', y') same shapes (see module docstring)."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        if channels % groups:
            raise ValueError(
                f"MODEL.SALI.DECODER.GRA_GROUPS: {groups} groups do not divide {channels} channels"
            )
        self.groups = groups
        self.conv = ConvNormAct(channels + groups, channels, norm="")  # conv (bias) + ReLU
        self.score = nn.Conv2d(channels, 1, 3, padding=1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        parts = []
        for chunk in torch.chunk(x, self.groups, dim=1):
            parts += [chunk, y]
        x = x + self.conv(torch.cat(parts, 1))
        return x, y + self.score(x)


class ReverseStage(nn.Module):
    """forward(x (B, C, H, W), guidance g (B, 1, H, W)) -> map (B, 1, H, W): the GRAs run on
    y = 1 - sigmoid(g); the output is their final y plus g."""

    def __init__(self, channels: int, groups: Sequence[int] = (1, 4, 32)) -> None:
        super().__init__()
        self.gras = nn.ModuleList([GroupReversalAttention(channels, g) for g in groups])

    def forward(self, x: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
        y = 1 - torch.sigmoid(guidance)
        for gra in self.gras:
            x, y = gra(x, y)
        return y + guidance


class SALIDecoder(nn.Module):
    """forward(list of 3 (B, C, H_l, W_l), finest first) -> {"sg", "s<coarsest>", ...,
    "s<finest>"}: logits (B, 1, H_l, W_l) at each map's own level (sg at the finest)."""

    def __init__(
        self,
        *,
        channels: int = 32,
        level_names: Sequence[str] = ("s3", "s4", "s5"),
        gra_groups: Sequence[int] = (1, 4, 32),
    ) -> None:
        super().__init__()
        if len(level_names) != 3:
            raise ValueError(f"SALIDecoder needs exactly 3 levels, got {list(level_names)}")
        self.level_names = list(level_names)
        self.ncd = NeighbourConnectionDecoder(channels)
        self.stages = nn.ModuleList([ReverseStage(channels, gra_groups) for _ in range(3)])

    @property
    def output_names(self) -> list[str]:
        """Names in output order: "sg" then the stages coarse to fine (the last is final)."""
        return ["sg"] + self.level_names[::-1]

    def forward(self, feats: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        if len(feats) != 3:
            raise ValueError(f"SALIDecoder: expected 3 levels, got {len(feats)}")
        out = {"sg": self.ncd(*feats)}
        guide = out["sg"]
        for lvl in (2, 1, 0):
            x = feats[lvl]
            guide = self.stages[lvl](
                x, F.interpolate(guide, size=x.shape[-2:], mode="bilinear", align_corners=False)
            )
            out[self.level_names[lvl]] = guide
        return out
