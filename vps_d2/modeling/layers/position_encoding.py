"""Positional embeddings: DETR's 2-D sine embedding and learned tables (1-D and 2-D).

2-D embeddings return (B, 2 * num_pos_feats, H, W): the first ``num_pos_feats`` channels
encode the row (y), the next ``num_pos_feats`` the column (x).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

__all__ = ["PositionEmbeddingLearned", "PositionEmbeddingLearned2D", "PositionEmbeddingSine"]


class PositionEmbeddingSine(nn.Module):
    """DETR's sine embedding of the (y, x) position of every pixel.

    forward(x (B, C, H, W), mask (B, H, W) bool True = padding = None) -> (B, 2*F, H, W)
    with F = ``num_pos_feats`` (even). For a coordinate ``p`` (the running count of
    non-padded pixels along that axis, 1-based; with ``normalize`` mapped to
    ``(p + offset) / (p_last + eps) * scale``), channel ``i`` of its half is
    ``sin(p / T^(2 floor(i/2) / F))`` for even ``i`` and ``cos(...)`` for odd ``i``,
    T = ``temperature``. ``offset=0`` is DETR; ``offset=-0.5`` Deformable DETR /
    Mask2Former. Not learned; ``x`` only gives the size, device and dtype.
    """

    def __init__(
        self,
        num_pos_feats: int = 128,
        temperature: float = 10000,
        normalize: bool = True,
        scale: float | None = None,
        *,
        offset: float = 0.0,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        if num_pos_feats % 2:
            raise ValueError(
                f"PositionEmbeddingSine: num_pos_feats must be even, got {num_pos_feats}"
            )
        if scale is not None and not normalize:
            raise ValueError("PositionEmbeddingSine: scale is only used with normalize=True")
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = 2 * math.pi if scale is None else scale
        self.offset = offset
        self.eps = eps

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"PositionEmbeddingSine: x must be (B, C, H, W), got {tuple(x.shape)}")
        b, _, h, w = x.shape
        if mask is None:
            not_mask = torch.ones(b, h, w, dtype=torch.float32, device=x.device)
        else:
            if mask.shape != (b, h, w):
                raise ValueError(
                    f"PositionEmbeddingSine: mask must be (B, H, W) = "
                    f"{(b, h, w)}, got {tuple(mask.shape)}"
                )
            not_mask = (~mask.bool()).float()
        y_embed = not_mask.cumsum(1)  # B, H, W
        x_embed = not_mask.cumsum(2)  # B, H, W
        if self.normalize:
            y_embed = (y_embed + self.offset) / (y_embed[:, -1:, :] + self.eps) * self.scale
            x_embed = (x_embed + self.offset) / (x_embed[:, :, -1:] + self.eps) * self.scale
        i = torch.arange(self.num_pos_feats, dtype=torch.float32, device=x.device)
        dim_t = self.temperature ** (2 * (i // 2) / self.num_pos_feats)  # F
        pos_y = y_embed[..., None] / dim_t  # B, H, W, F
        pos_x = x_embed[..., None] / dim_t
        # sin on the even channels, cos on the odd ones, interleaved
        pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=4).flatten(3)
        pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=4).flatten(3)
        pos = torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)  # B, 2F, H, W
        return pos.to(x.dtype)


class PositionEmbeddingLearned(nn.Module):
    """A learned table of ``num_positions`` embeddings of size ``dim`` (N(0, 1) init,
    ``nn.Embedding``), e.g. the index of a frame in a clip or of a token in a sequence.

    forward(x (B, L, ...)) -> (B, L, dim): the embeddings of positions 0..L-1 (L <=
    num_positions), the same for every batch element (an expanded view).
    """

    def __init__(self, num_positions: int, dim: int) -> None:
        super().__init__()
        if num_positions < 1:
            raise ValueError(
                f"PositionEmbeddingLearned: num_positions must be >= 1, got {num_positions}"
            )
        self.num_positions = num_positions
        self.embed = nn.Embedding(num_positions, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2:
            raise ValueError(
                f"PositionEmbeddingLearned: x must be (B, L, ...), got {tuple(x.shape)}"
            )
        b, n = x.shape[:2]
        if n > self.num_positions:
            raise ValueError(
                f"PositionEmbeddingLearned: {n} positions but the table holds {self.num_positions}"
            )
        return self.embed.weight[:n][None].expand(b, -1, -1)


class PositionEmbeddingLearned2D(nn.Module):
    """Learned row and column tables (DETR's learned 2-D embedding), uniform(0, 1) init.

    forward(x (B, C, H, W)) -> (B, 2*F, H, W), F = ``num_pos_feats``: channels [0, F) hold
    ``row_embed[y]``, channels [F, 2F) ``col_embed[x]``; H <= max_rows, W <= max_cols.
    """

    def __init__(self, num_pos_feats: int = 128, max_rows: int = 50, max_cols: int = 50) -> None:
        super().__init__()
        self.row_embed = nn.Embedding(max_rows, num_pos_feats)
        self.col_embed = nn.Embedding(max_cols, num_pos_feats)
        nn.init.uniform_(self.row_embed.weight)
        nn.init.uniform_(self.col_embed.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(
                f"PositionEmbeddingLearned2D: x must be (B, C, H, W), got {tuple(x.shape)}"
            )
        b, _, h, w = x.shape
        if h > self.row_embed.num_embeddings or w > self.col_embed.num_embeddings:
            raise ValueError(
                f"PositionEmbeddingLearned2D: feature map {h}x{w} exceeds the tables "
                f"({self.row_embed.num_embeddings} rows, {self.col_embed.num_embeddings} cols)"
            )
        f = self.row_embed.embedding_dim
        rows = self.row_embed.weight[:h]  # H, F
        cols = self.col_embed.weight[:w]  # W, F
        pos = torch.cat([rows[:, None].expand(h, w, f), cols[None].expand(h, w, f)], dim=2)
        return pos.permute(2, 0, 1)[None].expand(b, -1, -1, -1)  # B, 2F, H, W
