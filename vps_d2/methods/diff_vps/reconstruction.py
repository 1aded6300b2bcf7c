"""TRM reconstruction decoder: temporal features R_j -> the (normalised) target frame.

A SegFormer-style all-MLP head: per level a 1x1 "MLP" C_j -> D, resized to the finest level
(1/4), concatenated coarsest first (4D, SegFormer's order) -> 1x1 conv + BN + ReLU -> 1x1
conv to 3 channels -> bilinear to the frame size. Trained with MSE against the normalised
target frame (and, with the adversarial term, against the discriminator).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from vps_d2.modeling.layers import ConvNormAct

__all__ = ["ReconstructionDecoder"]


class ReconstructionDecoder(nn.Module):
    """forward(levels: list of (B, C_j, h_j, w_j) finest first, size (H, W)) -> (B, 3, H, W)."""

    def __init__(
        self, in_channels: Sequence[int], channels: int = 768, out_channels: int = 3
    ) -> None:
        super().__init__()
        self.proj = nn.ModuleList([nn.Conv2d(c, channels, 1) for c in in_channels])
        self.fuse = ConvNormAct(channels * len(in_channels), channels, 1)
        self.predictor = nn.Conv2d(channels, out_channels, 1)

    def forward(self, levels: list[torch.Tensor], size) -> torch.Tensor:
        first = levels[0].shape[-2:]
        feats = []
        for proj, x in zip(self.proj, levels):
            y = proj(x)
            if y.shape[-2:] != first:
                y = F.interpolate(y, size=first, mode="bilinear", align_corners=False)
            feats.append(y)
        out = self.predictor(self.fuse(torch.cat(feats[::-1], dim=1)))  # coarsest first
        return F.interpolate(out, size=tuple(size), mode="bilinear", align_corners=False)
