"""MLPs: timm's two-layer ``Mlp`` (re-exported) and a DETR-style stack :class:`MLP`."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import Mlp

__all__ = ["MLP", "Mlp"]


class MLP(nn.Module):
    """``num_layers`` Linear layers with ReLU between them (none after the last).

    forward: (..., in_dim) -> (..., out_dim). Layer sizes in_dim -> hidden_dim -> ... ->
    hidden_dim -> out_dim (a single Linear in_dim -> out_dim when ``num_layers == 1``).
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"MLP: num_layers must be >= 1, got {num_layers}")
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        self.num_layers = num_layers
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < self.num_layers - 1:
                x = F.relu(x)
        return x
