"""The parameter-free semantic interaction of PGN+AEN (Eq. 9).

``P[l, c] = sigmoid(sum_q (sum_d e3[l, c, q, d]) * e1[l, q])``: e1 holds q = 4S proposal maps
per frame (one per region-linking token), e3 the aligned embeddings; "." is the dot product
over the q proposals and the sum runs over the D embedding dimensions (the reading of
methods.md, consistent with the shapes of Eqs. 2, 5 and 9). This module returns the logits
(before the sigmoid).
"""

from __future__ import annotations

import torch

__all__ = ["semantic_interaction"]


def semantic_interaction(e1: torch.Tensor, e3: torch.Tensor) -> torch.Tensor:
    """Mask logits from proposals and embeddings.

    Args:
        e1: proposals (N, q, H, W).
        e3: embeddings (N, q, D) (one class) or (N, c, q, D).
    Returns:
        (N, c, H, W) logits (c = 1 for (N, q, D) embeddings).
    """
    if e3.dim() == 3:
        e3 = e3[:, None]
    if e1.dim() != 4 or e3.dim() != 4 or e1.shape[:2] != (e3.shape[0], e3.shape[2]):
        raise ValueError(
            f"semantic_interaction: e1 (N, q, H, W) and e3 (N, [c,] q, D) must "
            f"agree on N and q; got {tuple(e1.shape)} and {tuple(e3.shape)}"
        )
    weights = e3.sum(dim=-1)  # N, c, q
    return torch.einsum("ncq,nqhw->nchw", weights, e1)
