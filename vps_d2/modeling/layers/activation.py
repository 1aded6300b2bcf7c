"""Activation modules by name, shared by the conv and transformer layers."""

from __future__ import annotations

import torch.nn as nn

__all__ = ["ACTIVATIONS", "build_activation"]

# name -> torch module class; "" (or None) means no activation
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
    "silu": nn.SiLU,
}
# the activations whose constructor takes ``inplace``
_INPLACE = ("relu", "leaky_relu", "silu")


def build_activation(
    name: str | None, *, inplace: bool = False, negative_slope: float = 0.01
) -> nn.Module | None:
    """``"relu" | "gelu" | "leaky_relu" | "silu"`` -> a new module; ``""`` or None -> None.

    ``inplace`` applies to relu, leaky_relu and silu; ``negative_slope`` to leaky_relu.
    Element-wise: any shape in, the same shape out.
    """
    if not name:
        return None
    if name not in ACTIVATIONS:
        raise ValueError(
            f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)} or '' for none"
        )
    kwargs: dict = {"inplace": inplace} if name in _INPLACE else {}
    if name == "leaky_relu":
        kwargs["negative_slope"] = negative_slope
    return ACTIVATIONS[name](**kwargs)
