"""Multi-head attention on ``torch.nn.functional.scaled_dot_product_attention``.

Batch-first throughout: ``B`` batch, ``Lq`` query tokens, ``Lk`` key/value tokens, ``D``
embedding size, ``H`` heads of ``D / H`` channels. Same maths as ``nn.MultiheadAttention``
(separate q/k/v input projections, scaled dot product per head, output projection), with
the masks in the form the models need: a boolean key padding mask (True = ignore that key)
and an additive float bias per (query, key) pair, broadcast over batch and heads.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["MultiHeadAttention", "build_attention_mask"]


def build_attention_mask(
    key_padding_mask: torch.Tensor | None,
    attn_bias: torch.Tensor | None,
    batch: int,
    len_q: int,
    len_k: int,
    dtype: torch.dtype,
) -> torch.Tensor | None:
    """Combine the masks into one additive float mask for ``scaled_dot_product_attention``.

    Args:
        key_padding_mask: (B, Lk) bool, True = ignore that key; or None.
        attn_bias: additive float, (Lq, Lk) or (B|1, H|1, Lq, Lk); or None.
    Returns:
        None (no mask), or a float tensor of ``dtype`` broadcastable to (B, H, Lq, Lk):
        ``attn_bias`` plus ``-inf`` at the padded keys.
    """
    mask = None
    if attn_bias is not None:
        if attn_bias.dtype == torch.bool or not attn_bias.is_floating_point():
            raise ValueError(
                f"MultiHeadAttention: attn_bias must be an additive float tensor, got "
                f"{attn_bias.dtype} (pass key_padding_mask for masked keys, or -inf entries)"
            )
        if attn_bias.dim() == 2:
            attn_bias = attn_bias[None, None]
        ok = attn_bias.dim() == 4 and attn_bias.shape[-2:] == (len_q, len_k)
        if not ok or attn_bias.shape[0] not in (1, batch):
            raise ValueError(
                f"MultiHeadAttention: attn_bias must be (Lq, Lk) or (B|1, H|1, Lq, Lk) with "
                f"B={batch}, Lq={len_q}, Lk={len_k}; got {tuple(attn_bias.shape)}"
            )
        mask = attn_bias.to(dtype)
    if key_padding_mask is not None:
        if key_padding_mask.dtype != torch.bool or key_padding_mask.shape != (batch, len_k):
            raise ValueError(
                f"MultiHeadAttention: key_padding_mask must be bool (B, Lk) = ({batch}, {len_k}) "
                f"(True = ignore), got {key_padding_mask.dtype} {tuple(key_padding_mask.shape)}"
            )
        pad = torch.zeros(batch, 1, 1, len_k, dtype=dtype, device=key_padding_mask.device)
        pad = pad.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
        mask = pad if mask is None else mask + pad
    return mask


class MultiHeadAttention(nn.Module):
    """Multi-head attention, self (``key = value = query``) or cross.

    forward(query (B, Lq, D), key (B, Lk, kdim) = query, value (B, Lk, vdim) = key,
    key_padding_mask (B, Lk) bool True = ignore, attn_bias (B|1, H|1, Lq, Lk) or (Lq, Lk)
    additive float, need_weights=False) -> (B, Lq, D), and with ``need_weights`` also the
    attention weights, (B, Lq, Lk) averaged over heads (``average_attn_weights``) or
    (B, H, Lq, Lk).

    Parameters ``q_proj``, ``k_proj``, ``v_proj`` (xavier-uniform weights, zero biases as
    ``nn.MultiheadAttention``), ``out_proj`` (Linear default weight init, zero bias).
    ``dropout`` drops attention weights in training. A query whose keys are all masked gets
    NaN (as ``nn.MultiheadAttention``): make sure every query sees at least one key.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        kdim: int | None = None,
        vdim: int | None = None,
    ) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(
                f"MultiHeadAttention: embed_dim {embed_dim} is not divisible by "
                f"num_heads {num_heads}"
            )
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.kdim = kdim or embed_dim
        self.vdim = vdim or embed_dim
        self.dropout = float(dropout)
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.k_proj = nn.Linear(self.kdim, embed_dim, bias=bias)
        self.v_proj = nn.Linear(self.vdim, embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        for proj in (self.q_proj, self.k_proj, self.v_proj):
            nn.init.xavier_uniform_(proj.weight)
            if proj.bias is not None:
                nn.init.zeros_(proj.bias)
        if self.out_proj.bias is not None:
            nn.init.zeros_(self.out_proj.bias)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.num_heads, self.head_dim).transpose(1, 2)  # B, H, L, d

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor | None = None,
        value: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
        attn_bias: torch.Tensor | None = None,
        need_weights: bool = False,
        average_attn_weights: bool = True,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        key = query if key is None else key
        value = key if value is None else value
        if query.dim() != 3 or query.shape[2] != self.embed_dim:
            raise ValueError(
                f"MultiHeadAttention: query must be (B, Lq, {self.embed_dim}), got "
                f"{tuple(query.shape)}"
            )
        b, len_q, _ = query.shape
        if key.dim() != 3 or key.shape[0] != b or key.shape[2] != self.kdim:
            raise ValueError(
                f"MultiHeadAttention: key must be (B={b}, Lk, {self.kdim}), got {tuple(key.shape)}"
            )
        len_k = key.shape[1]
        if value.dim() != 3 or value.shape[:2] != key.shape[:2] or value.shape[2] != self.vdim:
            raise ValueError(
                f"MultiHeadAttention: value must be (B={b}, Lk={len_k}, "
                f"{self.vdim}), got {tuple(value.shape)}"
            )
        q = self._split_heads(self.q_proj(query))  # B, H, Lq, d
        k = self._split_heads(self.k_proj(key))  # B, H, Lk, d
        v = self._split_heads(self.v_proj(value))  # B, H, Lk, d
        mask = build_attention_mask(key_padding_mask, attn_bias, b, len_q, len_k, q.dtype)
        p = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(self.head_dim)
            if mask is not None:
                scores = scores + mask  # B, H, Lq, Lk
            weights = scores.softmax(-1)
            out = torch.matmul(F.dropout(weights, p, training=p > 0), v)  # B, H, Lq, d
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        out = self.out_proj(out.transpose(1, 2).reshape(b, len_q, self.embed_dim))  # B, Lq, D
        if not need_weights:
            return out
        return out, (weights.mean(1) if average_attn_weights else weights)
