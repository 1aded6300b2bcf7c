"""The plan of the synthetic sample dataset: which clips, cases, classes, difficulties and
frame stems it holds, decided before any pixel is drawn (:func:`plan_sample_dataset`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vps_d2.data import CLASS_NAMES
from vps_d2.data.frame_order import case_sort_key

__all__ = ["SPLITS", "TRAIN_SPLIT", "ClipPlan", "plan_sample_dataset"]

TRAIN_SPLIT = "TrainDataset"
SPLITS = (
    TRAIN_SPLIT,
    "TestEasyDataset/Seen",
    "TestEasyDataset/Unseen",
    "TestHardDataset/Seen",
    "TestHardDataset/Unseen",
)
# difficulty range per split (0 = easiest, 1 = hardest)
_DIFFICULTY = {
    TRAIN_SPLIT: (0.0, 0.9),
    "TestEasyDataset/Seen": (0.0, 0.35),
    "TestEasyDataset/Unseen": (0.0, 0.35),
    "TestHardDataset/Seen": (0.65, 1.0),
    "TestHardDataset/Unseen": (0.65, 1.0),
}


@dataclass(frozen=True)
class ClipPlan:
    """What one clip will contain (everything decided before any pixel is drawn)."""

    split: str  # one of SPLITS
    case: str  # folder name, "case<N>_<M>" or "case<N>"
    video: int  # N: the video id (scene and polyp are per video)
    clip: int  # M: the clip number inside the video (1 for unsplit videos)
    class_name: str  # pathological class of the video (a CLASS_NAMES entry)
    difficulty: float  # 0..1, drives motion, blur, polyp size, occlusion, low quality
    leaves_view: bool  # the camera pans away from the polyp for a stretch (empty masks)
    occluded: bool  # an instrument covers part of the polyp for a stretch
    stems: tuple[str, ...]  # frame stems in temporal order

    @property
    def num_frames(self) -> int:
        return len(self.stems)


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(
            f"make_sample_dataset: {name} must be an integer >= {minimum}, got {value!r}"
        )
    return int(value)


def _video_stem_parts(seed: int, video: int) -> tuple[str, str]:
    rng = np.random.default_rng([seed, video, 3])
    mo, d, hh, mi, ss = (int(v) for v in rng.integers([1, 1, 8, 0, 0], [13, 29, 18, 60, 60]))
    date = f"2018{mo:02d}{d:02d}{hh:02d}{mi:02d}{ss:02d}"
    device = "0U" + "".join(str(int(x)) for x in rng.integers(0, 10, size=14))
    return date, device


def _clip_stems(seed: int, video: int, clip: int, num_frames: int) -> tuple[str, ...]:
    """SUN-style stems in temporal order; the a<k> part crosses 9 -> 10, image numbers unpadded."""
    rng = np.random.default_rng([seed, video, clip, 4])
    date, device = _video_stem_parts(seed, video)
    n_seg = int(min(num_frames, rng.integers(2, 4)))  # 2 or 3 segments
    k0 = int(rng.integers(11 - n_seg, 10))  # the k run always contains 9 and 10
    cuts = np.sort(rng.choice(np.arange(1, num_frames), size=n_seg - 1, replace=False))
    seg_of_frame = np.searchsorted(cuts, np.arange(num_frames), side="right")
    first = int(rng.integers(1, 120))
    return tuple(
        f"case_M_{date}_{device}_1_005_{clip:03d}-1_a{k0 + int(seg_of_frame[i])}_ayy"
        f"_image{first + i}"
        for i in range(num_frames)
    )


def plan_sample_dataset(
    *,
    seed: int = 0,
    train_clips: int = 10,
    test_clips: int = 3,
    frames_min: int = 20,
    frames_max: int = 40,
) -> list[ClipPlan]:
    """Decide the clips of the sample dataset (no drawing; cheap).

    Training clips are spread round-robin over ``ceil(train_clips / 2)`` videos; each of the
    four test splits gets ``test_clips`` clips: "Seen" ones are new clips of training videos,
    "Unseen" ones are single-clip videos not used in training. Classes are assigned per video,
    training videos cycling over a seed-dependent permutation of ``CLASS_NAMES`` and Unseen
    videos over the classes the training videos have. Returns the clips in the
    order of ``SPLITS``, then ``case_sort_key``.
    """
    seed = _check_int("seed", seed, 0)
    train_clips = _check_int("train_clips", train_clips, 1)
    test_clips = _check_int("test_clips", test_clips, 0)
    frames_min = _check_int("frames_min", frames_min, 2)
    frames_max = _check_int("frames_max", frames_max, frames_min)

    rng = np.random.default_rng([seed, 7919])
    class_order = rng.permutation(len(CLASS_NAMES))
    n_train_videos = max(1, math.ceil(train_clips / 2))
    clips_per_video: dict[int, int] = {}

    assignments: list[tuple[str, int, int, str]] = []  # split, N, M, case
    for i in range(train_clips):
        n = 1 + i % n_train_videos
        clips_per_video[n] = clips_per_video.get(n, 0) + 1
        m = clips_per_video[n]
        assignments.append((TRAIN_SPLIT, n, m, f"case{n}_{m}"))
    seen_counter = 0
    next_video = n_train_videos + 1
    for split in SPLITS[1:]:
        for _ in range(test_clips):
            if split.endswith("/Seen"):
                n = 1 + seen_counter % n_train_videos
                seen_counter += 1
                clips_per_video[n] = clips_per_video.get(n, 0) + 1
                m = clips_per_video[n]
                assignments.append((split, n, m, f"case{n}_{m}"))
            else:
                n = next_video
                next_video += 1
                assignments.append((split, n, 1, f"case{n}"))

    def n_classes(n: int) -> int:
        # Training videos cycle over all classes; an Unseen video (not trained on) gets a
        # class that some training video has, so it can be recognised from its look.
        return len(CLASS_NAMES) if n <= n_train_videos else min(len(CLASS_NAMES), n_train_videos)

    plans = []
    for k, (split, n, m, case) in enumerate(assignments):
        lo, hi = _DIFFICULTY[split]
        num_frames = int(rng.integers(frames_min, frames_max + 1))
        difficulty = float(rng.uniform(lo, hi))
        # Every other training clip leaves the view (empty masks to learn from). Test clips
        # keep the polyp in view like SUN-SEG's positive clips: the toolbox scores a frame
        # with an empty GT as Dice 0 whatever the prediction, which would cap every model's
        # Dice. The draw is made for every clip so that the training clips stay the same.
        leaves_view = k % 2 == 0 or bool(rng.random() < 0.3)
        leaves_view = leaves_view and split == TRAIN_SPLIT
        occluded = bool(rng.random() < 0.25 + 0.5 * difficulty)
        plans.append(
            ClipPlan(
                split=split,
                case=case,
                video=n,
                clip=m,
                class_name=CLASS_NAMES[int(class_order[(n - 1) % n_classes(n)])],
                difficulty=round(difficulty, 4),
                leaves_view=leaves_view,
                occluded=occluded,
                stems=_clip_stems(seed, n, m, num_frames),
            )
        )
    order = {s: i for i, s in enumerate(SPLITS)}
    plans.sort(key=lambda p: (order[p.split], case_sort_key(p.case)))
    return plans
