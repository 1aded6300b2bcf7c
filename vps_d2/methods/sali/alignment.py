"""SAM, the short-term alignment module: pyramid deformable alignment + non-local harmonisation.

* :class:`ModulatedDeformConv2d` -- deformable convolution v2 (offsets and a modulation
  mask per sampling point, ``deformable_groups`` offset groups) through
  ``torchvision.ops.deform_conv2d`` (CPU and CUDA, no custom extension); while
  ``torch.export`` traces (tools/export.py), the plain-op equivalent of
  :mod:`vps_d2.modeling.layers.deform_conv`, which ONNX can express.
* :class:`DeformAlignConv` -- a modulated deformable 3x3 conv whose offsets and mask are
  predicted from a condition feature by a zero-initialised 3x3 conv (so it starts as a
  plain convolution scaled by sigmoid(0) = 0.5).
* :class:`PyramidAlignment` -- aligns a source feature pyramid (a neighbour frame, or the
  memory readout) to a reference pyramid (the current frame), coarse to fine: at every
  level the offset features are computed from the concatenated pair (two convs at the
  coarsest level); at the finer levels they are fused with the coarser level's offset
  features upsampled x2 (values scaled by 2, the size ratio), and the aligned feature is
  fused with the coarser aligned feature upsampled (EDVR's pyramid, without the final
  cascading stage, as SALI's public code). The levels are the model's backbone levels
  (strides 8, 16, 32): they form a x2 pyramid of equal channel counts.
* :class:`NonLocalFusion` -- the harmonisation of two maps of one level (SALI's public
  code; the paper: "concatenation, self-attention plus a convolution"): x = [a, b] on
  channels (2C); a non-local block on x (theta = x, phi = max-pool(x), g = max-pool(1x1
  conv(x)) with C channels, softmax(theta^T phi), zero-initialised 1x1 output conv,
  residual); then a 1x1 conv of [x, z] (4C -> 2C) and a 3x3 conv + BN (2C -> C).
* :class:`ShortTermAlignment` -- the whole SAM, per level.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from vps_d2.modeling.layers import ConvNormAct
from vps_d2.modeling.layers.deform_conv import deform_conv2d

__all__ = [
    "DeformAlignConv",
    "ModulatedDeformConv2d",
    "NonLocalFusion",
    "PyramidAlignment",
    "ShortTermAlignment",
    "effective_pool_size",
]


class ModulatedDeformConv2d(nn.Module):
    """Deformable convolution v2 with stride 1 and 'same' padding.

    forward(x (B, Cin, H, W), offset (B, 2*G*k*k, H, W), mask (B, G*k*k, H, W)) ->
    (B, Cout, H, W). Offsets are (dy, dx) pairs per group and kernel point (torchvision's
    layout); ``mask`` multiplies each sampled value (1 everywhere and zero offsets give a
    plain convolution with the same weight).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        deformable_groups: int = 8,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        if in_channels % deformable_groups:
            raise ValueError(
                f"ModulatedDeformConv2d: in_channels {in_channels} (MODEL.SALI."
                f"CHANNELS) not divisible by deformable_groups {deformable_groups} "
                "(MODEL.SALI.SAM.DEFORMABLE_GROUPS)"
            )
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.deformable_groups = deformable_groups
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    @property
    def num_points(self) -> int:
        """Sampling points per offset group (k * k)."""
        return self.kernel_size * self.kernel_size

    def forward(self, x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Always computed in float32, outside autocast: torchvision's CPU kernel has no
        bfloat16/float16 version and no CPU autocast rule (CPU AMP failed in it), and
        bilinear sampling at fractional offsets is what low precision hurts most. The output
        is float32 (the next layer under autocast casts it as it needs)."""
        pad = self.dilation * (self.kernel_size // 2)
        with torch.autocast(x.device.type, enabled=False):
            return deform_conv2d(
                x.float().contiguous(),
                offset.float().contiguous(),
                self.weight.float(),
                None if self.bias is None else self.bias.float(),
                padding=pad,
                dilation=self.dilation,
                mask=mask.float().contiguous(),
            )


class DeformAlignConv(nn.Module):
    """Modulated deformable conv of ``x`` steered by ``cond``.

    forward(x (B, C, H, W), cond (B, C_cond, H, W)) -> (B, C, H, W). A zero-initialised 3x3
    conv on ``cond`` gives 2*G*9 offsets and G*9 mask logits (mask = sigmoid).
    """

    def __init__(self, channels: int, cond_channels: int, deformable_groups: int = 8) -> None:
        super().__init__()
        self.dcn = ModulatedDeformConv2d(channels, channels, 3, deformable_groups)
        n = deformable_groups * self.dcn.num_points
        self.num_offsets = 2 * n
        self.offset_mask = nn.Conv2d(cond_channels, 3 * n, 3, padding=1)
        nn.init.zeros_(self.offset_mask.weight)
        nn.init.zeros_(self.offset_mask.bias)

    def offsets_and_mask(self, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cond (B, C_cond, H, W) -> offset (B, 2*G*9, H, W), mask in (0, 1) (B, G*9, H, W)."""
        om = self.offset_mask(cond)
        return om[:, : self.num_offsets], om[:, self.num_offsets :].sigmoid()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        offset, mask = self.offsets_and_mask(cond)
        return self.dcn(x, offset, mask)


def _conv3x3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1)


