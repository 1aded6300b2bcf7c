"""Which frames of a video form one training clip (shared by every method).

:func:`sample_clip_indices` returns the frame indices of one clip around a reference frame;
:class:`ClipSampler` holds the ``INPUT.CLIP.*`` settings and calls it. Modes:

* ``"online"``: the reference frame is the **last** frame of the clip; the ``T - 1`` others
  precede it, each gap between consecutive frames drawn uniformly in ``[1, MAX_SKIP]``.
  Near the start of a video indices are clamped at 0, so the first frame repeats
  (``ref = 1, T = 3`` may give ``[0, 0, 1]``). Order: temporal (non-decreasing).
* ``"window"``: gaps drawn as above; the reference frame takes a position drawn uniformly
  among the positions whose window fits inside the video (any position when none fits:
  then the indices are clamped into the video and end frames repeat). Order: temporal.
* ``"triplet"`` (SALI, ``T`` must be 3): ``[memory, neighbour, current]`` where ``current``
  is the reference frame ``t``, ``neighbour = clamp(t + NEIGHBOUR_OFFSET)`` and ``memory`` is
  drawn uniformly from the ``MEMORY_RANGE`` frames before ``min(t, neighbour)`` (clamped
  at 0; frame 0 when ``min(t, neighbour) == 0``). ``MAX_SKIP`` is not used. This order is
  *not* temporal when ``NEIGHBOUR_OFFSET > 0``.

Every returned index lies in ``[0, length - 1]``. Randomness comes only from the ``rng``
argument (a :class:`numpy.random.Generator`), so a clip is reproducible from its seed.
"""

from __future__ import annotations

import numpy as np

from vps_d2.config import configurable

__all__ = ["SAMPLING_MODES", "ClipSampler", "sample_clip_indices"]

SAMPLING_MODES = ("online", "window", "triplet")


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(
            f"sample_clip_indices: {name} must be an integer >= {minimum}, got {value!r}"
        )
    return int(value)


def sample_clip_indices(
    length: int,
    clip_length: int,
    mode: str,
    max_skip: int,
    rng: np.random.Generator,
    ref: int | None = None,
    memory_range: int = 5,
    neighbour_offset: int = -1,
) -> list[int]:
    """Frame indices of one clip of ``clip_length`` frames from a video of ``length`` frames.

    Args:
        length: number of frames of the video (>= 1).
        clip_length: T, frames in the clip (>= 1; exactly 3 for ``"triplet"``).
        mode: ``"online"``, ``"window"`` or ``"triplet"`` (see the module docstring).
        max_skip: largest gap between consecutive clip frames (>= 1; 1 = adjacent frames).
        rng: the only source of randomness.
        ref: the reference frame; ``None`` draws it uniformly in ``[0, length - 1]``.
        memory_range: ``"triplet"`` only: the memory frame comes from this many frames
            before the neighbour/current pair.
        neighbour_offset: ``"triplet"`` only: neighbour = current + this (-1 or +1).

    Returns:
        ``clip_length`` indices in ``[0, length - 1]``: temporal order for ``"online"`` and
        ``"window"`` (the reference is last for ``"online"``), ``[memory, neighbour,
        current]`` for ``"triplet"``.
    """
    length = _check_int("length", length, 1)
    clip_length = _check_int("clip_length", clip_length, 1)
    max_skip = _check_int("max_skip", max_skip, 1)
    if mode not in SAMPLING_MODES:
        raise ValueError(
            f"sample_clip_indices: unknown mode {mode!r} (INPUT.CLIP.SAMPLING); "
            f"expected one of {SAMPLING_MODES}"
        )
    if ref is None:
        ref = int(rng.integers(length))
    elif not 0 <= int(ref) < length:
        raise ValueError(f"sample_clip_indices: ref={ref} is outside a video of {length} frames")
    ref = int(ref)

    if mode == "triplet":
        if clip_length != 3:
            raise ValueError(
                f"sample_clip_indices: 'triplet' sampling needs clip_length 3 "
                f"(INPUT.CLIP.LENGTH), got {clip_length}"
            )
        memory_range = _check_int("memory_range", memory_range, 1)
        neighbour = min(max(ref + int(neighbour_offset), 0), length - 1)
        first = min(ref, neighbour)
        if first == 0:
            memory = 0
        else:
            memory = int(rng.integers(max(0, first - memory_range), first))
        return [memory, neighbour, ref]

    # Cumulative offsets of the clip frames from its first frame: 0, g1, g1 + g2, ...
    gaps = rng.integers(1, max_skip + 1, size=clip_length - 1)
    offsets = np.concatenate([[0], np.cumsum(gaps)]).astype(np.int64)
    if mode == "online":
        indices = ref - offsets[-1] + offsets
    else:  # window
        span = int(offsets[-1])
        start = ref - offsets  # first frame when the reference sits at position p
        fits = np.flatnonzero((start >= 0) & (start + span <= length - 1))
        if len(fits) > 0:
            pos = int(fits[rng.integers(len(fits))])
        else:
            pos = int(rng.integers(clip_length))
        indices = start[pos] + offsets
    return [int(i) for i in np.clip(indices, 0, length - 1)]


class ClipSampler:
    """``INPUT.CLIP.*`` settings bound to :func:`sample_clip_indices`."""

    @configurable
    def __init__(
        self,
        *,
        clip_length: int,
        mode: str = "online",
        max_skip: int = 1,
        memory_range: int = 5,
        neighbour_offset: int = -1,
    ) -> None:
        if mode not in SAMPLING_MODES:
            raise ValueError(
                f"INPUT.CLIP.SAMPLING: unknown mode {mode!r}; expected one of {SAMPLING_MODES}"
            )
        if mode == "triplet" and clip_length != 3:
            raise ValueError(
                f"INPUT.CLIP.LENGTH must be 3 with INPUT.CLIP.SAMPLING 'triplet', got {clip_length}"
            )
        for key, value in (("LENGTH", clip_length), ("MAX_SKIP", max_skip)):
            if int(value) < 1:
                raise ValueError(f"INPUT.CLIP.{key} must be >= 1, got {value}")
        if int(memory_range) < 1:
            raise ValueError(f"INPUT.CLIP.MEMORY_RANGE must be >= 1, got {memory_range}")
        self.clip_length = int(clip_length)
        self.mode = mode
        self.max_skip = int(max_skip)
        self.memory_range = int(memory_range)
        self.neighbour_offset = int(neighbour_offset)

    @classmethod
    def from_config(cls, cfg) -> dict:
        c = cfg.INPUT.CLIP
        return {
            "clip_length": c.LENGTH,
            "mode": c.SAMPLING,
            "max_skip": c.MAX_SKIP,
            "memory_range": c.MEMORY_RANGE,
            "neighbour_offset": c.NEIGHBOUR_OFFSET,
        }

    def __call__(self, length: int, rng: np.random.Generator, ref: int | None = None) -> list[int]:
        """Indices of one clip of a ``length``-frame video (see :func:`sample_clip_indices`)."""
        return sample_clip_indices(
            length,
            self.clip_length,
            self.mode,
            self.max_skip,
            rng,
            ref=ref,
            memory_range=self.memory_range,
            neighbour_offset=self.neighbour_offset,
        )

    def __repr__(self) -> str:
        return (
            f"ClipSampler(clip_length={self.clip_length}, mode={self.mode!r}, "
            f"max_skip={self.max_skip}, memory_range={self.memory_range}, "
            f"neighbour_offset={self.neighbour_offset})"
        )
