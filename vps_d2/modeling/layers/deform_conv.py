"""Modulated deformable convolution (DCNv2) in plain PyTorch ops, for exporting.

``torchvision.ops.deform_conv2d`` has no ONNX mapping (``torchvision::deform_conv2d`` is a
custom op). :func:`deform_conv2d_torch` computes the same function with gathers and a
matrix product (ONNX: Gather/GatherElements, MatMul), following torchvision's convention:

* ``offset`` (B, 2 * G * K, Ho, Wo): for offset group g and kernel point k (row-major over
  the kh x kw kernel) the channels ``2 * (g * K + k)`` (dy) and ``+ 1`` (dx);
* ``mask`` (B, G * K, Ho, Wo): the modulation of point k of group g (None: 1);
* the sample at (y, x) is bilinear over the four neighbours, a neighbour outside the image
  counting as 0 (hence 0 when y <= -1, y >= H, x <= -1 or x >= W).

It equals torchvision's to float rounding (the tests check 1e-5); it is slower and holds the
sampled columns (B, C * K, Ho * Wo) in memory, so the eager models keep torchvision's op and
:func:`deform_conv2d` switches to this one while ``torch.export`` traces
(``torch.compiler.is_exporting()``).
"""

from __future__ import annotations

import torch
from torchvision.ops import deform_conv2d as _tv_deform_conv2d

__all__ = ["deform_conv2d", "deform_conv2d_torch"]


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def deform_conv2d_torch(
    input: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride=1,
    padding=0,
    dilation=1,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """torchvision's ``deform_conv2d`` (groups 1) in plain ops (see the module docstring).

    Args:
        input: (B, C, H, W); offset (B, 2 * G * K, Ho, Wo); weight (Cout, C, kh, kw);
        bias (Cout,) or None; mask (B, G * K, Ho, Wo) or None.
    Returns:
        (B, Cout, Ho, Wo).
    """
    b, c, h, w = input.shape
    cout, cin, kh, kw = weight.shape
    if cin != c:
        raise ValueError(f"deform_conv2d_torch: weight expects {cin} input channels, got {c}")
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    dh, dw = _pair(dilation)
    k = kh * kw
    ho, wo = offset.shape[-2:]
    g = offset.shape[1] // (2 * k)
    if g < 1 or offset.shape[1] != 2 * g * k or c % g:
        raise ValueError(
            f"deform_conv2d_torch: offset has {offset.shape[1]} channels, not 2 * groups * "
            f"{k} with groups dividing {c}"
        )
    dtype, dev = input.dtype, input.device
    off = offset.view(b, g, k, 2, ho, wo)
    # base sampling positions (K, Ho, Wo)
    # (expand + reshape, not repeat_interleave: older onnxscript versions cannot convert it)
    ky = (torch.arange(kh, device=dev, dtype=dtype) * dh).view(kh, 1).expand(kh, kw).reshape(k)
    kx = (torch.arange(kw, device=dev, dtype=dtype) * dw).view(1, kw).expand(kh, kw).reshape(k)
    oy = torch.arange(ho, device=dev, dtype=dtype) * sh - ph
    ox = torch.arange(wo, device=dev, dtype=dtype) * sw - pw
    y = ky.view(k, 1, 1) + oy.view(1, ho, 1) + off[:, :, :, 0]  # B, G, K, Ho, Wo
    x = kx.view(k, 1, 1) + ox.view(1, 1, wo) + off[:, :, :, 1]
    y0, x0 = torch.floor(y), torch.floor(x)
    ly, lx = y - y0, x - x0
    flat = input.reshape(b, g, (c // g), h * w)
    cols = input.new_zeros(b, g, c // g, k * ho * wo)
    for yy, xx, wgt in (
        (y0, x0, (1 - ly) * (1 - lx)),
        (y0, x0 + 1, (1 - ly) * lx),
        (y0 + 1, x0, ly * (1 - lx)),
        (y0 + 1, x0 + 1, ly * lx),
    ):
        inside = (yy >= 0) & (yy <= h - 1) & (xx >= 0) & (xx <= w - 1)
        idx = (yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)).long().view(b, g, 1, -1)
        vals = torch.gather(flat, 3, idx.expand(b, g, c // g, idx.shape[-1]))
        cols = cols + vals * (wgt * inside.to(dtype)).view(b, g, 1, -1)
    cols = cols.view(b, g, c // g, k, ho * wo)
    if mask is not None:
        cols = cols * mask.view(b, g, 1, k, ho * wo)
    cols = cols.reshape(b, c * k, ho * wo)  # channel-major, then kernel point: weight's order
    out = torch.matmul(weight.reshape(cout, c * k), cols).view(b, cout, ho, wo)
    return out if bias is None else out + bias.view(1, -1, 1, 1)


def deform_conv2d(
    input: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride=1,
    padding=0,
    dilation=1,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """torchvision's op, or :func:`deform_conv2d_torch` while ``torch.export`` traces."""
    if torch.compiler.is_exporting():
        return deform_conv2d_torch(input, offset, weight, bias, stride, padding, dilation, mask)
    return _tv_deform_conv2d(
        input, offset, weight, bias, stride=stride, padding=padding, dilation=dilation, mask=mask
    )
