"""Proposal-generative networks (PGN): PGN_REGISTRY, the CFFM head and its FuseHead ablation.

A PGN maps the backbone levels of a clip to (the method's README.md):

* ``proposals`` e1 (B, T, num_outputs, H/4, W/4): q = 4S proposal maps per frame when an AEN
  follows, the mask logits (num_outputs 1) when the PGN runs alone;
* ``stage_features`` F' {level: (B, T, C', H_l, W_l)}: the per-level features the PGN
  computed (and, for CFFM, refined), at each backbone level's resolution;
* ``aux_logits`` (B, T, 1, H/4, W/4) or None: its own per-frame prediction (CFFM's per-frame
  classifier), built only for the optional auxiliary loss;
* ``memory``: what it keeps of the window for later windows (CFFM: the fused 1/8 maps of
  the window's new frames).

Both heads start like CFFM's decoder: a per-pixel Linear of each level to C (256), bilinear
to 1/4, concatenation (4C) -> 1x1 conv + BN + ReLU to C (the fused map). ``FuseHead`` stops
there (Dropout2d + 1x1 classifier). ``CFFM`` takes the fused map to 1/8, refines it with
cross-frame feature mining (:mod:`.cffm`), brings it back to 1/4 and classifies
concat(fused, refined) (2C -> num_outputs). Its F'_l are the level projections plus the
refined map resized to the level.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from vps_d2.config import configurable
from vps_d2.modeling.backbone import ShapeSpec
from vps_d2.modeling.layers import ConvNormAct
from vps_d2.utils.registry import Registry

from .cffm import CrossFrameMining

__all__ = ["CFFM", "PGN_REGISTRY", "FuseHead", "PGNOutput", "build_pgn"]

PGN_REGISTRY = Registry("PGN")
PGN_REGISTRY.__doc__ = """
Proposal-generative networks of PGN+AEN (MODEL.PGN_AEN.PGN.NAME), built as
``cls(cfg, input_shape, num_outputs=..., aux_head=...)``; forward(features, past, num_new)
-> :class:`PGNOutput`.
"""


@dataclass
class PGNOutput:
    """What a PGN gives the AEN and the loss (shapes in the module docstring)."""

    proposals: torch.Tensor
    stage_features: dict[str, torch.Tensor]
    aux_logits: torch.Tensor | None = None
    memory: dict = field(default_factory=dict)


def build_pgn(
    cfg, input_shape: Mapping[str, ShapeSpec], num_outputs: int, aux_head: bool = False
) -> nn.Module:
    """Build ``cfg.MODEL.PGN_AEN.PGN.NAME`` from PGN_REGISTRY."""
    name = cfg.MODEL.PGN_AEN.PGN.NAME
    try:
        cls = PGN_REGISTRY.get(name)
    except KeyError as e:
        raise KeyError(
            f"MODEL.PGN_AEN.PGN.NAME = {name!r} is not registered; available: "
            f"{sorted(k for k, _ in PGN_REGISTRY)}"
        ) from e
    return cls(cfg, input_shape, num_outputs=num_outputs, aux_head=aux_head)


def _check_levels(input_shape: Mapping[str, ShapeSpec], in_features: Sequence[str]) -> None:
    missing = [f for f in in_features if f not in input_shape]
    if missing:
        raise KeyError(
            f"MODEL.PGN_AEN.IN_FEATURES {missing} not produced by the backbone "
            f"(it gives {list(input_shape)})"
        )
    strides = [input_shape[f].stride for f in in_features]
    if strides[0] != 4 or any(b != 2 * a for a, b in zip(strides, strides[1:])):
        raise ValueError(
            f"MODEL.PGN_AEN.IN_FEATURES {list(in_features)} must start at stride "
            f"4 with strides doubling (got {strides})"
        )


class FuseHead(nn.Module):
    """Per-level projection + fuse + classifier (CFFM without the mining).

    forward(features {level: (B, T, C_l, H_l, W_l)}, past [(position, memory dict)] = (),
    num_new = T) -> :class:`PGNOutput`; F'_l = the level's projection (B, T, C, H_l, W_l).
    """

    @configurable
    def __init__(
        self,
        *,
        input_shape: Mapping[str, ShapeSpec],
        in_features: Sequence[str],
        channels: int = 256,
        num_outputs: int = 1,
        dropout: float = 0.1,
        aux_head: bool = False,
    ) -> None:
        super().__init__()
        in_features = list(in_features)
        _check_levels(input_shape, in_features)
        self.in_features = in_features
        self.channels = int(channels)
        # per-pixel Linear of each level (CFFM / SegFormer's "linear_c")
        self.proj = nn.ModuleList(nn.Linear(input_shape[f].channels, channels) for f in in_features)
        self.fuse = ConvNormAct(len(in_features) * channels, channels, 1, norm="BN", act="relu")
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(self._classifier_in(), num_outputs, 1)
        self.aux_classifier = nn.Conv2d(channels, 1, 1) if aux_head else None
        self.num_outputs = int(num_outputs)

    def _classifier_in(self) -> int:
        return self.channels

    @classmethod
    def from_config(cls, cfg, input_shape, num_outputs: int = 1, aux_head: bool = False):
        p = cfg.MODEL.PGN_AEN.PGN
        return {
            "input_shape": input_shape,
            "in_features": list(cfg.MODEL.PGN_AEN.IN_FEATURES),
            "channels": p.CHANNELS,
            "num_outputs": num_outputs,
            "dropout": p.DROPOUT,
            "aux_head": aux_head,
        }

    @property
    def stage_channels(self) -> dict[str, int]:
        """Channels of each F'_l."""
        return {f: self.channels for f in self.in_features}

    def project(
        self, features: Mapping[str, torch.Tensor]
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """{level: (N, C_l, H_l, W_l)} -> (per-level projections [(N, C, H_l, W_l)], fused
        (N, C, H/4, W/4))."""
        projs = []
        for lin, f in zip(self.proj, self.in_features):
            projs.append(lin(features[f].permute(0, 2, 3, 1)).permute(0, 3, 1, 2))
        size = projs[0].shape[-2:]
        ups = [projs[0]] + [
            F.interpolate(p, size=size, mode="bilinear", align_corners=False) for p in projs[1:]
        ]
        return projs, self.fuse(torch.cat(ups[::-1], dim=1))

    def forward(
        self, features: Mapping[str, torch.Tensor], past: Sequence = (), num_new: int | None = None
    ) -> PGNOutput:
        b, t = features[self.in_features[0]].shape[:2]
        flat = {f: features[f].flatten(0, 1) for f in self.in_features}
        projs, fused = self.project(flat)
        proposals = self.classifier(self.dropout(fused))
        aux = self.aux_classifier(self.dropout(fused)) if self.aux_classifier is not None else None
        return PGNOutput(
            proposals=proposals.unflatten(0, (b, t)),
            stage_features={f: p.unflatten(0, (b, t)) for f, p in zip(self.in_features, projs)},
            aux_logits=None if aux is None else aux.unflatten(0, (b, t)),
        )


class CFFM(FuseHead):
    """CFFM head adapted to clips (see the module docstring and :mod:`.cffm`).

    forward(features {level: (B, T, C_l, H_l, W_l)}, past [(position, {"fused": (B, C, h, w)})]
    the memory's past frames (position < 0, relative to the window's first frame),
    num_new = T) -> :class:`PGNOutput`, ``memory`` = {"fused": (B, num_new, C, h, w)} of the
    window's new frames (the 1/8 fused maps later windows use as references).
    """

    @configurable
    def __init__(
        self,
        *,
        targets: str = "all",
        depth: int = 2,
        num_heads: int = 8,
        mlp_ratio: float = 4.0,
        window_size: int = 7,
        expand_size: int = 3,
        target_pool_neighbourhood: int = 5,
        num_references: int = 3,
        ref_pool_sizes: Sequence[int] = (2, 3, 7),
        ref_neighbourhoods: Sequence[int] = (3, 5, 7),
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if targets not in ("all", "last"):
            raise ValueError(f"MODEL.PGN_AEN.CFFM.TARGETS must be 'all' or 'last', got {targets!r}")
        self.targets = targets
        self.mining = CrossFrameMining(
            self.channels,
            depth=depth,
            num_heads=num_heads,
            num_references=num_references,
            window_size=window_size,
            expand_size=expand_size,
            target_pool_neighbourhood=target_pool_neighbourhood,
            ref_pool_sizes=list(ref_pool_sizes),
            ref_neighbourhoods=list(ref_neighbourhoods),
            mlp_ratio=mlp_ratio,
        )

    def _classifier_in(self) -> int:
        return 2 * self.channels

    @classmethod
    def from_config(cls, cfg, input_shape, num_outputs: int = 1, aux_head: bool = False):
        c = cfg.MODEL.PGN_AEN.CFFM
        return {
            **FuseHead.from_config(cfg, input_shape, num_outputs, aux_head),
            "targets": c.TARGETS,
            "depth": c.DEPTH,
            "num_heads": c.NUM_HEADS,
            "mlp_ratio": c.MLP_RATIO,
            "window_size": c.WINDOW_SIZE,
            "expand_size": c.EXPAND_SIZE,
            "target_pool_neighbourhood": c.TARGET_POOL_NEIGHBOURHOOD,
            "num_references": c.NUM_REFERENCES,
            "ref_pool_sizes": list(c.REF_POOL_SIZES),
            "ref_neighbourhoods": list(c.REF_NEIGHBOURHOODS),
        }

    def forward(
        self, features: Mapping[str, torch.Tensor], past: Sequence = (), num_new: int | None = None
    ) -> PGNOutput:
        b, t = features[self.in_features[0]].shape[:2]
        num_new = t if num_new is None else int(num_new)
        flat = {f: features[f].flatten(0, 1) for f in self.in_features}
        projs, fused = self.project(flat)  # fused: B*T, C, H/4, W/4
        h4, w4 = fused.shape[-2:]
        # CFFM mines at 1/8 of the input
        size8 = ((h4 + 1) // 2, (w4 + 1) // 2)
        f8 = F.interpolate(fused, size=size8, mode="bilinear", align_corners=False)
        f8 = f8.unflatten(0, (b, t))  # B, T, C, h8, w8
        past = [(pos, mem["fused"]) for pos, mem in past]
        frames = torch.cat([f8] + [m[:, None] for _, m in past], dim=1) if past else f8
        positions = list(range(t)) + [pos for pos, _ in past]
        targets = list(range(t)) if self.targets == "all" else [t - 1]
        refined = self.mining(frames, positions, targets)  # B, len(targets), C, h8, w8
        if self.targets == "last":
            refined = torch.cat([f8[:, :-1], refined], dim=1)
        refined = refined.flatten(0, 1)
        r4 = F.interpolate(refined, size=(h4, w4), mode="bilinear", align_corners=False)
        proposals = self.classifier(self.dropout(torch.cat([fused, r4], dim=1)))
        aux = self.aux_classifier(self.dropout(fused)) if self.aux_classifier is not None else None
        stage = {}
        for f, p in zip(self.in_features, projs):
            r = F.interpolate(refined, size=p.shape[-2:], mode="bilinear", align_corners=False)
            stage[f] = (p + r).unflatten(0, (b, t))
        return PGNOutput(
            proposals=proposals.unflatten(0, (b, t)),
            stage_features=stage,
            aux_logits=None if aux is None else aux.unflatten(0, (b, t)),
            memory={"fused": f8[:, t - num_new :]},
        )


PGN_REGISTRY.register(FuseHead)
PGN_REGISTRY.register(CFFM)
