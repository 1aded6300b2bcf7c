"""LIM, the long-term interaction module: key/value projections and masked memory reading.

Per level ``l`` (finest first), the short-term feature F_s (B, C, H, W) gives a key
(B, Ck, H, W) (3x3 conv, C -> Ck = 4) and a value (B, Cv, H, W) (3x3 conv, C -> Cv = 16).
Memory values are weighted by their frame's mask ("masked attention", MA):

* ``"softmax_plus_one"`` (SALI's public code): ``v * (1 + softmax over H*W of m)``, with
  ``m`` the mask logits (inference: the model's own S3 logits) or the 0/1 ground truth
  (training), resized to the level. Note: over H*W positions the softmax term is about
  1/(H*W) unless the logits are very peaked, so this weighting is close to 1.
* ``"mask"`` (the paper's broadcasting product as we read Eq. 3): ``v * p`` with ``p`` the
  mask probability (sigmoid of the logits; the ground truth itself in training).

With MA off ("w/o MA" ablation) the values are stored unweighted. The readout of the
memory (B, Cv, H, W) and the current value are concatenated, readout first (the public
code's order; the paper writes the concatenation without fixing an order): F_l
(B, 2*Cv, H, W).

The mask a stored frame's values are weighted with at inference (``write_banks``) is, per
level, that level's own reverse-stage output (``"level"``, the public code: S3 for the
finest level, S4, S5) or the final output resized to every level (``"final"``).
Reading itself is :func:`vps_d2.modeling.memory.memory_read`; the streaming banks are
:class:`vps_d2.modeling.memory.MemoryBank` (one per level).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from vps_d2.modeling.memory import MemoryBank, memory_read

__all__ = ["MASK_WEIGHTINGS", "LongTermInteraction", "mask_weights"]

MASK_WEIGHTINGS = ("softmax_plus_one", "mask")


def mask_weights(
    mask: torch.Tensor, size: tuple[int, int], mode: str, is_logits: bool
) -> torch.Tensor:
    """Per-position value weights at one level.

    Args:
        mask: (B, 1, H0, W0) logits (``is_logits``) or 0/1 ground truth.
        size: (H, W) of the level.
        mode: one of :data:`MASK_WEIGHTINGS`.
    Returns:
        (B, 1, H, W).
    """
    m = F.interpolate(mask.float(), size=size, mode="bilinear", align_corners=False)
    if mode == "softmax_plus_one":
        b = m.shape[0]
        return torch.softmax(m.view(b, -1), dim=1).view_as(m) + 1
    if mode == "mask":
        return m.sigmoid() if is_logits else m
    raise ValueError(
        f"MODEL.SALI.LIM.MASK_WEIGHTING must be one of {MASK_WEIGHTINGS}, got {mode!r}"
    )


class LongTermInteraction(nn.Module):
    """Key/value projections per level and the masked memory interaction.

    ``encode`` gives keys/values, ``memory_values`` weights values by a mask, ``interact``
    reads a memory given as tensors (training), ``read_banks``/``write_banks`` use the
    streaming banks held in :attr:`banks` (inference).
    """

    def __init__(
        self,
        *,
        channels: int = 32,
        num_levels: int = 3,
        key_channels: int = 4,
        value_channels: int = 16,
        masked_attention: bool = True,
        mask_weighting: str = "softmax_plus_one",
        top_k: int = 20,
        query_chunk: int = 0,
        banks: Sequence[MemoryBank] = (),
    ) -> None:
        super().__init__()
        if mask_weighting not in MASK_WEIGHTINGS:
            raise ValueError(
                f"MODEL.SALI.LIM.MASK_WEIGHTING must be one of {MASK_WEIGHTINGS}, "
                f"got {mask_weighting!r}"
            )
        self.key_proj = nn.ModuleList(
            [nn.Conv2d(channels, key_channels, 3, padding=1) for _ in range(num_levels)]
        )
        self.value_proj = nn.ModuleList(
            [nn.Conv2d(channels, value_channels, 3, padding=1) for _ in range(num_levels)]
        )
        self.masked_attention = masked_attention
        self.mask_weighting = mask_weighting
        self.top_k = top_k
        self.query_chunk = query_chunk
        self.banks = list(banks)  # plain objects: not parameters, not in the state dict

    def encode(
        self, feats: Sequence[torch.Tensor]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Features per level (B, C, H, W) -> keys (B, Ck, H, W), values (B, Cv, H, W)."""
        keys = [p(f) for p, f in zip(self.key_proj, feats)]
        values = [p(f) for p, f in zip(self.value_proj, feats)]
        return keys, values

    def memory_values(
        self, values: Sequence[torch.Tensor], mask: torch.Tensor | None, is_logits: bool
    ) -> list[torch.Tensor]:
        """Values to store: each (B, Cv, H, W) weighted by ``mask`` (B, 1, H0, W0) under MA."""
        if not self.masked_attention or mask is None:
            return list(values)
        return [
            v * mask_weights(mask, tuple(v.shape[-2:]), self.mask_weighting, is_logits)
            for v in values
        ]

    def interact(
        self,
        keys: Sequence[torch.Tensor],
        values: Sequence[torch.Tensor],
        mem_keys: Sequence[torch.Tensor],
        mem_values: Sequence[torch.Tensor],
    ) -> list[torch.Tensor]:
        """Read a memory given as tensors and concatenate with the current value.

        keys/values: current (B, Ck|Cv, H, W); mem_keys/mem_values: (B, Ck|Cv, N) per level.
        Returns F_l per level: (B, 2*Cv, H, W) = [readout, current value].
        """
        out = []
        for k, v, mk, mv in zip(keys, values, mem_keys, mem_values):
            r, _, _ = memory_read(k.flatten(2), mk, mv, self.top_k, self.query_chunk)
            out.append(torch.cat([r.view_as(v), v], 1))
        return out

    def read_banks(
        self, keys: Sequence[torch.Tensor], values: Sequence[torch.Tensor], empty_read: str = "self"
    ) -> list[torch.Tensor]:
        """Streaming read (before write). With empty banks (a video's first frame):
        ``"self"`` reads the current frame's own keys/values, ``"zeros"`` reads zeros."""
        if not self.banks:
            raise RuntimeError("LongTermInteraction.read_banks: no memory banks were given")
        if self.banks[0].is_empty:
            if empty_read == "zeros":
                return [torch.cat([torch.zeros_like(v), v], 1) for v in values]
            return self.interact(
                keys, values, [k.flatten(2) for k in keys], [v.flatten(2) for v in values]
            )
        out = []
        for bank, k, v in zip(self.banks, keys, values):
            out.append(torch.cat([bank.read(k.flatten(2)).view_as(v), v], 1))
        return out

    def write_banks(
        self,
        keys: Sequence[torch.Tensor],
        values: Sequence[torch.Tensor],
        mask_logits: torch.Tensor | Sequence[torch.Tensor],
        frame_index: int,
    ) -> None:
        """Store a frame: keys/values per level (B, C, H, W); mask_logits one (B, 1, H0, W0)
        map for every level, or one map per level (each resized to its level if needed)."""
        if isinstance(mask_logits, torch.Tensor):
            stored = self.memory_values(values, mask_logits, is_logits=True)
        else:
            if len(mask_logits) != len(values):
                raise ValueError(
                    f"write_banks: {len(mask_logits)} mask maps for {len(values)} levels"
                )
            stored = [
                self.memory_values([v], m, is_logits=True)[0] for v, m in zip(values, mask_logits)
            ]
        for bank, k, v in zip(self.banks, keys, stored):
            bank.write(k.flatten(2), v.flatten(2), frame_index)

    def reset(self) -> None:
        for bank in self.banks:
            bank.reset()
