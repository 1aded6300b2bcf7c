"""Coarse-to-fine feature assembling (CFFA) and cross-frame feature mining (CFM) of CFFM
(Sun et al., CVPR 2022), the PGN of PGN+AEN, adapted to clips and a memory of past frames.

Shapes: ``B`` clips, ``C`` channels, ``(h, w)`` the 1/8 map, padded to ``(Hp, Wp)`` (multiples
of the window size ``ws``), ``nW = (Hp / ws) * (Wp / ws)`` windows, ``N = ws * ws`` queries
per window.

For one target frame, every ``ws x ws`` window of the target is a group of queries; its
keys/values are assembled from (the method's README.md):

1. the window itself (``ws^2`` tokens) and its neighbour ring of width ``e``: the four
   diagonally shifted windows (offsets +-e) minus their overlap with the window,
   ``4 (ws^2 - (ws - e)^2)`` tokens (132 for ws = 7, e = 3; ring tokens may repeat, as in the
   focal design); one learned relative-position bias table indexed by (dy, dx);
2. the target's pooled level: each window pooled to one token by a learned
   ``Linear(ws^2 -> 1)``, the ``k0 x k0`` pooled windows around the query window (25);
3. per reference frame, pooled tokens whose granularity grows with temporal distance: cells
   of ``p x p`` pixels pooled by a learned ``Linear(p^2 -> 1)``, the ``k x k`` cells around the
   cell holding the window centre (nearest 2 / 3 -> 9, middle 3 / 5 -> 25, farthest
   7 / 7 -> 49).

Groups 2 and 3 get a learned bias per (head, neighbourhood slot). Maps are padded to a
multiple of the window after the block's LayerNorm (padded pixels are zero in the pooled
cells); tokens outside the map (padding, borders, pooled cells without a valid pixel) are
masked out. Keys and values are projected once per map (pooled
maps after pooling) before the windows duplicate tokens; the shared
:class:`~vps_d2.modeling.layers.MultiHeadAttention` then runs with identity key/value
projections. A CFM block is pre-norm: LN -> attention -> residual on the target only ->
LN -> MLP (GELU) -> residual.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import trunc_normal_

from vps_d2.modeling.layers import Mlp, MultiHeadAttention

__all__ = [
    "CFMBlock",
    "CrossFrameMining",
    "LinearPool",
    "gather_neighbourhoods",
    "ring_indices",
    "select_references",
    "window_partition",
    "window_reverse",
]


def window_partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    """(B, Hp, Wp, C) -> (B * nW, ws * ws, C), windows in row-major order."""
    b, hp, wp, c = x.shape
    x = x.view(b, hp // ws, ws, wp // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b * (hp // ws) * (wp // ws), ws * ws, c)


def window_reverse(windows: torch.Tensor, ws: int, b: int, hp: int, wp: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B * nW, ws * ws, C) -> (B, Hp, Wp, C)."""
    c = windows.shape[-1]
    x = windows.view(b, hp // ws, wp // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, hp, wp, c)


def ring_indices(ws: int, expand: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Key positions of the window + neighbour-ring group inside the expanded window.

    The expanded window is ``(ws + 2e) x (ws + 2e)`` with the query window at offset (e, e).
    Returns ``(rows, cols)``, each (ws^2 + 4 (ws^2 - (ws - e)^2),) long: first the window
    itself (row-major), then, for the four diagonal shifts (-e, -e), (-e, +e), (+e, -e),
    (+e, +e), the positions of the shifted window that lie outside the query window.
    """
    e = expand
    r = torch.arange(ws)
    wr, wc = torch.meshgrid(r + e, r + e, indexing="ij")
    rows, cols = [wr.flatten()], [wc.flatten()]
    if e > 0:
        for oy, ox in ((0, 0), (0, 2 * e), (2 * e, 0), (2 * e, 2 * e)):
            sr, sc = torch.meshgrid(r + oy, r + ox, indexing="ij")
            sr, sc = sr.flatten(), sc.flatten()
            inside = (sr >= e) & (sr < e + ws) & (sc >= e) & (sc < e + ws)
            rows.append(sr[~inside])
            cols.append(sc[~inside])
    return torch.cat(rows), torch.cat(cols)


def gather_neighbourhoods(
    x: torch.Tensor, centres_h: torch.Tensor, centres_w: torch.Tensor, k: int
) -> torch.Tensor:
    """The ``k x k`` cells around given centre cells, zero outside the map.

    Args:
        x: (B, Hc, Wc, C) map of cells.
        centres_h: (nh,) long, the centre row of each window row; ``centres_w`` (nw,) alike.
        k: odd neighbourhood size.
    Returns:
        (B * nh * nw, k * k, C) (windows in row-major order, cells row-major).
    """
    b, hc, wc, c = x.shape
    r = k // 2
    x = F.pad(x, (0, 0, r, r, r, r))  # B, Hc + 2r, Wc + 2r, C
    off = torch.arange(k, device=x.device)
    rows = (centres_h[:, None] + off[None]).to(x.device)  # nh, k  (padded coordinates)
    cols = (centres_w[:, None] + off[None]).to(x.device)  # nw, k
    nh, nw = rows.shape[0], cols.shape[0]
    g = x[:, rows[:, :, None, None], cols[None, None, :, :]]  # B, nh, k, nw, k, C
    return g.permute(0, 1, 3, 2, 4, 5).reshape(b * nh * nw, k * k, c)


def select_references(
    target: int, positions: Sequence[int], num_references: int, num_levels: int
) -> list[tuple[int, int]]:
    """Reference frames of one target and their granularity level.

    Args:
        target: index (into ``positions``) of the target frame.
        positions: temporal position of every available frame (the clip's 0..T-1, the
            memory's past frames < 0).
        num_references: how many of the nearest frames (by |position difference|, ties: the
            past first) are used.
        num_levels: granularity levels; the k-th nearest distinct distance gets level
            min(k, num_levels - 1) (0 = finest).
    Returns:
        ``[(frame index, level)]``, nearest first.
    """
    t = positions[target]
    cands = [i for i in range(len(positions)) if i != target]
    cands.sort(key=lambda i: (abs(positions[i] - t), positions[i]))
    chosen = cands[:num_references]
    distances = sorted({abs(positions[i] - t) for i in chosen})
    return [(i, min(distances.index(abs(positions[i] - t)), num_levels - 1)) for i in chosen]


class LinearPool(nn.Module):
    """Learned pooling of non-overlapping ``p x p`` cells: ``Linear(p*p -> 1)`` over the
    cell's pixels, channel by channel (initialised to the mean).

    forward(x (B, H, W, C), valid (H, W) bool) -> ((B, ceil(H/p), ceil(W/p), C), valid cells
    (ceil(H/p), ceil(W/p)) bool: a cell is valid when it holds a valid pixel).
    """

    def __init__(self, p: int) -> None:
        super().__init__()
        self.p = int(p)
        self.pool = nn.Linear(self.p * self.p, 1)
        nn.init.constant_(self.pool.weight, 1.0 / (self.p * self.p))
        nn.init.zeros_(self.pool.bias)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.p
        b, h, w, c = x.shape
        ph, pw = (-h) % p, (-w) % p
        if ph or pw:
            x = F.pad(x, (0, 0, 0, pw, 0, ph))
            valid = F.pad(valid, (0, pw, 0, ph))
        hc, wc = x.shape[1] // p, x.shape[2] // p
        cells = x.view(b, hc, p, wc, p, c).permute(0, 1, 3, 5, 2, 4).reshape(b, hc, wc, c, p * p)
        pooled = self.pool(cells)[..., 0]  # B, hc, wc, C
        vcells = valid.view(hc, p, wc, p).permute(0, 2, 1, 3).reshape(hc, wc, p * p).any(-1)
        return pooled, vcells


class CFMBlock(nn.Module):
    """One cross-frame feature mining block (pre-norm, see the module docstring).

    forward(target (B, Hp, Wp, C), references [(map (B, Hp, Wp, C), level)], valid (Hp, Wp)
    bool) -> (B, Hp, Wp, C), the refined target.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int = 7,
        expand_size: int = 3,
        target_pool_neighbourhood: int = 5,
        ref_pool_sizes: Sequence[int] = (2, 3, 7),
        ref_neighbourhoods: Sequence[int] = (3, 5, 7),
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        if len(ref_pool_sizes) != len(ref_neighbourhoods) or not ref_pool_sizes:
            raise ValueError(
                f"CFFM: REF_POOL_SIZES {list(ref_pool_sizes)} and "
                f"REF_NEIGHBOURHOODS {list(ref_neighbourhoods)} must be non-empty "
                "lists of the same length"
            )
        ks = [target_pool_neighbourhood, *ref_neighbourhoods]
        if any(k < 1 or k % 2 == 0 for k in ks):
            raise ValueError(
                f"CFFM: neighbourhoods must be odd and >= 1, got "
                f"TARGET_POOL_NEIGHBOURHOOD {target_pool_neighbourhood}, "
                f"REF_NEIGHBOURHOODS {list(ref_neighbourhoods)}"
            )
        if window_size < 1 or not 0 <= expand_size < window_size:
            raise ValueError(
                f"CFFM: WINDOW_SIZE ({window_size}) must be >= 1 and EXPAND_SIZE "
                f"({expand_size}) in [0, WINDOW_SIZE)"
            )
        if any(p < 1 for p in ref_pool_sizes):
            raise ValueError(f"CFFM: REF_POOL_SIZES must be >= 1, got {list(ref_pool_sizes)}")
        self.dim, self.num_heads = dim, num_heads
        self.ws, self.expand = int(window_size), int(expand_size)
        self.k0 = int(target_pool_neighbourhood)
        self.ref_ks = [int(k) for k in ref_neighbourhoods]
        self.norm1 = nn.LayerNorm(dim)
        # keys/values are projected once per map, then assembled (see module doc)
        self.kv_proj = nn.Linear(dim, 2 * dim)
        self.attn = MultiHeadAttention(dim, num_heads)
        self.attn.k_proj = nn.Identity()
        self.attn.v_proj = nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU)
        # window + ring: relative (dy, dx) table
        rows, cols = ring_indices(self.ws, self.expand)
        self.register_buffer("ring_rows", rows, persistent=False)
        self.register_buffer("ring_cols", cols, persistent=False)
        span = self.ws + self.expand
        qr, qc = torch.meshgrid(
            torch.arange(self.ws) + self.expand, torch.arange(self.ws) + self.expand, indexing="ij"
        )
        dy = rows[None, :] - qr.flatten()[:, None] + span - 1  # N, n_ring in [0, 2 span - 2]
        dx = cols[None, :] - qc.flatten()[:, None] + span - 1
        self.register_buffer("ring_bias_index", dy * (2 * span - 1) + dx, persistent=False)
        self.ring_bias = nn.Parameter(torch.zeros(num_heads, (2 * span - 1) ** 2))
        # pooled target level and the reference levels: one bias per neighbourhood slot
        self.target_pool = LinearPool(self.ws)
        self.target_pool_bias = nn.Parameter(torch.zeros(num_heads, self.k0 * self.k0))
        self.ref_pools = nn.ModuleList(LinearPool(p) for p in ref_pool_sizes)
        self.ref_biases = nn.ParameterList(
            nn.Parameter(torch.zeros(num_heads, k * k)) for k in self.ref_ks
        )
        for p in [self.ring_bias, self.target_pool_bias, *self.ref_biases]:
            trunc_normal_(p, std=0.02)

    @property
    def num_levels(self) -> int:
        return len(self.ref_ks)

    def _centres(self, n: int, p: int, device) -> torch.Tensor:
        """Cell (of size p) holding the centre of each of n windows, + k//2 padding later."""
        return ((torch.arange(n, device=device) * self.ws + self.ws / 2) // p).long()

    def forward(
        self,
        target: torch.Tensor,
        references: Sequence[tuple[torch.Tensor, int]],
        valid: torch.Tensor,
    ) -> torch.Tensor:
        b, hp, wp, c = target.shape
        ws, e = self.ws, self.expand
        nh, nw = hp // ws, wp // ws
        keep = valid[..., None].to(target.dtype)  # padding is zero after the norm
        y = self.norm1(target) * keep
        queries = window_partition(y, ws)  # B*nW, N, C
        kvs, valids, biases = [], [], []
        # 1. window + ring, from the projected map (zero padding outside, masked)
        kv = self.kv_proj(y)  # B, Hp, Wp, 2C
        span = ws + 2 * e
        kvp = F.pad(kv, (0, 0, e, e, e, e)).permute(0, 3, 1, 2)  # B, 2C, Hp+2e, Wp+2e
        patches = F.unfold(kvp, span, stride=ws)  # B, 2C*span^2, nW
        patches = patches.view(b, 2 * c, span, span, nh * nw)
        ring = patches[:, :, self.ring_rows, self.ring_cols]  # B, 2C, n_ring, nW
        kvs.append(ring.permute(0, 3, 2, 1).reshape(b * nh * nw, -1, 2 * c))
        vpad = F.pad(valid.float(), (e, e, e, e))[None, None]
        vpatch = F.unfold(vpad, span, stride=ws).view(span, span, nh * nw)
        valids.append(vpatch[self.ring_rows, self.ring_cols].t() > 0.5)  # nW, n_ring
        biases.append(self.ring_bias[:, self.ring_bias_index])  # H, N, n_ring
        # 2. the target's pooled windows
        pooled, pvalid = self.target_pool(y, valid)  # B, nh, nw, C
        ch, cw = self._centres(nh, ws, y.device), self._centres(nw, ws, y.device)
        kvs.append(gather_neighbourhoods(self.kv_proj(pooled), ch, cw, self.k0))
        valids.append(self._valid_cells(pvalid, ch, cw, self.k0))
        biases.append(self.target_pool_bias[:, None].expand(-1, ws * ws, -1))
        # 3. references, coarse to fine with temporal distance
        for ref, level in references:
            pool, k = self.ref_pools[level], self.ref_ks[level]
            pooled, pvalid = pool(self.norm1(ref) * keep, valid)
            ch, cw = self._centres(nh, pool.p, y.device), self._centres(nw, pool.p, y.device)
            kvs.append(gather_neighbourhoods(self.kv_proj(pooled), ch, cw, k))
            valids.append(self._valid_cells(pvalid, ch, cw, k))
            biases.append(self.ref_biases[level][:, None].expand(-1, ws * ws, -1))
        kv = torch.cat(kvs, dim=1)  # B*nW, Lk, 2C
        keys, values = kv[..., :c], kv[..., c:]
        key_valid = torch.cat(valids, dim=1).repeat(b, 1)  # B*nW, Lk
        bias = torch.cat(biases, dim=-1)[None].to(y.dtype)  # 1, H, N, Lk
        out = self.attn(queries, keys, values, key_padding_mask=~key_valid, attn_bias=bias)
        x = target + window_reverse(out, ws, b, hp, wp)
        return x + self.mlp(self.norm2(x))

    @staticmethod
    def _valid_cells(vcells: torch.Tensor, ch: torch.Tensor, cw: torch.Tensor, k: int):
        """(Hc, Wc) bool validity -> (nW, k*k) validity of each window's neighbourhood."""
        v = gather_neighbourhoods(vcells[None, :, :, None].float(), ch, cw, k)
        return v[..., 0] > 0.5


class CrossFrameMining(nn.Module):
    """CFM over a set of frames: each target frame is refined from its references.

    forward(frames (B, M, C, h, w) the fused 1/8 maps of the clip and the memory's past
    frames, positions [M] temporal positions (clip 0..T-1, past < 0), targets [indices into
    frames]) -> (B, len(targets), C, h, w) the refined targets.
    """

    def __init__(
        self, dim: int, depth: int = 2, num_heads: int = 8, num_references: int = 3, **block_kwargs
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"CFFM: DEPTH must be >= 1, got {depth}")
        if num_references < 0:
            raise ValueError(f"CFFM: NUM_REFERENCES must be >= 0, got {num_references}")
        self.blocks = nn.ModuleList(CFMBlock(dim, num_heads, **block_kwargs) for _ in range(depth))
        self.num_references = int(num_references)
        self.window_size = self.blocks[0].ws

    def forward(
        self, frames: torch.Tensor, positions: Sequence[int], targets: Sequence[int]
    ) -> torch.Tensor:
        b, m, c, h, w = frames.shape
        if len(positions) != m:
            raise ValueError(f"CrossFrameMining: {len(positions)} positions for {m} frames")
        ws = self.window_size
        ph, pw = (-h) % ws, (-w) % ws
        x = F.pad(frames, (0, pw, 0, ph)).permute(0, 1, 3, 4, 2)  # B, M, Hp, Wp, C
        valid = torch.zeros(h + ph, w + pw, dtype=torch.bool, device=frames.device)
        valid[:h, :w] = True
        levels = self.blocks[0].num_levels
        out = []
        for t in targets:
            refs = select_references(t, positions, self.num_references, levels)
            y = x[:, t]
            for blk in self.blocks:
                y = blk(y, [(x[:, i], lv) for i, lv in refs], valid)
            out.append(y[:, :h, :w].permute(0, 3, 1, 2))
        return torch.stack(out, dim=1)
