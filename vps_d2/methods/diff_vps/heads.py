"""The denoising head f_theta(z_t, H, t) and its task heads.

* :class:`LogSNREmbedding`: log-SNR (B,) -> time embedding (B, D): learned sinusoidal
  features ``[x, sin(2 pi w x), cos(2 pi w x)]`` (``num_freqs`` learnable w) -> Linear ->
  GELU -> Linear;
* :class:`LatentFusion`: H_1 concatenated with the noisy mask latent z_t (B, C, h1, w1), in
  this order -> BN -> conv3x3 -> LeakyReLU -> conv3x3 -> (B, C, h1, w1), which replaces H_1;
* :class:`FiLM`: ``x * (1 + scale) + shift`` with (scale, shift) = Linear(SiLU(temb));
* :class:`DecodeHead`: per level 1x1 "MLP" C -> D with FiLM, resized to 1/4, concatenated
  coarsest level first (4D, SegFormer's order) -> 1x1 conv (no bias) -> F (B, D, h1, w1);
  mask predictor BN -> ReLU -> dropout -> 1x1 conv
  -> x0 mask logits (B, 1, h1, w1) (the head predicts the mask, not the noise);
* :class:`ClassHead`: global average of F -> Linear -> class logits (B, num_classes);
* :class:`BoxHead`: the conditioned levels resized to 1/4 and concatenated, coarsest first ->
  1x1 conv (no bias) -> global average -> MLP -> ReLU (the public code) or sigmoid -> box
  (B, 4) normalised (cx, cy, w, h).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from vps_d2.modeling.layers import MLP, ConvNormAct

__all__ = [
    "BOX_ACTIVATIONS",
    "BoxHead",
    "ClassHead",
    "DecodeHead",
    "FiLM",
    "LatentFusion",
    "LogSNREmbedding",
]

#: MODEL.DIFF_VPS.HEAD.BOX_ACT values: the box output's activation.
BOX_ACTIVATIONS = ("relu", "sigmoid")


def _resize(x: torch.Tensor, size) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class LogSNREmbedding(nn.Module):
    """log-SNR (B,) -> (B, dim). Input features: 1 + 2 * num_freqs."""

    def __init__(self, num_freqs: int = 8, dim: int = 1024) -> None:
        super().__init__()
        if num_freqs < 1 or dim < 1:
            raise ValueError(
                f"MODEL.DIFF_VPS.HEAD.TIME_FREQS ({num_freqs}) and TIME_DIM ({dim}) must be >= 1"
            )
        self.freqs = nn.Parameter(torch.randn(num_freqs))
        self.mlp = nn.Sequential(nn.Linear(1 + 2 * num_freqs, dim), nn.GELU(), nn.Linear(dim, dim))
        self.dim = dim

    def features(self, log_snr: torch.Tensor) -> torch.Tensor:
        """(B,) -> (B, 1 + 2 * num_freqs): [x, sin(2 pi w x), cos(2 pi w x)]."""
        x = log_snr.float()[:, None]
        arg = x * self.freqs[None] * (2 * math.pi)
        return torch.cat([x, arg.sin(), arg.cos()], dim=1)

    def forward(self, log_snr: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.features(log_snr))


class LatentFusion(nn.Module):
    """[H_1 (B, C, h, w), z_t (B, C_z, h, w)] -> BN -> conv3x3 (hidden) -> LeakyReLU ->
    conv3x3 -> (B, C, h, w)."""

    def __init__(self, latent_channels: int, channels: int, hidden: int = 256) -> None:
        super().__init__()
        cin = latent_channels + channels
        self.norm = nn.BatchNorm2d(cin)
        self.conv1 = ConvNormAct(cin, hidden, 3, norm="", act="leaky_relu")
        self.conv2 = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, z: torch.Tensor, h1: torch.Tensor) -> torch.Tensor:
        if z.shape[-2:] != h1.shape[-2:]:
            raise ValueError(
                f"LatentFusion: latent {tuple(z.shape)} and H_1 {tuple(h1.shape)} differ in size"
            )
        return self.conv2(self.conv1(self.norm(torch.cat([h1, z], dim=1))))


class FiLM(nn.Module):
    """Feature-wise modulation by the time embedding.

    forward: x (B, C, h, w), temb (B, time_dim) -> x * (1 + scale) + shift, with
    (scale, shift) = chunk(Linear(SiLU(temb)), 2), each (B, C).
    """

    def __init__(self, time_dim: int, channels: int) -> None:
        super().__init__()
        self.proj = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, 2 * channels))

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.proj(temb).to(x.dtype)[:, :, None, None].chunk(2, dim=1)
        return x * (1 + scale) + shift


class DecodeHead(nn.Module):
    """SegFormer-style all-MLP decode head with FiLM time conditioning.

    forward(levels: list of (B, C_j, h_j, w_j) finest first, temb (B, time_dim)) ->
    (F (B, channels, h_1, w_1), x0 mask logits (B, 1, h_1, w_1)).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        channels: int = 768,
        time_dim: int = 1024,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.proj = nn.ModuleList([nn.Conv2d(c, channels, 1) for c in in_channels])
        self.film = nn.ModuleList([FiLM(time_dim, channels) for _ in in_channels])
        self.fuse = nn.Conv2d(channels * len(in_channels), channels, 1, bias=False)
        self.predictor = nn.Sequential(
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Conv2d(channels, 1, 1),
        )

    def forward(self, levels: list[torch.Tensor], temb: torch.Tensor):
        size = levels[0].shape[-2:]
        feats = [
            _resize(film(proj(x), temb), size)
            for proj, film, x in zip(self.proj, self.film, levels)
        ]
        f = self.fuse(torch.cat(feats[::-1], dim=1))  # coarsest first
        return f, self.predictor(f)


class ClassHead(nn.Module):
    """F (B, C, h, w) -> global average -> Linear -> class logits (B, num_classes)."""

    def __init__(self, channels: int, num_classes: int = 6) -> None:
        super().__init__()
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.fc(f.mean(dim=(2, 3)))


class BoxHead(nn.Module):
    """Levels (B, C_j, h_j, w_j) finest first -> resized to the finest, concatenated
    coarsest first -> 1x1 conv (no bias) -> global average -> MLP (Linear, ReLU, Linear) ->
    ``act`` ("relu": the public code; "sigmoid") -> (B, 4) normalised (cx, cy, w, h)."""

    def __init__(
        self,
        in_channels: Sequence[int],
        channels: int = 64,
        hidden: int = 16,
        act: str = "relu",
    ) -> None:
        super().__init__()
        if act not in BOX_ACTIVATIONS:
            raise ValueError(
                f"MODEL.DIFF_VPS.HEAD.BOX_ACT must be one of {BOX_ACTIVATIONS}, got {act!r}"
            )
        self.reduce = nn.Conv2d(sum(in_channels), channels, 1, bias=False)
        self.mlp = MLP(channels, hidden, 4, num_layers=2)
        self.act = act

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        size = levels[0].shape[-2:]
        x = self.reduce(torch.cat([_resize(x, size) for x in levels[::-1]], dim=1))
        box = self.mlp(x.mean(dim=(2, 3)))
        return box.relu() if self.act == "relu" else box.sigmoid()
