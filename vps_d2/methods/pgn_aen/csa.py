"""Cross-wise scale alignment (CSA): e2 (B, T, q, D) -> e3 (B, T, q, D), with a clip memory.

``B`` clips, ``T`` <= L frames, ``q`` tokens (region-linking semantics) per frame, ``D`` the
embedding size. Following the paper's Eqs. 6-8 (the method's README.md):

* E: transformer encoder over all T * q tokens of the clip (learned token + frame position
  embeddings added to queries/keys);
* D1 (pixel decoder): the encoder tokens -> decoder memory (a Linear + LayerNorm projection,
  or unchanged with PIXEL_DECODER "position") and the learned per-position embedding bias
  (q, D) added to the memory's keys;
* D2: q polyp-centre queries per frame (learned for the first window of a video; afterwards
  the previous window's output state, carried over) cross-attend to their frame's D1
  tokens, then FFN: e_c (B, T, q, D);
* clip memory, Eq. 7: e'_c = e_c + sum_m softmax_m(<W_q e_c, W_k M_m>) W_v M_m, per frame
  slot and query index, over the past windows' normalised output states M_m (dot product
  summed over D, softmax over the memory entries, / sqrt(D) with MEMORY_SCALE);
* m iterations, Eq. 8, from e_{3,0} = e'_c: cross-attention to e_c of the whole clip
  (clip-wise alignment between memory and current information) -> self-attention (frame-wise
  alignment: over all the clip's queries, or one frame's) -> FFN;
* output: LayerNorm (this is the state stored in the memory and carried) -> 3-layer MLP -> e3.

CLIP_WISE False removes the memory read, the carried queries and the cross-attention
layers; FRAME_WISE False removes the self-attention layers (Table 3).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn

from vps_d2.modeling.layers import (
    MLP,
    CrossAttentionLayer,
    FFNLayer,
    PositionEmbeddingLearned,
    SelfAttentionLayer,
    TransformerEncoderLayer,
)

__all__ = ["ClipMemoryRead", "CrossWiseScaleAlignment", "PixelDecoder", "fit_slots"]

PIXEL_DECODERS = ("linear", "position")
SELF_ATTENTION_SCOPES = ("clip", "frame")


def fit_slots(x: torch.Tensor, t: int) -> torch.Tensor:
    """(B, T', ...) -> (B, t, ...): the first t frame slots, the last one repeated if T' < t."""
    if x.shape[1] >= t:
        return x[:, :t]
    return torch.cat([x, x[:, -1:].expand(-1, t - x.shape[1], *x.shape[2:])], dim=1)


class PixelDecoder(nn.Module):
    """D1: encoder tokens (B, T, q, D) -> (memory (B, T, q, D), per-position bias (1, q, D))."""

    def __init__(self, num_tokens: int, dim: int, mode: str = "linear") -> None:
        super().__init__()
        if mode not in PIXEL_DECODERS:
            raise ValueError(
                f"MODEL.PGN_AEN.CSA.PIXEL_DECODER must be one of {PIXEL_DECODERS}, got {mode!r}"
            )
        self.proj = (
            nn.Sequential(nn.Linear(dim, dim), nn.LayerNorm(dim)) if mode == "linear" else None
        )
        self.position = PositionEmbeddingLearned(num_tokens, dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mem = x if self.proj is None else self.proj(x)
        return mem, self.position(x[:, 0])[:1]


class ClipMemoryRead(nn.Module):
    """Eq. 7: implant the memory of past windows into e_c.

    forward(e_c (B, T, q, D), memory [(B, T_m, q, D)] oldest first) -> (B, T, q, D):
    ``e_c + sum_m a_m W_v M_m`` with ``a = softmax_m(<W_q e_c, W_k M_m> [/ sqrt(D)])``, each
    (frame slot, query) on its own; unchanged when the memory is empty.
    """

    def __init__(self, dim: int, scale: bool = True) -> None:
        super().__init__()
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.scale = 1.0 / math.sqrt(dim) if scale else 1.0

    def forward(self, e_c: torch.Tensor, memory: Sequence[torch.Tensor]) -> torch.Tensor:
        if not memory:
            return e_c
        t = e_c.shape[1]
        m = torch.stack([fit_slots(x, t) for x in memory], dim=1)  # B, M, T, q, D
        scores = torch.einsum("btqd,bmtqd->bmtq", self.q_proj(e_c), self.k_proj(m)) * self.scale
        weights = scores.softmax(dim=1)
        return e_c + torch.einsum("bmtq,bmtqd->btqd", weights, self.v_proj(m))


class CrossWiseScaleAlignment(nn.Module):
    """CSA (see the module docstring).

    forward(e2 (B, T, q, D), memory [(B, T_m, q, D)] past windows' states, oldest first) ->
    (e3 (B, T, q, D), state (B, T, q, D) to store in the memory).
    """

    def __init__(
        self,
        num_tokens: int,
        dim: int = 256,
        clip_length: int = 3,
        num_heads: int = 8,
        enc_layers: int = 6,
        centre_layers: int = 1,
        dec_layers: int = 3,
        ffn_dim: int = 2048,
        dropout: float = 0.0,
        pre_norm: bool = False,
        pixel_decoder: str = "linear",
        clip_wise: bool = True,
        frame_wise: bool = True,
        self_attention_scope: str = "clip",
        memory_scale: bool = True,
    ) -> None:
        super().__init__()
        if self_attention_scope not in SELF_ATTENTION_SCOPES:
            raise ValueError(
                f"MODEL.PGN_AEN.CSA.SELF_ATTENTION_SCOPE must be one of "
                f"{SELF_ATTENTION_SCOPES}, got {self_attention_scope!r}"
            )
        for key, v, lo in (
            ("ENC_LAYERS", enc_layers, 0),
            ("CENTRE_LAYERS", centre_layers, 1),
            ("DEC_LAYERS", dec_layers, 1),
        ):
            if v < lo:
                raise ValueError(f"MODEL.PGN_AEN.CSA.{key} must be >= {lo}, got {v}")
        self.num_tokens, self.dim, self.clip_length = num_tokens, dim, clip_length
        self.clip_wise, self.frame_wise = bool(clip_wise), bool(frame_wise)
        self.scope = self_attention_scope
        self.token_pos = PositionEmbeddingLearned(num_tokens, dim)
        self.frame_pos = PositionEmbeddingLearned(clip_length, dim)
        self.encoder = nn.ModuleList(
            TransformerEncoderLayer(dim, num_heads, ffn_dim, dropout, "relu", pre_norm)
            for _ in range(enc_layers)
        )
        self.encoder_norm = nn.LayerNorm(dim) if pre_norm and enc_layers else nn.Identity()
        self.pixel_decoder = PixelDecoder(num_tokens, dim, pixel_decoder)
        self.query_feat = nn.Embedding(num_tokens, dim)
        self.query_pos = nn.Embedding(num_tokens, dim)
        self.centre_attn = nn.ModuleList(
            CrossAttentionLayer(dim, num_heads, dropout, pre_norm) for _ in range(centre_layers)
        )
        self.centre_ffn = nn.ModuleList(
            FFNLayer(dim, ffn_dim, dropout, "relu", pre_norm) for _ in range(centre_layers)
        )
        self.memory_read = ClipMemoryRead(dim, memory_scale) if self.clip_wise else None
        self.cross_attn = (
            nn.ModuleList(
                CrossAttentionLayer(dim, num_heads, dropout, pre_norm) for _ in range(dec_layers)
            )
            if self.clip_wise
            else None
        )
        self.self_attn = (
            nn.ModuleList(
                SelfAttentionLayer(dim, num_heads, dropout, pre_norm) for _ in range(dec_layers)
            )
            if self.frame_wise
            else None
        )
        self.ffn = nn.ModuleList(
            FFNLayer(dim, ffn_dim, dropout, "relu", pre_norm) for _ in range(dec_layers)
        )
        self.out_norm = nn.LayerNorm(dim)
        self.out_mlp = MLP(dim, dim, dim, 3)

    def frame_embedding(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, ...) -> the frame position embeddings (1, T, 1, D)."""
        return self.frame_pos(x)[:1, :, None]

    def forward(
        self, e2: torch.Tensor, memory: Sequence[torch.Tensor] = ()
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, q, d = e2.shape
        if q != self.num_tokens or d != self.dim:
            raise ValueError(
                f"CSA: e2 must be (B, T, {self.num_tokens}, {self.dim}), got {tuple(e2.shape)}"
            )
        if t > self.clip_length:
            raise ValueError(f"CSA: {t} frames in a clip of length {self.clip_length}")
        frame_pos = self.frame_embedding(e2)  # 1, T, 1, D
        pos = self.token_pos(e2[:, 0])[:1, None] + frame_pos  # 1, T, q, D
        x = e2.reshape(b, t * q, d)
        pos_flat = pos.reshape(1, t * q, d)
        for layer in self.encoder:
            x = layer(x, pos=pos_flat)
        x = self.encoder_norm(x).view(b, t, q, d)
        # D1 + D2: polyp-centre queries decode their frame's tokens -> e_c
        mem, mem_pos = self.pixel_decoder(x)  # (B, T, q, D), (1, q, D)
        memory = list(memory) if self.clip_wise else []
        if memory:
            query = fit_slots(memory[-1], t)  # carried from the previous window
        else:
            query = self.query_feat.weight[None, None].expand(b, t, -1, -1)
        qpos = self.query_pos.weight[None]  # 1, q, D
        y = query.reshape(b * t, q, d)
        mem = mem.reshape(b * t, q, d)
        for ca, ffn in zip(self.centre_attn, self.centre_ffn):
            y = ffn(ca(y, mem, query_pos=qpos, memory_pos=mem_pos))
        e_c = y.view(b, t, q, d)
        # Eq. 7 (clip memory) then Eq. 8 (m iterations)
        state = self.memory_read(e_c, memory) if self.memory_read is not None else e_c
        qpos_clip = (qpos[:, None] + frame_pos).reshape(1, t * q, d)
        keys = e_c.reshape(b, t * q, d)
        s = state.reshape(b, t * q, d)
        for k in range(len(self.ffn)):
            if self.cross_attn is not None:
                s = self.cross_attn[k](s, keys, query_pos=qpos_clip, memory_pos=qpos_clip)
            if self.self_attn is not None:
                if self.scope == "clip":
                    s = self.self_attn[k](s, pos=qpos_clip)
                else:
                    s = self.self_attn[k](s.view(b * t, q, d), pos=qpos).view(b, t * q, d)
            s = self.ffn[k](s)
        state = self.out_norm(s).view(b, t, q, d)
        return self.out_mlp(state), state
