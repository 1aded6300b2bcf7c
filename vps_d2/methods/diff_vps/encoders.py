"""Spatial and temporal encoders, their fusion and the FPN that makes the priors H_j.

* :class:`DualEncoder`: an image encoder on the target frame (S_j) and a SEPARATE temporal
  encoder (its own weights) applied frame by frame to the previous delta frames, each
  level averaged over time (R_j). Both are vps_d2 backbones (levels "res2".."res5",
  strides 4..32).
* :func:`fuse`: H_j input = S_j + R_j (element-wise).
* :class:`PriorFPN`: 1x1 lateral C_j -> C, top-down nearest-upsample-and-add, a 3x3 conv
  per level, no norm -> four C-channel maps. Top-down ``"lateral"`` (the public code): level
  j adds only the upsampled LATERAL of level j+1, ``P_j = conv3x3(L_j + up(L_{j+1}))``
  (coarsest: ``conv3x3(L_J)``); ``"cumulative"`` (the usual FPN, torchvision's): it adds the
  upsampled running sum, ``M_j = L_j + up(M_{j+1})``, ``P_j = conv3x3(M_j)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from vps_d2.modeling.backbone import Backbone

__all__ = ["FPN_TOP_DOWN", "DualEncoder", "PriorFPN", "fuse"]

#: MODEL.DIFF_VPS.FPN_TOP_DOWN values (see :class:`PriorFPN`).
FPN_TOP_DOWN = ("lateral", "cumulative")


class DualEncoder(nn.Module):
    """Image encoder + separate temporal encoder (``temporal`` None: image only, ablations
    #1/#2).

    * :meth:`image_features`: (N, 3, H, W) -> list of (N, C_j, H/s_j, W/s_j) (S_j);
    * :meth:`frame_features`: the temporal encoder on single frames, same shapes;
    * :meth:`temporal_features`: previous frames (B, T, 3, H, W) -> per-level mean over T,
      list of (B, C_j, H/s_j, W/s_j) (R_j).
    """

    def __init__(
        self, image: Backbone, temporal: Backbone | None, in_features: Sequence[str]
    ) -> None:
        super().__init__()
        self.in_features = list(in_features)
        shapes = image.output_shape()
        missing = [f for f in self.in_features if f not in shapes]
        if missing:
            raise KeyError(
                f"MODEL.DIFF_VPS.IN_FEATURES {missing} not produced by the backbone "
                f"(it gives {list(shapes)})"
            )
        if temporal is not None and temporal is image:
            raise ValueError("DualEncoder: the temporal encoder must be a separate instance")
        if temporal is not None:
            tshapes = temporal.output_shape()
            if [tshapes.get(f) for f in self.in_features] != [shapes[f] for f in self.in_features]:
                raise ValueError(
                    f"DualEncoder: image and temporal encoders give different "
                    f"levels ({shapes} vs {tshapes})"
                )
        self.image = image
        self.temporal = temporal
        self.channels = [shapes[f].channels for f in self.in_features]
        self.strides = [shapes[f].stride for f in self.in_features]

    def image_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.image(x)
        return [feats[f] for f in self.in_features]

    def frame_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.temporal is None:
            raise RuntimeError("DualEncoder: no temporal encoder (MODEL.DIFF_VPS.USE_TRM False)")
        feats = self.temporal(x)
        return [feats[f] for f in self.in_features]

    @staticmethod
    def aggregate(per_frame: Sequence[list[torch.Tensor]]) -> list[torch.Tensor]:
        """Per-frame level lists (T entries of [(B, C_j, h_j, w_j)]) -> mean over T."""
        return [torch.stack(level).mean(0) for level in zip(*per_frame)]

    def temporal_features(self, frames: torch.Tensor) -> list[torch.Tensor]:
        if frames.dim() != 5:
            raise ValueError(
                f"DualEncoder.temporal_features: frames must be (B, T, 3, H, W), "
                f"got {tuple(frames.shape)}"
            )
        b, t = frames.shape[:2]
        feats = self.frame_features(frames.flatten(0, 1))
        return [f.view(b, t, *f.shape[1:]).mean(1) for f in feats]


def fuse(spatial: list[torch.Tensor], temporal: list[torch.Tensor] | None) -> list[torch.Tensor]:
    """S_j + R_j per level (S_j alone without a temporal encoder)."""
    if temporal is None:
        return list(spatial)
    return [s + r for s, r in zip(spatial, temporal)]


class PriorFPN(nn.Module):
    """list of (B, C_j, h_j, w_j) finest first -> list of (B, channels, h_j, w_j).

    ``top_down``: ``"lateral"`` or ``"cumulative"`` (module docstring). Upsampling is
    nearest to the finer level's size.
    """

    def __init__(
        self, in_channels: Sequence[int], channels: int = 64, top_down: str = "lateral"
    ) -> None:
        super().__init__()
        if top_down not in FPN_TOP_DOWN:
            raise ValueError(
                f"MODEL.DIFF_VPS.FPN_TOP_DOWN must be one of {FPN_TOP_DOWN}, got {top_down!r}"
            )
        self.lateral = nn.ModuleList([nn.Conv2d(c, channels, 1) for c in in_channels])
        self.output = nn.ModuleList(
            [nn.Conv2d(channels, channels, 3, padding=1) for _ in in_channels]
        )
        self.channels = channels
        self.top_down = top_down

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        if len(feats) != len(self.lateral):
            raise ValueError(f"PriorFPN: {len(self.lateral)} levels expected, got {len(feats)}")
        lat = [conv(f) for conv, f in zip(self.lateral, feats)]
        merged = list(lat)
        for j in range(len(lat) - 2, -1, -1):
            above = merged[j + 1] if self.top_down == "cumulative" else lat[j + 1]
            merged[j] = lat[j] + F.interpolate(above, size=lat[j].shape[-2:], mode="nearest")
        return [conv(m) for conv, m in zip(self.output, merged)]
