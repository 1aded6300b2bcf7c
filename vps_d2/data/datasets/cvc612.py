"""CVC-612 (CVC-ClinicDB) reader: the raw release, split into its 29 sequences.

Layout (``root`` = ``<datasets root>/CVC-612``)::

    Original/<n>.tif|png            # frames 1..612 (384x288)
    Ground Truth/<n>.tif|png        # masks ("GroundTruth" and "Ground_Truth" accepted)

``Original/`` may also sit in ``root/PNG/`` or ``root/TIF/`` (a common repackaging; PNG is
preferred). One record per sequence; ``video_id`` is ``seqNN`` with the 0-based sequence
index used by ``DATASETS.CVC612.*_SEQUENCES`` (``seq00`` .. ``seq28``). All 612 frames must
be present; a frame without a mask is kept with ``gt_file_names[i] = None`` (with a warning).
Boxes come from the masks lazily (:class:`~vps_d2.data.datasets.folder.MaskBoxes`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from .folder import _listing, find_subdir, list_image_files, make_video_record

__all__ = [
    "CVC612_NUM_FRAMES",
    "CVC612_SEQUENCES",
    "find_cvc612_files",
    "load_cvc612",
    "validate_cvc612_splits",
]

logger = logging.getLogger(__name__)

# (first, last) frame numbers, 1-based and inclusive, of the 29 sequences.
CVC612_SEQUENCES = (
    (1, 25),
    (26, 50),
    (51, 67),
    (68, 78),
    (79, 103),
    (104, 126),
    (127, 151),
    (152, 177),
    (178, 199),
    (200, 205),
    (206, 227),
    (228, 252),
    (253, 277),
    (278, 297),
    (298, 317),
    (318, 342),
    (343, 363),
    (364, 383),
    (384, 408),
    (409, 428),
    (429, 447),
    (448, 466),
    (467, 478),
    (479, 503),
    (504, 528),
    (529, 546),
    (547, 571),
    (572, 591),
    (592, 612),
)
CVC612_NUM_FRAMES = 612

_FRAME_DIRS = ("Original",)
_GT_DIRS = ("Ground Truth", "GroundTruth", "Ground_Truth")


def _ranges(nums: Sequence[int]) -> str:
    """[1, 2, 3, 7] -> "1-3, 7"."""
    out, nums = [], sorted(nums)
    i = 0
    while i < len(nums):
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        out.append(str(nums[i]) if i == j else f"{nums[i]}-{nums[j]}")
        i = j + 1
    return ", ".join(out)


def _numbered(folder: str) -> dict[int, str]:
    files = list_image_files(folder)
    out: dict[int, str] = {}
    bad = []
    for stem, path in files.items():
        if not stem.isdigit():
            bad.append(os.path.basename(path))
            continue
        n = int(stem)
        if n in out:
            raise ValueError(
                f"Two files for frame {n} in {folder}: {os.path.basename(out[n])} and "
                f"{os.path.basename(path)}"
            )
        out[n] = path
    if bad:
        logger.warning("Ignoring file(s) not named <number> in %s: %s", folder, _listing(bad))
    outside = sorted(n for n in out if not 1 <= n <= CVC612_NUM_FRAMES)
    if outside:
        raise ValueError(
            f"{folder}: frame numbers outside 1..{CVC612_NUM_FRAMES}: "
            f"{_listing([os.path.basename(out[n]) for n in outside])}"
        )
    return out


def find_cvc612_files(root: str) -> tuple[dict[int, str], dict[int, str]]:
    """``({n: frame path}, {n: mask path})`` of the raw CVC-612 release under ``root``.

    Raises:
        FileNotFoundError: no ``Original/`` folder under ``root`` (or ``root/PNG``,
            ``root/TIF``).
        ValueError: frames missing (all listed), numbers outside 1..612, two files for one
            frame.
    """
    base = None
    for cand in (root, os.path.join(root, "PNG"), os.path.join(root, "TIF")):
        if os.path.isdir(cand) and find_subdir(cand, _FRAME_DIRS):
            base = cand
            break
    if base is None:
        raise FileNotFoundError(
            f"CVC-612: no 'Original' folder in {root} (nor in {root}/PNG, {root}/TIF). "
            f"Expected the raw release: Original/<n>.tif and 'Ground Truth'/<n>.tif; see "
            f"datasets/README.md"
        )
    frame_dir = find_subdir(base, _FRAME_DIRS)
    frames = _numbered(frame_dir)
    missing = [n for n in range(1, CVC612_NUM_FRAMES + 1) if n not in frames]
    if missing:
        raise ValueError(
            f"CVC-612: {frame_dir} holds {len(frames)} of the {CVC612_NUM_FRAMES} frames; "
            f"missing frame numbers: {_ranges(missing)}"
        )
    gt_dir = find_subdir(base, _GT_DIRS)
    gts: dict[int, str] = {}
    if gt_dir is None:
        logger.warning(
            "CVC-612: no ground-truth folder (%s) in %s: frames have no masks",
            " / ".join(repr(d) for d in _GT_DIRS),
            base,
        )
    else:
        gts = _numbered(gt_dir)
        no_gt = [n for n in frames if n not in gts]
        if no_gt:
            logger.warning(
                "CVC-612: %d frame(s) have no mask in %s (kept without ground truth): %s",
                len(no_gt),
                gt_dir,
                _ranges(no_gt),
            )
    return frames, gts


def validate_cvc612_splits(splits: dict[str, Sequence[int]]) -> None:
    """Check ``{config key: sequence indices}``: integers in 0..28, no overlap, no repeats.

    Raises:
        ValueError: naming the config key(s) at fault.
    """
    n = len(CVC612_SEQUENCES)
    for key, seqs in splits.items():
        for s in seqs:
            if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < n:
                raise ValueError(f"{key}: sequence index {s!r} is not an integer in 0..{n - 1}")
        dup = sorted({s for s in seqs if list(seqs).count(s) > 1})
        if dup:
            raise ValueError(f"{key}: sequence indices listed twice: {dup}")
    keys = list(splits)
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            common = sorted(set(splits[a]) & set(splits[b]))
            if common:
                raise ValueError(f"{a} and {b} share sequence indices {common}")


def load_cvc612(root: str, sequences: Sequence[int], dataset_name: str, split: str) -> list[dict]:
    """One video record per CVC-612 sequence in ``sequences`` (0-based indices), in order."""
    validate_cvc612_splits({f"{dataset_name} sequences": list(sequences)})
    frames, gts = find_cvc612_files(root)
    records = []
    for idx in sorted(sequences):
        first, last = CVC612_SEQUENCES[idx]
        nums = range(first, last + 1)
        video = {
            "video_id": f"seq{idx:02d}",
            "file_names": [frames[n] for n in nums],
            "gt_file_names": [gts.get(n) for n in nums],
            "frame_names": [os.path.splitext(os.path.basename(frames[n]))[0] for n in nums],
        }
        records.append(make_video_record(dataset_name, split, video))
    return records
