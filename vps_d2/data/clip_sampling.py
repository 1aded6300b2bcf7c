"""Which frames of a video form one training clip: CLIP_SAMPLER_REGISTRY.

A clip sampler is built from the config as ``cls(cfg)`` (name: ``INPUT.CLIP.SAMPLING``)
and called as ``sampler(length, rng, ref=None) -> list[int]``: the frame indices of one
clip of a ``length``-frame video around the reference frame ``ref``. Every returned index
lies in ``[0, length - 1]``; randomness comes only from ``rng`` (a
:class:`numpy.random.Generator`), so a clip is reproducible from its seed. The built-in
modes (:func:`sample_clip_indices`):

* ``"online"``: the reference frame is the **last** frame of the clip; the ``T - 1`` others
  precede it, each gap between consecutive frames drawn uniformly in ``[1, MAX_SKIP]``.
  Near the start of a video indices are clamped at 0, so the first frame repeats
  (``ref = 1, T = 3`` may give ``[0, 0, 1]``). Order: temporal (non-decreasing).
* ``"window"``: gaps drawn as above; the reference frame takes a position drawn uniformly
  among the positions whose window fits inside the video (any position when none fits:
  then the indices are clamped into the video and end frames repeat). Order: temporal.

Methods register their own rules in their
package (SALI's ``"triplet"``: vps_d2/methods/sali/sampling.py), under the value of
``INPUT.CLIP.SAMPLING`` that selects them (``@CLIP_SAMPLER_REGISTRY.register_as("triplet")``).
"""

from __future__ import annotations

import numpy as np

from vps_d2.config import configurable, register_renamed_key
from vps_d2.utils.registry import Registry

__all__ = [
    "CLIP_SAMPLER_REGISTRY",
    "ClipSampler",
    "OnlineClipSampler",
    "WindowClipSampler",
    "build_clip_sampler",
    "check_int",
    "sample_clip_indices",
]

CLIP_SAMPLER_REGISTRY = Registry("CLIP_SAMPLER")
CLIP_SAMPLER_REGISTRY.__doc__ = """
Registry for training clip samplers: ``cls(cfg)`` -> ``sampler(length, rng, ref=None)``
-> frame indices (the value of INPUT.CLIP.SAMPLING names the class).
"""

# SALI's triplet keys moved into the SALI package.
register_renamed_key(
    "INPUT.CLIP.MEMORY_RANGE",
    "MODEL.SALI.TRIPLET.MEMORY_RANGE",
    "the triplet sampling is SALI's own",
)
register_renamed_key(
    "INPUT.CLIP.NEIGHBOUR_OFFSET",
    "MODEL.SALI.TRIPLET.NEIGHBOUR_OFFSET",
    "the triplet sampling is SALI's own",
)

_BUILTIN_MODES = ("online", "window")


def check_int(name: str, value, minimum: int, where: str = "sample_clip_indices") -> int:
    """``value`` as an int, or a ValueError naming ``name`` when it is not an int >= minimum."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{where}: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_ref(ref: int | None, length: int, rng: np.random.Generator) -> int:
    """The reference frame: ``ref`` checked against the video, or drawn when None."""
    if ref is None:
        return int(rng.integers(length))
    if not 0 <= int(ref) < length:
        raise ValueError(f"sample_clip_indices: ref={ref} is outside a video of {length} frames")
    return int(ref)


def sample_clip_indices(
    length: int,
    clip_length: int,
    mode: str,
    max_skip: int,
    rng: np.random.Generator,
    ref: int | None = None,
) -> list[int]:
    """Frame indices of one ``"online"`` or ``"window"`` clip (see the module docstring).

    Args:
        length: number of frames of the video (>= 1).
        clip_length: T, frames in the clip (>= 1).
        mode: ``"online"`` or ``"window"``.
        max_skip: largest gap between consecutive clip frames (>= 1; 1 = adjacent frames).
        rng: the only source of randomness.
        ref: the reference frame; ``None`` draws it uniformly in ``[0, length - 1]``.

    Returns:
        ``clip_length`` indices in ``[0, length - 1]`` in temporal order (the reference is
        last for ``"online"``).
    """
    length = check_int("length", length, 1)
    clip_length = check_int("clip_length", clip_length, 1)
    max_skip = check_int("max_skip", max_skip, 1)
    if mode not in _BUILTIN_MODES:
        raise ValueError(
            f"sample_clip_indices: unknown mode {mode!r}; expected one of {_BUILTIN_MODES} "
            f"(other rules are registered samplers: {sorted(k for k, _ in CLIP_SAMPLER_REGISTRY)})"
        )
    ref = check_ref(ref, length, rng)
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
    """Base class: ``INPUT.CLIP.LENGTH`` / ``MAX_SKIP`` bound to one sampling rule."""

    #: The INPUT.CLIP.SAMPLING value of the rule.
    mode: str = ""

    @configurable
    def __init__(self, *, clip_length: int, max_skip: int = 1) -> None:
        for key, value in (("LENGTH", clip_length), ("MAX_SKIP", max_skip)):
            if isinstance(value, bool) or int(value) < 1:
                raise ValueError(f"INPUT.CLIP.{key} must be >= 1, got {value}")
        self.clip_length = int(clip_length)
        self.max_skip = int(max_skip)

    @classmethod
    def from_config(cls, cfg) -> dict:
        # 0 = unset: the engine's setup writes the model's length (vps_d2.modeling.
        # resolve_clip_config); a config used without it gets the frame-wise default.
        return {"clip_length": cfg.INPUT.CLIP.LENGTH or 1, "max_skip": cfg.INPUT.CLIP.MAX_SKIP}

    def __call__(self, length: int, rng: np.random.Generator, ref: int | None = None) -> list[int]:
        """Indices of one clip of a ``length``-frame video (see :func:`sample_clip_indices`)."""
        return sample_clip_indices(length, self.clip_length, self.mode, self.max_skip, rng, ref)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(clip_length={self.clip_length}, mode={self.mode!r}, "
            f"max_skip={self.max_skip})"
        )


@CLIP_SAMPLER_REGISTRY.register_as("online")
class OnlineClipSampler(ClipSampler):
    """``"online"``: the reference frame last, the others before it."""

    mode = "online"


@CLIP_SAMPLER_REGISTRY.register_as("window")
class WindowClipSampler(ClipSampler):
    """``"window"``: the reference frame anywhere in a window that fits in the video."""

    mode = "window"


def build_clip_sampler(cfg):
    """The sampler named by ``INPUT.CLIP.SAMPLING``, built as ``cls(cfg)`` ("" = unset, the
    model's sampler once the engine resolved it: "online" without that)."""
    cls = CLIP_SAMPLER_REGISTRY.get_for(
        cfg.INPUT.CLIP.SAMPLING or "online",
        "INPUT.CLIP.SAMPLING",
        "a method's own mode is registered when its package is imported",
    )
    return cls(cfg)
