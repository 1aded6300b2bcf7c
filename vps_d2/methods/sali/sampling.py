"""SALI's training clips: triplets ``[memory, neighbour, current]`` (INPUT.CLIP.SAMPLING
"triplet", keys in MODEL.SALI.TRIPLET). SALI's clip contract (``SALI.clip_contract``) declares
them, so INPUT.CLIP.LENGTH 3 and SAMPLING "triplet" are checked and filled in once, by the
engine's setup; the sampler itself always draws 3 frames.

``current`` is the reference frame ``t``, ``neighbour = clamp(t + NEIGHBOUR_OFFSET)`` and
``memory`` is drawn uniformly from the ``MEMORY_RANGE`` frames before ``min(t, neighbour)``
(clamped at 0; frame 0 when ``min(t, neighbour) == 0``). ``INPUT.CLIP.MAX_SKIP`` is not
used. The order is *not* temporal when ``NEIGHBOUR_OFFSET > 0`` (the public code's +1).
"""

from __future__ import annotations

import numpy as np

from vps_d2.config import configurable
from vps_d2.data.clip_sampling import CLIP_SAMPLER_REGISTRY, ClipSampler, check_int, check_ref

__all__ = ["TripletClipSampler", "sample_triplet_indices"]


def sample_triplet_indices(
    length: int,
    rng: np.random.Generator,
    ref: int | None = None,
    memory_range: int = 5,
    neighbour_offset: int = -1,
) -> list[int]:
    """``[memory, neighbour, current]`` frame indices of a ``length``-frame video.

    Args:
        length: number of frames (>= 1).
        rng: the only source of randomness.
        ref: the current frame; ``None`` draws it uniformly.
        memory_range: the memory frame comes from this many frames before the pair (>= 1).
        neighbour_offset: neighbour = current + this (-1: previous frame, online).
    """
    length = check_int("length", length, 1, "sample_triplet_indices")
    memory_range = check_int("memory_range", memory_range, 1, "sample_triplet_indices")
    ref = check_ref(ref, length, rng)
    neighbour = min(max(ref + int(neighbour_offset), 0), length - 1)
    first = min(ref, neighbour)
    memory = 0 if first == 0 else int(rng.integers(max(0, first - memory_range), first))
    return [memory, neighbour, ref]


@CLIP_SAMPLER_REGISTRY.register_as("triplet")
class TripletClipSampler(ClipSampler):
    """``"triplet"``: SALI's [memory, neighbour, current] (3 frames; SALI's clip contract)."""

    mode = "triplet"

    @configurable
    def __init__(
        self,
        *,
        clip_length: int,
        max_skip: int = 1,
        memory_range: int = 5,
        neighbour_offset: int = -1,
    ) -> None:
        super().__init__(clip_length=clip_length, max_skip=max_skip)
        if isinstance(memory_range, bool) or int(memory_range) < 1:
            raise ValueError(f"MODEL.SALI.TRIPLET.MEMORY_RANGE must be >= 1, got {memory_range}")
        self.memory_range = int(memory_range)
        self.neighbour_offset = int(neighbour_offset)

    @classmethod
    def from_config(cls, cfg) -> dict:
        t = cfg.MODEL.SALI.TRIPLET
        return {
            **ClipSampler.from_config(cfg),
            "memory_range": t.MEMORY_RANGE,
            "neighbour_offset": t.NEIGHBOUR_OFFSET,
        }

    def __call__(self, length: int, rng: np.random.Generator, ref: int | None = None) -> list[int]:
        return sample_triplet_indices(length, rng, ref, self.memory_range, self.neighbour_offset)

    def __repr__(self) -> str:
        return (
            f"TripletClipSampler(memory_range={self.memory_range}, "
            f"neighbour_offset={self.neighbour_offset})"
        )
