"""Transformer sub-layers (DETR / Mask2Former style), batch-first ``(B, L, D)`` tokens.

Each layer is a residual block with a LayerNorm, post-norm (``norm_first=False``:
``x = norm(x + f(x))``, DETR's default) or pre-norm (``norm_first=True``:
``x = x + f(norm(x))``). Positional embeddings ``pos`` ((B|1, L, D), broadcast over the
batch) are added to the attention's queries and keys only, never to the values nor to the
residual stream.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .activation import build_activation
from .attention import MultiHeadAttention

__all__ = ["CrossAttentionLayer", "FFNLayer", "SelfAttentionLayer", "TransformerEncoderLayer"]


def _with_pos(x: torch.Tensor, pos: torch.Tensor | None) -> torch.Tensor:
    return x if pos is None else x + pos


class SelfAttentionLayer(nn.Module):
    """Self-attention + dropout + residual + LayerNorm.

    forward(x (B, L, D), pos (B|1, L, D) = None, key_padding_mask (B, L) bool True = ignore,
    attn_bias (B|1, H|1, L, L) or (L, L) additive float) -> (B, L, D).
    post-norm: ``norm(x + drop(attn(q=k=x+pos, v=x)))``;
    pre-norm: ``y = norm(x); x + drop(attn(q=k=y+pos, v=y))``.
    """

    def __init__(
        self, dim: int, num_heads: int, dropout: float = 0.0, norm_first: bool = False
    ) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(dim, num_heads, dropout=dropout)
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.norm_first = norm_first

    def forward(
        self,
        x: torch.Tensor,
        pos: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
        attn_bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        y = self.norm(x) if self.norm_first else x
        qk = _with_pos(y, pos)
        y = self.self_attn(qk, qk, y, key_padding_mask=key_padding_mask, attn_bias=attn_bias)
        x = x + self.dropout(y)
        return x if self.norm_first else self.norm(x)


class CrossAttentionLayer(nn.Module):
    """Cross-attention from queries to a memory + dropout + residual + LayerNorm.

    forward(query (B, Lq, D), memory (B, Lk, D), query_pos (B|1, Lq, D) = None, memory_pos
    (B|1, Lk, D) = None, memory_key_padding_mask (B, Lk) bool True = ignore, attn_bias
    (B|1, H|1, Lq, Lk) or (Lq, Lk) additive float) -> (B, Lq, D).
    post-norm: ``norm(q + drop(attn(q+qpos, m+mpos, m)))``;
    pre-norm: ``q + drop(attn(norm(q)+qpos, m+mpos, m))`` (the memory is not normalised here).
    """

    def __init__(
        self, dim: int, num_heads: int, dropout: float = 0.0, norm_first: bool = False
    ) -> None:
        super().__init__()
        self.cross_attn = MultiHeadAttention(dim, num_heads, dropout=dropout)
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.norm_first = norm_first

    def forward(
        self,
        query: torch.Tensor,
        memory: torch.Tensor,
        query_pos: torch.Tensor | None = None,
        memory_pos: torch.Tensor | None = None,
        memory_key_padding_mask: torch.Tensor | None = None,
        attn_bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        y = self.norm(query) if self.norm_first else query
        y = self.cross_attn(
            _with_pos(y, query_pos),
            _with_pos(memory, memory_pos),
            memory,
            key_padding_mask=memory_key_padding_mask,
            attn_bias=attn_bias,
        )
        x = query + self.dropout(y)
        return x if self.norm_first else self.norm(x)


class FFNLayer(nn.Module):
    """Position-wise feed-forward block + dropout + residual + LayerNorm.

    forward(x (B, L, D)) -> (B, L, D) (any leading dims work).
    ``f(x) = linear2(drop(act(linear1(x))))``; post-norm ``norm(x + drop(f(x)))``,
    pre-norm ``x + drop(f(norm(x)))``. ``act``: relu | gelu | leaky_relu | silu.
    """

    def __init__(
        self,
        dim: int,
        hidden_dim: int,
        dropout: float = 0.0,
        act: str = "relu",
        norm_first: bool = False,
    ) -> None:
        super().__init__()
        if not act:
            raise ValueError("FFNLayer: act must name an activation (relu, gelu, ...)")
        self.linear1 = nn.Linear(dim, hidden_dim)
        self.activation = build_activation(act)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(hidden_dim, dim)
        self.dropout_out = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)
        self.norm_first = norm_first
        nn.init.xavier_uniform_(self.linear1.weight)
        nn.init.xavier_uniform_(self.linear2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(x) if self.norm_first else x
        y = self.linear2(self.dropout(self.activation(self.linear1(y))))
        x = x + self.dropout_out(y)
        return x if self.norm_first else self.norm(x)


class TransformerEncoderLayer(nn.Module):
    """DETR's encoder layer: :class:`SelfAttentionLayer` then :class:`FFNLayer`.

    forward(x (B, L, D), pos (B|1, L, D) = None, key_padding_mask (B, L) bool True = ignore,
    attn_bias (B|1, H|1, L, L) or (L, L) additive float) -> (B, L, D).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        ffn_dim: int,
        dropout: float = 0.0,
        act: str = "relu",
        norm_first: bool = False,
    ) -> None:
        super().__init__()
        self.self_attn = SelfAttentionLayer(dim, num_heads, dropout, norm_first)
        self.ffn = FFNLayer(dim, ffn_dim, dropout, act, norm_first)

    def forward(
        self,
        x: torch.Tensor,
        pos: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
        attn_bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = self.self_attn(x, pos=pos, key_padding_mask=key_padding_mask, attn_bias=attn_bias)
        return self.ffn(x)
