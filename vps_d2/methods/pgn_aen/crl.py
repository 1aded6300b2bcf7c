"""Cross-scale region linking (CRL): region-linking semantics e2 from F' (PGN) and F (backbone).

Per scale i (the method's README.md; ``N`` = B * T frames):

1. F'_i + F_i (element-wise). When the PGN's stage width differs from the backbone's (CFFM's
   F' are 256-d, Res2Net's F are 256-2048-d), the sum followed by the 1x1 conv is written as
   the sum of two 1x1 convs, ``W' F'_i + W F_i`` (the same map when the widths agree and the
   weights are tied, which is the case used then);
2. 1x1 conv (no bias) to S region maps ("expand the information in the class dimension");
3. two 3x3 region-sharing convs (no bias), dilations 1 and 2: in parallel on the two halves
   of the S maps (public code) or stacked; then BatchNorm;
4. each region map is adaptively average-pooled to the scale's grid (gh, gw) and flattened
   (the region-linking MLP must not fix the input size; the default grids are the maps' own
   size at 320x448), then the region-linking MLP gh*gw -> D -> ... -> D (ReLU between).

Output of a scale: (N, S, D); :class:`CrossScaleRegionLinking` concatenates the scales to
e2 (N, q = 4S, D). :class:`LinearRegionTokens` is the "w/o CRL" ablation of Table 2 (a linear
layer in CRL's place).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from vps_d2.modeling.layers import MLP

__all__ = ["CrossScaleRegionLinking", "LinearRegionTokens", "RegionLinking"]

SHARING_MODES = ("parallel", "sequential")


class RegionLinking(nn.Module):
    """CRL of one scale.

    forward(stage (N, C', H, W), feature (N, C, H, W)) -> (N, S, D).
    """

    def __init__(
        self,
        stage_channels: int,
        feature_channels: int,
        num_regions: int = 50,
        embed_dim: int = 256,
        grid: Sequence[int] = (80, 112),
        mlp_layers: int = 3,
        dilations: Sequence[int] = (1, 2),
        sharing: str = "parallel",
    ) -> None:
        super().__init__()
        if sharing not in SHARING_MODES:
            raise ValueError(
                f"MODEL.PGN_AEN.CRL.SHARING must be one of {SHARING_MODES}, got {sharing!r}"
            )
        if len(dilations) != 2:
            raise ValueError(f"MODEL.PGN_AEN.CRL.DILATIONS needs 2 values, got {list(dilations)}")
        if sharing == "parallel" and num_regions % 2:
            raise ValueError(
                f"MODEL.PGN_AEN.CRL.NUM_REGIONS ({num_regions}) must be even with "
                "SHARING 'parallel' (two halves)"
            )
        grid = tuple(int(g) for g in grid)
        if len(grid) != 2 or min(grid) < 1:
            raise ValueError(
                f"MODEL.PGN_AEN.CRL.GRIDS: each grid must be [h, w] >= 1, got {list(grid)}"
            )
        self.tied = stage_channels == feature_channels
        self.expand = nn.Conv2d(stage_channels, num_regions, 1, bias=False)
        self.expand_feature = (
            None if self.tied else nn.Conv2d(feature_channels, num_regions, 1, bias=False)
        )
        self.sharing = sharing
        if sharing == "parallel":
            half = num_regions // 2
            self.share = nn.ModuleList(
                nn.Conv2d(half, half, 3, padding=d, dilation=d, bias=False) for d in dilations
            )
        else:
            self.share = nn.ModuleList(
                nn.Conv2d(num_regions, num_regions, 3, padding=d, dilation=d, bias=False)
                for d in dilations
            )
        self.norm = nn.BatchNorm2d(num_regions)
        self.grid = grid
        self.mlp = MLP(grid[0] * grid[1], embed_dim, embed_dim, mlp_layers)
        self.num_regions = num_regions

    def region_maps(self, stage: torch.Tensor, feature: torch.Tensor) -> torch.Tensor:
        """(N, C', H, W), (N, C, H, W) -> normalised region maps (N, S, H, W)."""
        if self.tied:
            x = self.expand(stage + feature)
        else:
            x = self.expand(stage) + self.expand_feature(feature)
        if self.sharing == "parallel":
            a, b = x.chunk(2, dim=1)
            x = torch.cat([self.share[0](a), self.share[1](b)], dim=1)
        else:
            x = self.share[1](self.share[0](x))
        return self.norm(x)

    def forward(self, stage: torch.Tensor, feature: torch.Tensor) -> torch.Tensor:
        x = self.region_maps(stage, feature)
        if tuple(x.shape[-2:]) != self.grid:
            x = F.adaptive_avg_pool2d(x, self.grid)
        return self.mlp(x.flatten(2))  # N, S, D


class LinearRegionTokens(nn.Module):
    """ "w/o CRL" (Table 2): a linear layer in CRL's place, per scale.

    forward(stage (N, C', H, W), feature (N, C, H, W)) -> (N, S, D): [F'_i, F_i] are
    average-pooled to a grid of gh x gw = S cells and each cell's feature vector goes
    through one Linear(C' + C -> D).
    """

    def __init__(
        self,
        stage_channels: int,
        feature_channels: int,
        num_regions: int = 50,
        embed_dim: int = 256,
        grid: Sequence[int] = (5, 10),
    ) -> None:
        super().__init__()
        grid = tuple(int(g) for g in grid)
        if len(grid) != 2 or grid[0] * grid[1] != num_regions:
            raise ValueError(
                f"MODEL.PGN_AEN.CRL.LINEAR_GRID {list(grid)} must be [h, w] with "
                f"h * w = NUM_REGIONS ({num_regions})"
            )
        self.grid = grid
        self.linear = nn.Linear(stage_channels + feature_channels, embed_dim)
        self.num_regions = num_regions

    def forward(self, stage: torch.Tensor, feature: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(torch.cat([stage, feature], dim=1), self.grid)
        return self.linear(x.flatten(2).transpose(1, 2))  # N, S, D


class CrossScaleRegionLinking(nn.Module):
    """CRL (or its linear ablation) over the scales: e2 = concat of the scales' tokens.

    forward(stage {level: (N, C'_l, H_l, W_l)}, features {level: (N, C_l, H_l, W_l)}) ->
    e2 (N, q, D), q = S * number of scales (scale order = ``in_features``).
    """

    def __init__(self, in_features: Sequence[str], scales: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(in_features) != len(scales):
            raise ValueError(f"CRL: {len(scales)} scale modules for levels {list(in_features)}")
        self.in_features = list(in_features)
        self.scales = nn.ModuleList(scales)
        self.num_tokens = sum(s.num_regions for s in scales)

    def forward(self, stage: dict, features: dict) -> torch.Tensor:
        return torch.cat(
            [m(stage[f], features[f]) for m, f in zip(self.scales, self.in_features)], dim=1
        )
