"""BACKBONE_REGISTRY, ShapeSpec and build_backbone."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from vps_d2.utils.registry import Registry

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


def build_backbone(cfg, out_features=None) -> Backbone:
    """Build ``cfg.MODEL.BACKBONE.NAME`` from BACKBONE_REGISTRY.

    ``out_features``: the levels the method uses (e.g. ``["res2", "res3", "res4"]``). The
    backbone then returns exactly these and builds nothing after the deepest of them, so
    every parameter can receive a gradient (DDP requires it); a level the backbone cannot
    give is an error naming MODEL.BACKBONE.OUT_INDICES.
    """
    name = cfg.MODEL.BACKBONE.NAME
    builder = BACKBONE_REGISTRY.get_for(name, "MODEL.BACKBONE.NAME")
    backbone = builder(cfg) if out_features is None else builder(cfg, out_features=out_features)
    if not isinstance(backbone, Backbone):
        raise TypeError(f"Backbone {name} must return a vps_d2 Backbone, got {type(backbone)}")
    if out_features is not None:
        have = list(backbone.output_shape())
        missing = [f for f in out_features if f not in have]
        extra = [f for f in have if f not in out_features]
        if missing or extra:
            raise ValueError(
                f"MODEL.BACKBONE ({name}) gives {have} but the model uses {list(out_features)}: "
                f"adjust MODEL.BACKBONE.OUT_INDICES"
            )
    return backbone
