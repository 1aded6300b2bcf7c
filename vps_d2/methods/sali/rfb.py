"""Receptive field block (RFB): reduce one backbone level to a few channels, multi-dilation."""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["RFB", "conv_bn"]


def conv_bn(
    cin: int,
    cout: int,
    kernel_size: int | tuple[int, int] = 3,
    padding: int | tuple[int, int] = 0,
    dilation: int = 1,
) -> nn.Sequential:
    """Convolution (no bias) + BatchNorm, no activation."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel_size, padding=padding, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
    )


class RFB(nn.Module):
    """Four parallel branches, concatenated, fused, plus a 1x1 shortcut, then ReLU.

    Branch 0: 1x1. Branch k in (3, 5, 7): 1x1, 1xk, kx1, 3x3 with dilation k.
    forward: (B, in_channels, H, W) -> (B, out_channels, H, W).
    """

    def __init__(self, in_channels: int, out_channels: int = 32) -> None:
        super().__init__()
        c = out_channels
        self.branches = nn.ModuleList([conv_bn(in_channels, c, 1)])
        for k in (3, 5, 7):
            self.branches.append(
                nn.Sequential(
                    conv_bn(in_channels, c, 1),
                    conv_bn(c, c, (1, k), padding=(0, k // 2)),
                    conv_bn(c, c, (k, 1), padding=(k // 2, 0)),
                    conv_bn(c, c, 3, padding=k, dilation=k),
                )
            )
        self.fuse = conv_bn(4 * c, c, 3, padding=1)
        self.shortcut = conv_bn(in_channels, c, 1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fuse(torch.cat([b(x) for b in self.branches], dim=1))
        return self.relu(y + self.shortcut(x))
