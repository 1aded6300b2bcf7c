"""Receptive field block (RFB): reduce one backbone level to a few channels, multi-dilation."""

from __future__ import annotations

import torch
import torch.nn as nn

from vps_d2.modeling.layers import ConvNormAct

__all__ = ["RFB"]


class RFB(nn.Module):
    """Four parallel branches, concatenated, fused, plus a 1x1 shortcut, then ReLU.

    Branch 0: 1x1. Branch k in (3, 5, 7): 1x1, 1xk, kx1, 3x3 with dilation k. Every conv is
    conv (no bias, "same" padding) + BatchNorm without activation.
    forward: (B, in_channels, H, W) -> (B, out_channels, H, W).
    """

    def __init__(self, in_channels: int, out_channels: int = 32) -> None:
        super().__init__()
        c = out_channels
        self.branches = nn.ModuleList([ConvNormAct(in_channels, c, 1, act="")])
        for k in (3, 5, 7):
            self.branches.append(
                nn.Sequential(
                    ConvNormAct(in_channels, c, 1, act=""),
                    ConvNormAct(c, c, (1, k), act=""),
                    ConvNormAct(c, c, (k, 1), act=""),
                    ConvNormAct(c, c, 3, dilation=k, act=""),
                )
            )
        self.fuse = ConvNormAct(4 * c, c, 3, act="")
        self.shortcut = ConvNormAct(in_channels, c, 1, act="")
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fuse(torch.cat([b(x) for b in self.branches], dim=1))
        return self.relu(y + self.shortcut(x))
