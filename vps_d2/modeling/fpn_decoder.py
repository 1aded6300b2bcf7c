"""A light FPN-style decoder: lateral 1x1 convs, top-down sum, 3x3 conv-BN-ReLU outputs."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import ConvNormAct

__all__ = ["LightFPNDecoder"]


class LightFPNDecoder(nn.Module):
    """Fuse multi-scale features into one map at the finest input stride.

    forward: list of (B, C_i, H_i, W_i), finest first -> (B, channels, H_0, W_0).
    """

    def __init__(self, in_channels: list[int], channels: int = 64) -> None:
        super().__init__()
        self.lateral = nn.ModuleList([nn.Conv2d(c, channels, 1) for c in in_channels])
        self.output = nn.ModuleList([ConvNormAct(channels, channels, 3) for _ in in_channels])
        self.fuse = ConvNormAct(channels * len(in_channels), channels, 3)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        lat = [conv(f) for conv, f in zip(self.lateral, feats)]
        for i in range(len(lat) - 2, -1, -1):
            lat[i] = lat[i] + F.interpolate(
                lat[i + 1], size=lat[i].shape[-2:], mode="bilinear", align_corners=False
            )
        outs = [conv(x) for conv, x in zip(self.output, lat)]
        size = outs[0].shape[-2:]
        outs = [outs[0]] + [
            F.interpolate(o, size=size, mode="bilinear", align_corners=False) for o in outs[1:]
        ]
        return self.fuse(torch.cat(outs, dim=1))
