"""Convolution + normalisation + activation (torchvision's Conv2dNormActivation, by name)."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch.nn as nn
from torchvision.ops import Conv2dNormActivation

from .activation import ACTIVATIONS, build_activation

__all__ = ["NORMS", "ConvNormAct"]

NORMS = ("BN", "GN", "")  # BatchNorm2d, GroupNorm, none


def _norm_layer(norm: str, num_groups: int, out_ch: int) -> Callable[[int], nn.Module] | None:
    if norm == "BN":
        return nn.BatchNorm2d
    if norm == "GN":
        if out_ch % num_groups:
            raise ValueError(
                f"ConvNormAct: GroupNorm with num_groups={num_groups} does not "
                f"divide out_ch={out_ch}"
            )
        return functools.partial(nn.GroupNorm, num_groups)
    if norm == "":
        return None
    raise ValueError(f"ConvNormAct: unknown norm {norm!r}; expected one of {list(NORMS)}")


class ConvNormAct(Conv2dNormActivation):
    """``nn.Sequential(Conv2d, norm, activation)`` built from names.

    forward: (B, in_ch, H, W) -> (B, out_ch, H', W') (H' = H, W' = W with stride 1 and the
    default padding).

    Children, in this order and named by position: ``"0"`` the ``nn.Conv2d``, then the norm
    (``"1"``) unless ``norm=""``, then the activation unless ``act=""``. So the state-dict
    keys are exactly those of ``nn.Sequential(nn.Conv2d(...), nn.BatchNorm2d(...),
    nn.ReLU())`` (``0.weight``, ``1.weight``, ``1.bias``, ``1.running_mean``, ...), and the
    conv is created (and randomly initialised) before the norm.

    Args:
        padding: None -> ``dilation * (kernel_size - 1) // 2`` per dimension ("same" for odd
            kernels at stride 1; kernel_size and dilation may be tuples).
        bias: None -> True only without a norm (a bias before a norm is redundant).
        norm: ``"BN"`` (BatchNorm2d), ``"GN"`` (GroupNorm with ``num_groups``) or ``""``.
        act: ``"relu"``, ``"gelu"``, ``"leaky_relu"`` (``negative_slope``), ``"silu"`` or
            ``""``; relu / leaky_relu / silu are in place (``inplace``).
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int | tuple[int, int] = 3,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | None = None,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool | None = None,
        norm: str = "BN",
        act: str = "relu",
        *,
        num_groups: int = 32,
        negative_slope: float = 0.01,
        inplace: bool = True,
    ) -> None:
        norm_layer = _norm_layer(norm, num_groups, out_ch)
        if act and act not in ACTIVATIONS:
            raise ValueError(
                f"ConvNormAct: unknown act {act!r}; expected one of {sorted(ACTIVATIONS)} or ''"
            )

        def act_layer(**_ignored) -> nn.Module:
            return build_activation(act, inplace=inplace, negative_slope=negative_slope)

        super().__init__(
            in_ch,
            out_ch,
            kernel_size,
            stride,
            padding,
            groups,
            norm_layer,
            act_layer if act else None,
            dilation,
            None,  # inplace is handled by build_activation
            bias,
        )
