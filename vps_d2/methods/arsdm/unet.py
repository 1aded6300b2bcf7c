"""The mask-conditioned U-Net of ArSDM (SDM's semantic diffusion U-Net, as the public code).

Structure (``channel_mult`` levels, finest first; ``ds`` the downsampling factor):

* time embedding: sinusoidal(``C``) -> Linear(C, 4C) -> SiLU -> Linear(4C, 4C);
* encoder: conv3x3(3 -> C), then per level ``num_res_blocks`` :class:`ResBlock` (GroupNorm
  with affine, time scale-shift), each followed by an :class:`AttentionBlock` where ``ds`` is
  in ``attention_resolutions``, then a down-sampling block except at the last level. The
  encoder sees the noisy image only, as in SDM;
* middle: :class:`SPADEResBlock`, attention, :class:`SPADEResBlock`;
* decoder: per level (coarsest first) ``num_res_blocks + 1`` :class:`SPADEResBlock` on the
  concatenated skip features, attention where ``ds`` matches, an up-sampling block except at
  the finest level;
* output: GroupNorm -> SiLU -> zero-initialised conv3x3 -> the predicted noise (3 channels).

The mask enters every decoder and middle block through :class:`SPADEGroupNorm`: GroupNorm
without affine, and per-pixel gamma / beta from the one-hot mask resized (nearest) to the
feature size -> conv3x3(2 -> hidden) -> ReLU -> conv3x3 (gamma) and conv3x3 (beta);
``x * (1 + gamma) + beta``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint

from vps_d2.modeling.layers import MultiHeadAttention

__all__ = [
    "AttentionBlock",
    "ResBlock",
    "SPADEGroupNorm",
    "SPADEResBlock",
    "SemanticUNet",
    "timestep_embedding",
]


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) steps t (N,) -> (N, dim): cos then sin of
    ``t * max_period ** (-i / (dim / 2))``, a zero column when ``dim`` is odd."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    )
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 (stable under mixed precision), output in the input's
    dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type(x.dtype)


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class SPADEGroupNorm(nn.Module):
    """GroupNorm (no affine) modulated by the mask: x (N, C, H, W), cond (N, K, h, w) one-hot
    -> (N, C, H, W) = ``norm(x) * (1 + gamma) + beta``, gamma / beta (N, C, H, W) from the
    mask resized (nearest) to (H, W)."""

    def __init__(self, channels: int, cond_channels: int, hidden: int = 128, groups: int = 32):
        super().__init__()
        self.norm = GroupNorm32(groups, channels, affine=False)
        self.mlp_shared = nn.Sequential(
            nn.Conv2d(cond_channels, hidden, 3, padding=1), nn.ReLU(inplace=True)
        )
        self.mlp_gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.mlp_beta = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        cond = F.interpolate(cond.to(x.dtype), size=x.shape[-2:], mode="nearest")
        actv = self.mlp_shared(cond)
        return self.norm(x) * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


class _Resample(nn.Module):
    """x2 nearest up-sampling (``up``) or 2x2 average pooling (down), no parameters."""

    def __init__(self, up: bool) -> None:
        super().__init__()
        self.up = up

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.up:
            return F.interpolate(x, scale_factor=2, mode="nearest")
        return F.avg_pool2d(x, 2)


class ResBlock(nn.Module):
    """Residual block with time embedding (guided diffusion's): x (N, C_in, H, W), emb
    (N, E), cond (ignored here) -> (N, C_out, H', W'), H' = 2H (``up``), H / 2 (``down``) or
    H. ``spade``: both norms are :class:`SPADEGroupNorm` on the mask (SDM's decoder block)."""

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        out_channels: int | None = None,
        *,
        dropout: float = 0.0,
        scale_shift: bool = True,
        up: bool = False,
        down: bool = False,
        spade: bool = False,
        cond_channels: int = 2,
        spade_hidden: int = 128,
        groups: int = 32,
    ) -> None:
        super().__init__()
        out = out_channels or channels
        self.spade = spade
        self.scale_shift = scale_shift
        if spade:
            self.in_norm = SPADEGroupNorm(channels, cond_channels, spade_hidden, groups)
            self.out_norm = SPADEGroupNorm(out, cond_channels, spade_hidden, groups)
        else:
            self.in_norm = GroupNorm32(groups, channels)
            self.out_norm = GroupNorm32(groups, out)
        self.in_conv = nn.Conv2d(channels, out, 3, padding=1)
        self.updown = up or down
        self.h_upd = _Resample(up) if self.updown else nn.Identity()
        self.x_upd = _Resample(up) if self.updown else nn.Identity()
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_channels, 2 * out if scale_shift else out)
        )
        self.out_layers = nn.Sequential(
            nn.SiLU(), nn.Dropout(dropout), _zero(nn.Conv2d(out, out, 3, padding=1))
        )
        self.skip = nn.Identity() if out == channels else nn.Conv2d(channels, out, 1)

    def _norm(self, norm: nn.Module, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return norm(x, cond) if self.spade else norm(x)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = F.silu(self._norm(self.in_norm, x, cond))
        h = self.in_conv(self.h_upd(h))
        x = self.x_upd(x)
        e = self.emb_layers(emb).type(h.dtype)[..., None, None]
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = self._norm(self.out_norm, h, cond) * (1 + scale) + shift
        else:
            h = self._norm(self.out_norm, h + e, cond)
        return self.skip(x) + self.out_layers(h)


def SPADEResBlock(*args, **kwargs) -> ResBlock:  # noqa: N802  (a block kind, as a class)
    """:class:`ResBlock` with SPADE-GroupNorm on the mask (SDM's decoder block)."""
    return ResBlock(*args, spade=True, **kwargs)


class AttentionBlock(nn.Module):
    """Spatial self-attention with a residual: x (N, C, H, W) -> (N, C, H, W); GroupNorm,
    ``C / head_channels`` heads over the H x W tokens, zero-initialised output projection."""

    def __init__(self, channels: int, head_channels: int = 64, groups: int = 32) -> None:
        super().__init__()
        if channels % head_channels:
            raise ValueError(
                f"MODEL.ARSDM.UNET.NUM_HEAD_CHANNELS ({head_channels}) must divide the "
                f"attention width {channels}"
            )
        self.norm = GroupNorm32(groups, channels)
        self.attn = MultiHeadAttention(channels, channels // head_channels)
        _zero(self.attn.out_proj)

    def forward(self, x: torch.Tensor, emb=None, cond=None) -> torch.Tensor:
        n, c, h, w = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # N, HW, C
        out = self.attn(tokens).transpose(1, 2).reshape(n, c, h, w)
        return x + out


class _Downsample(nn.Module):
    """Strided conv3x3 (``resblock_updown`` False)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x, emb=None, cond=None):
        return self.op(x)


class _Upsample(nn.Module):
    """Nearest x2 then conv3x3 (``resblock_updown`` False)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x, emb=None, cond=None):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class _Stage(nn.ModuleList):
    """Blocks called in order as ``block(x, emb, cond)``; with ``checkpointing`` in training
    each block is recomputed in the backward pass."""

    checkpointing = False

    def forward(self, x, emb, cond):
        for block in self:
            if isinstance(block, nn.Conv2d):
                x = block(x)
            elif self.checkpointing and torch.is_grad_enabled():
                x = torch.utils.checkpoint.checkpoint(block, x, emb, cond, use_reentrant=False)
            else:
                x = block(x, emb, cond)
        return x


class SemanticUNet(nn.Module):
    """Noise prediction eps_theta(x_t, t, mask): x (N, in_channels, H, W) in [-1, 1] scale,
    t (N,) integer steps, cond (N, cond_channels, H, W) one-hot mask -> (N, out_channels, H,
    W). H and W must be multiples of ``2 ** (len(channel_mult) - 1)``."""

    def __init__(
        self,
        *,
        in_channels: int = 3,
        out_channels: int = 3,
        model_channels: int = 256,
        channel_mult: Sequence[int] = (1, 1, 2, 2, 4, 4),
        num_res_blocks: int = 2,
        attention_resolutions: Sequence[int] = (8, 16, 32),
        num_head_channels: int = 64,
        cond_channels: int = 2,
        spade_hidden: int = 128,
        groups: int = 32,
        dropout: float = 0.0,
        resblock_updown: bool = True,
        scale_shift: bool = True,
        gradient_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        self.model_channels = model_channels
        self.cond_channels = cond_channels
        self.num_levels = len(channel_mult)
        emb = 4 * model_channels
        self.time_embed = nn.Sequential(
            nn.Linear(model_channels, emb), nn.SiLU(), nn.Linear(emb, emb)
        )
        common = dict(dropout=dropout, scale_shift=scale_shift, groups=groups)
        spade = dict(cond_channels=cond_channels, spade_hidden=spade_hidden, **common)

        def attention(ch):
            return AttentionBlock(ch, num_head_channels, groups)

        ch = int(channel_mult[0] * model_channels)
        self.input_blocks = nn.ModuleList([_Stage([nn.Conv2d(in_channels, ch, 3, padding=1)])])
        skips, ds = [ch], 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                out = int(mult * model_channels)
                layers: list[nn.Module] = [ResBlock(ch, emb, out, **common)]
                ch = out
                if ds in attention_resolutions:
                    layers.append(attention(ch))
                self.input_blocks.append(_Stage(layers))
                skips.append(ch)
            if level != len(channel_mult) - 1:
                down = ResBlock(ch, emb, ch, down=True, **common)
                self.input_blocks.append(_Stage([down if resblock_updown else _Downsample(ch)]))
                skips.append(ch)
                ds *= 2
        mid = [SPADEResBlock(ch, emb, ch, **spade), attention(ch)]
        self.middle_block = _Stage([*mid, SPADEResBlock(ch, emb, ch, **spade)])
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                out = int(model_channels * mult)
                layers = [SPADEResBlock(ch + skips.pop(), emb, out, **spade)]
                ch = out
                if ds in attention_resolutions:
                    layers.append(attention(ch))
                if level and i == num_res_blocks:
                    up = SPADEResBlock(ch, emb, ch, up=True, **spade)
                    layers.append(up if resblock_updown else _Upsample(ch))
                    ds //= 2
                self.output_blocks.append(_Stage(layers))
        self.out = nn.Sequential(
            GroupNorm32(groups, ch), nn.SiLU(), _zero(nn.Conv2d(ch, out_channels, 3, padding=1))
        )
        self.set_gradient_checkpointing(gradient_checkpointing)

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        for m in self.modules():
            if isinstance(m, _Stage):
                m.checkpointing = bool(enabled)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        mult = 2 ** (self.num_levels - 1)
        if x.shape[-2] % mult or x.shape[-1] % mult:
            raise ValueError(
                f"ArSDM U-Net: input {tuple(x.shape[-2:])} is not a multiple of {mult} "
                f"({self.num_levels} levels in MODEL.ARSDM.UNET.CHANNEL_MULT): set "
                "INPUT.SIZE_TRAIN and INPUT.SIZE_TEST to multiples"
            )
        emb = self.time_embed(timestep_embedding(t, self.model_channels).to(x.dtype))
        hs, h = [], x
        for stage in self.input_blocks:
            h = stage(h, emb, cond)
            hs.append(h)
        h = self.middle_block(h, emb, cond)
        for stage in self.output_blocks:
            h = stage(torch.cat([h, hs.pop()], dim=1), emb, cond)
        return self.out(h)
