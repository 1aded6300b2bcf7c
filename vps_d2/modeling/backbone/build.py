"""BACKBONE_REGISTRY, ShapeSpec and build_backbone."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn
from fvcore.common.registry import Registry

__all__ = ["BACKBONE_REGISTRY", "Backbone", "ShapeSpec", "build_backbone"]

BACKBONE_REGISTRY = Registry("BACKBONE")
BACKBONE_REGISTRY.__doc__ = """
Registry for backbones: ``fn(cfg) -> Backbone`` (a class with from_config or a function).
A backbone maps images (B, 3, H, W) to a dict of feature maps named "res2".."res5".
"""


@dataclass(frozen=True)
class ShapeSpec:
    """Channels and stride of one feature map (Detectron2's ShapeSpec)."""

    channels: int
    stride: int


class Backbone(nn.Module):
    """Base class: ``forward(x)`` with x (B, 3, H, W) returns ``{name: (B, C, H/s, W/s)}``."""

    def output_shape(self) -> dict[str, ShapeSpec]:
        raise NotImplementedError

    @property
    def size_divisibility(self) -> int:
        """Input sizes should be multiples of this (the largest stride)."""
        return max(s.stride for s in self.output_shape().values())


def build_backbone(cfg) -> Backbone:
    """Build ``cfg.MODEL.BACKBONE.NAME`` from BACKBONE_REGISTRY."""
    name = cfg.MODEL.BACKBONE.NAME
    try:
        builder = BACKBONE_REGISTRY.get(name)
    except KeyError as e:
        raise KeyError(
            f"MODEL.BACKBONE.NAME = {name!r} is not registered; available: "
            f"{sorted(k for k, _ in BACKBONE_REGISTRY)}"
        ) from e
    backbone = builder(cfg)
    if not isinstance(backbone, Backbone):
        raise TypeError(f"Backbone {name} must return a vps_d2 Backbone, got {type(backbone)}")
    return backbone