class PyramidAlignment(nn.Module):
    """Align a source pyramid to a reference pyramid, coarse to fine (see module docstring).

    forward(src, ref): two lists of ``num_levels`` tensors (B, C, H_l, W_l), finest first,
    each level half the size of the previous one -> aligned src, same shapes.
    """

    def __init__(self, *, channels: int = 32, num_levels: int = 3, deformable_groups: int = 8):
        super().__init__()
        c = channels
        self.num_levels = num_levels
        coarsest = num_levels - 1
        self.offset_in = nn.ModuleList([_conv3x3(2 * c, c) for _ in range(num_levels)])
        # The coarsest level's second offset conv (no coarser offsets to fuse there).
        self.offset_top = _conv3x3(c, c)
        # Fuse with the coarser level's offset features (not on the coarsest level).
        self.offset_fuse = nn.ModuleList([_conv3x3(2 * c, c) for _ in range(coarsest)])
        self.offset_out = nn.ModuleList([_conv3x3(c, c) for _ in range(coarsest)])
        self.dcn = nn.ModuleList(
            [DeformAlignConv(c, c, deformable_groups) for _ in range(num_levels)]
        )
        self.feat_fuse = nn.ModuleList([_conv3x3(2 * c, c) for _ in range(coarsest)])
        self.act = nn.LeakyReLU(0.1, inplace=True)

    def forward(
        self, src: Sequence[torch.Tensor], ref: Sequence[torch.Tensor]
    ) -> list[torch.Tensor]:
        if len(src) != self.num_levels or len(ref) != self.num_levels:
            raise ValueError(
                f"PyramidAlignment: expected {self.num_levels} levels, got "
                f"{len(src)} and {len(ref)}"
            )
        out: list[torch.Tensor] = [None] * self.num_levels  # type: ignore[list-item]
        prev_offset = prev_feat = None
        for lvl in reversed(range(self.num_levels)):
            s, r = src[lvl], ref[lvl]
            offset = self.act(self.offset_in[lvl](torch.cat([s, r], 1)))
            if prev_offset is None:
                offset = self.act(self.offset_top(offset))
            else:
                scale = s.shape[-2] / prev_offset.shape[-2]
                up = (
                    F.interpolate(
                        prev_offset, size=s.shape[-2:], mode="bilinear", align_corners=False
                    )
                    * scale
                )
                offset = self.act(self.offset_fuse[lvl](torch.cat([offset, up], 1)))
                offset = self.act(self.offset_out[lvl](offset))
            feat = self.dcn[lvl](s, offset)
            if prev_feat is not None:
                up = F.interpolate(
                    prev_feat, size=s.shape[-2:], mode="bilinear", align_corners=False
                )
                feat = self.feat_fuse[lvl](torch.cat([feat, up], 1))
            if lvl > 0:
                feat = self.act(feat)
            out[lvl] = feat
            prev_offset, prev_feat = offset, feat
        return out


