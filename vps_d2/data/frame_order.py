"""Frame ordering: SUN-SEG's naming, and plain numeric stems for other datasets.

SUN stems look like ``case_M_20181001100941_0U62372100109341_1_005_001-1_a2_ayy_image0001``;
plain lexical sorting is wrong for them. Other datasets use stems such as ``00001`` or
``frame_12``; those sort by their last number, then by name.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

__all__ = ["case_sort_key", "frame_sort_key", "sort_frames"]

_CASE_RE = re.compile(r"^case(\d+)(?:_(\d+))?$")
_NUM_RE = re.compile(r"(\d+)")


def case_sort_key(case: str) -> tuple:
    """``case<N>_<M>`` / ``case<N>`` -> (0, N, M or 0); anything else after them, by name."""
    m = _CASE_RE.match(case)
    if m:
        return (0, int(m.group(1)), int(m.group(2) or 0), case)
    return (1, 0, 0, case)


def _sun_key(stem: str) -> tuple | None:
    if "_image" not in stem or "_a" not in stem or "-" not in stem:
        return None
    try:
        return (
            int(stem.split("-")[0].split("_")[-1]),
            int(stem.split("_a")[1].split("_")[0]),
            int(stem.split("_image")[1]),
        )
    except (ValueError, IndexError):
        return None


def frame_sort_key(path: str, case: str = "") -> tuple:
    """Sort key of one frame file.

    SUN stems: (N, M or 0, int(stem.split('-')[0].split('_')[-1]),
    int(stem.split('_a')[1].split('_')[0]), int(stem.split('_image')[1])) as in
    the SUN-SEG benchmark, where N, M come from the case name ``case<N>_<M>``.
    Other stems: (numbers in the stem, as integers), then the stem itself.
    """
    stem = os.path.splitext(os.path.basename(path))[0]
    sun = _sun_key(stem)
    if sun is not None:
        m = _CASE_RE.match(case) if case else None
        n, mm = (int(m.group(1)), int(m.group(2) or 0)) if m else (0, 0)
        return (0, n, mm) + sun + (stem,)
    nums = tuple(int(x) for x in _NUM_RE.findall(stem))
    return (1, nums[-1] if nums else -1, nums, stem)


def sort_frames(paths: Iterable[str], case: str = "") -> list[str]:
    """Return ``paths`` in temporal order (see :func:`frame_sort_key`)."""
    return sorted(paths, key=lambda p: frame_sort_key(p, case))
