"""Appearance-embedding network (AEN): CRL -> CSA -> the parameter-free interaction with e1.

forward(stage F' {level: (B, T, C'_l, H_l, W_l)}, features F {level: (B, T, C_l, H_l, W_l)},
proposals e1 (B, T, q, H/4, W/4), memory [(B, T_m, q, D)] the past windows' CSA states)
-> (mask logits (B, T, 1, H/4, W/4), state (B, T, q, D) to store, or None without CSA).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn as nn

from vps_d2.modeling.backbone import ShapeSpec

from .crl import CrossScaleRegionLinking, LinearRegionTokens, RegionLinking
from .csa import CrossWiseScaleAlignment
from .interaction import semantic_interaction

__all__ = ["AEN", "build_aen"]


class AEN(nn.Module):
    """CRL (or its linear ablation) + CSA (optional) + :func:`semantic_interaction`."""

    def __init__(
        self, crl: CrossScaleRegionLinking, csa: CrossWiseScaleAlignment | None = None
    ) -> None:
        super().__init__()
        if csa is not None and csa.num_tokens != crl.num_tokens:
            raise ValueError(
                f"AEN: CRL gives {crl.num_tokens} tokens, CSA expects {csa.num_tokens}"
            )
        self.crl = crl
        self.csa = csa

    @property
    def num_tokens(self) -> int:
        """q, proposals per frame the PGN must give."""
        return self.crl.num_tokens

    def forward(
        self,
        stage: Mapping[str, torch.Tensor],
        features: Mapping[str, torch.Tensor],
        proposals: torch.Tensor,
        memory: Sequence[torch.Tensor] = (),
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        b, t = proposals.shape[:2]
        levels = self.crl.in_features
        e2 = self.crl(
            {f: stage[f].flatten(0, 1) for f in levels},
            {f: features[f].flatten(0, 1) for f in levels},
        )  # B*T, q, D
        e2 = e2.unflatten(0, (b, t))
        state = None
        if self.csa is not None:
            e3, state = self.csa(e2, memory)
        else:
            e3 = e2
        logits = semantic_interaction(proposals.flatten(0, 1), e3.flatten(0, 1))
        return logits.unflatten(0, (b, t)), state


def build_aen(
    cfg, stage_channels: Mapping[str, int], input_shape: Mapping[str, ShapeSpec], clip_length: int
) -> AEN:
    """AEN from MODEL.PGN_AEN (USE_CRL, USE_CSA, CRL.*, CSA.*)."""
    p = cfg.MODEL.PGN_AEN
    levels = list(p.IN_FEATURES)
    grids = [list(g) for g in p.CRL.GRIDS]
    if len(grids) != len(levels):
        raise ValueError(
            f"MODEL.PGN_AEN.CRL.GRIDS needs one [h, w] per level of IN_FEATURES "
            f"({levels}), got {grids}"
        )
    scales = []
    for f, grid in zip(levels, grids):
        cs, cf = stage_channels[f], input_shape[f].channels
        if p.USE_CRL:
            scales.append(
                RegionLinking(
                    cs,
                    cf,
                    num_regions=p.CRL.NUM_REGIONS,
                    embed_dim=p.EMBED_DIM,
                    grid=grid,
                    mlp_layers=p.CRL.MLP_LAYERS,
                    dilations=list(p.CRL.DILATIONS),
                    sharing=p.CRL.SHARING,
                )
            )
        else:
            scales.append(
                LinearRegionTokens(
                    cs,
                    cf,
                    num_regions=p.CRL.NUM_REGIONS,
                    embed_dim=p.EMBED_DIM,
                    grid=list(p.CRL.LINEAR_GRID),
                )
            )
    crl = CrossScaleRegionLinking(levels, scales)
    csa = None
    if p.USE_CSA:
        c = p.CSA
        csa = CrossWiseScaleAlignment(
            crl.num_tokens,
            dim=p.EMBED_DIM,
            clip_length=clip_length,
            num_heads=c.NUM_HEADS,
            enc_layers=c.ENC_LAYERS,
            centre_layers=c.CENTRE_LAYERS,
            dec_layers=c.DEC_LAYERS,
            ffn_dim=c.FFN_DIM,
            dropout=c.DROPOUT,
            pre_norm=c.PRE_NORM,
            pixel_decoder=c.PIXEL_DECODER,
            clip_wise=c.CLIP_WISE,
            frame_wise=c.FRAME_WISE,
            self_attention_scope=c.SELF_ATTENTION_SCOPE,
            memory_scale=c.MEMORY_SCALE,
        )
    return AEN(crl, csa)