def effective_pool_size(window: int, height: int, width: int) -> int:
    """The max-pool window actually used: ``window`` clamped to [1, min(height, width)]."""
    return max(1, min(int(window), height, width))


class NonLocalFusion(nn.Module):
    """Fuse two maps of one level: channel concatenation, non-local block, convs.

    forward(a (B, C, H, W), b (B, C, H, W)) -> (B, C, H, W). With x = [a, b] (2C channels):
    ``z = x + W(softmax(theta^T phi) g)`` (theta = x (B, HW, 2C), phi = max-pool(x),
    g = max-pool(1x1 conv(x)) with C channels, W a zero-initialised 1x1 conv C -> 2C), then
    ``proj(fuse([x, z]))`` (1x1 conv 4C -> 2C, 3x3 conv + BN 2C -> C, no activation). The
    max-pool window is ``pool_size`` (clamped to the feature size,
    :func:`effective_pool_size`), floor mode by default as the public code (``ceil_mode``:
    the last partial window is pooled too).
    """

    def __init__(self, *, channels: int = 32, pool_size: int = 2, ceil_mode: bool = False) -> None:
        super().__init__()
        c2 = 2 * channels
        self.pool_size = int(pool_size)
        self.ceil_mode = bool(ceil_mode)
        self.g = nn.Conv2d(c2, channels, 1)
        self.out = nn.Conv2d(channels, c2, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.fuse = nn.Conv2d(2 * c2, c2, 1)
        self.proj = ConvNormAct(c2, channels, 3, act="")

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        k = effective_pool_size(self.pool_size, x.shape[-2], x.shape[-1])
        return F.max_pool2d(x, k, stride=k, ceil_mode=self.ceil_mode) if k > 1 else x

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        x = torch.cat([a, b], 1)  # B, 2C, H, W
        n, c2, h, w = x.shape
        theta = x.flatten(2).transpose(1, 2)  # B, HW, 2C
        phi = self._pool(x).flatten(2)  # B, 2C, h'w'
        g = self._pool(self.g(x)).flatten(2).transpose(1, 2)  # B, h'w', C
        attn = torch.softmax(torch.bmm(theta, phi), dim=-1)  # B, HW, h'w'
        y = torch.bmm(attn, g).transpose(1, 2).reshape(n, -1, h, w)  # B, C, H, W
        z = x + self.out(y)
        return self.proj(self.fuse(torch.cat([x, z], 1)))


class ShortTermAlignment(nn.Module):
    """SAM: align the neighbour pyramid to the current one, then harmonise each level.

    forward(current, neighbour): lists of ``num_levels`` tensors (B, C, H_l, W_l), finest
    first -> short-term features ``harmonise[l](current, align(neighbour, current))``, same
    shapes. With ``use_alignment=False`` (the "w/o FA" ablation) the neighbour is harmonised
    unaligned and :attr:`align` is None. The model may also use :attr:`align` and
    :attr:`harmonise` separately (MODEL.SALI.DATA_FLOW "public").
    """

    def __init__(
        self,
        *,
        channels: int = 32,
        num_levels: int = 3,
        deformable_groups: int = 8,
        pool_sizes: Sequence[int] = (2, 4, 8),
        pool_ceil_mode: bool = False,
        use_alignment: bool = True,
    ) -> None:
        super().__init__()
        if len(pool_sizes) != num_levels:
            raise ValueError(
                f"MODEL.SALI.SAM.POOL_SIZES needs {num_levels} values (one per "
                f"level), got {list(pool_sizes)}"
            )
        self.align = (
            PyramidAlignment(
                channels=channels, num_levels=num_levels, deformable_groups=deformable_groups
            )
            if use_alignment
            else None
        )
        self.harmonise = nn.ModuleList(
            [
                NonLocalFusion(channels=channels, pool_size=p, ceil_mode=pool_ceil_mode)
                for p in pool_sizes
            ]
        )

    def forward(
        self, current: Sequence[torch.Tensor], neighbour: Sequence[torch.Tensor]
    ) -> list[torch.Tensor]:
        if self.align is not None:
            neighbour = self.align(neighbour, current)
        return [h(c, n) for h, c, n in zip(self.harmonise, current, neighbour)]
