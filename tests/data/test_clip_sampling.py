"""Clip sampling: valid indices, each mode's order, gaps, clamping, the sampler registry and
SALI's triplet offsets (a registered sampler of the SALI package)."""

import numpy as np
import pytest

from vps_d2.config import ConfigError, add_vps_config, get_cfg
from vps_d2.data.clip_sampling import (
    CLIP_SAMPLER_REGISTRY,
    OnlineClipSampler,
    build_clip_sampler,
    sample_clip_indices,
)
from vps_d2.methods.sali.sampling import TripletClipSampler, sample_triplet_indices


def _draws(n, **kw):
    rng = np.random.default_rng(123)
    return [sample_clip_indices(rng=rng, **kw) for _ in range(n)]


@pytest.mark.parametrize("mode", ["online", "window"])
def test_indices_valid_for_any_video(mode):
    rng = np.random.default_rng(0)
    for _ in range(500):
        length = int(rng.integers(1, 30))
        t = int(rng.integers(1, 7))
        skip = int(rng.integers(1, 5))
        ref = int(rng.integers(length))
        idx = sample_clip_indices(length, t, mode, skip, rng, ref=ref)
        assert len(idx) == t
        assert all(0 <= i < length for i in idx)
        assert ref in idx
        assert all(b >= a for a, b in zip(idx, idx[1:]))  # temporal order
        if mode == "online":
            assert idx[-1] == ref


def test_online_reference_last_and_gaps_within_max_skip():
    gaps_seen = set()
    for idx in _draws(300, length=100, clip_length=4, mode="online", max_skip=3, ref=60):
        assert idx[-1] == 60
        gaps = np.diff(idx)
        assert gaps.min() >= 1 and gaps.max() <= 3
        gaps_seen.update(gaps.tolist())
    assert gaps_seen == {1, 2, 3}


def test_online_max_skip_one_gives_previous_frames():
    for idx in _draws(20, length=50, clip_length=5, mode="online", max_skip=1, ref=30):
        assert idx == [26, 27, 28, 29, 30]


def test_online_clamps_at_video_start():
    rng = np.random.default_rng(0)
    assert sample_clip_indices(10, 3, "online", 2, rng, ref=0) == [0, 0, 0]
    assert sample_clip_indices(10, 4, "online", 1, rng, ref=1) == [0, 0, 0, 1]


def test_window_reference_anywhere_with_bounded_gaps():
    positions = set()
    for idx in _draws(400, length=100, clip_length=4, mode="window", max_skip=2, ref=50):
        gaps = np.diff(idx)
        assert gaps.min() >= 1 and gaps.max() <= 2
        positions.add(idx.index(50))
    assert positions == {0, 1, 2, 3}


def test_window_fits_inside_video_at_both_ends():
    # Near the ends only the positions whose window fits are used: no repeated frame.
    for idx in _draws(50, length=20, clip_length=3, mode="window", max_skip=2, ref=0):
        assert idx[0] == 0 and len(set(idx)) == 3
    for idx in _draws(50, length=20, clip_length=3, mode="window", max_skip=2, ref=19):
        assert idx[-1] == 19 and len(set(idx)) == 3


def test_window_short_video_clamps():
    for idx in _draws(50, length=2, clip_length=5, mode="window", max_skip=3, ref=1):
        assert len(idx) == 5 and set(idx) <= {0, 1} and 1 in idx
        assert idx == sorted(idx)


@pytest.mark.parametrize("offset", [-1, 1])
def test_triplet_memory_neighbour_current(offset):
    memories = set()
    rng = np.random.default_rng(123)
    draws = [
        sample_triplet_indices(40, rng, ref=20, memory_range=5, neighbour_offset=offset)
        for _ in range(300)
    ]
    for idx in draws:
        memory, neighbour, current = idx
        assert current == 20
        assert neighbour == 20 + offset
        first = min(current, neighbour)
        assert first - 5 <= memory <= first - 1
        memories.add(memory)
    assert len(memories) == 5  # every frame of the memory range is drawn


def test_triplet_clamps_at_video_ends():
    rng = np.random.default_rng(0)
    assert sample_triplet_indices(10, rng, ref=0, memory_range=5, neighbour_offset=-1) == [0, 0, 0]
    memory, neighbour, current = sample_triplet_indices(
        10, rng, ref=9, memory_range=5, neighbour_offset=1
    )
    assert (neighbour, current) == (9, 9) and 4 <= memory <= 8
    # Memory range clamped at frame 0.
    for _ in range(50):
        memory, neighbour, current = sample_triplet_indices(
            10, rng, ref=2, memory_range=5, neighbour_offset=-1
        )
        assert (neighbour, current) == (1, 2) and memory == 0


def test_random_reference_and_determinism():
    a = _draws(30, length=50, clip_length=3, mode="online", max_skip=4)
    b = _draws(30, length=50, clip_length=3, mode="online", max_skip=4)
    assert a == b
    assert len({tuple(x) for x in a}) > 20  # the reference frame is random


@pytest.mark.parametrize(
    "kw, msg",
    [
        (dict(mode="forward"), "unknown mode"),
        (dict(mode="triplet"), "registered samplers"),
        (dict(ref=10), "outside"),
        (dict(max_skip=0), "max_skip"),
        (dict(length=0), "length"),
    ],
)
def test_bad_arguments(kw, msg):
    args = dict(length=10, clip_length=3, mode="online", max_skip=1, rng=np.random.default_rng())
    args.update(kw)
    with pytest.raises(ValueError, match=msg):
        sample_clip_indices(**args)


def test_clip_sampler_registry_reads_config():
    cfg = add_vps_config(get_cfg())
    # unset (0 / ""): the frame-wise default until the engine writes the model's values
    sampler = build_clip_sampler(cfg)
    assert isinstance(sampler, OnlineClipSampler) and sampler.clip_length == 1
    assert {"online", "window", "triplet"} <= {k for k, _ in CLIP_SAMPLER_REGISTRY}
    cfg.INPUT.CLIP.LENGTH = 3
    cfg.INPUT.CLIP.SAMPLING = "triplet"
    cfg.MODEL.SALI.TRIPLET.NEIGHBOUR_OFFSET = 1
    cfg.MODEL.SALI.TRIPLET.MEMORY_RANGE = 2
    sampler = build_clip_sampler(cfg)
    assert isinstance(sampler, TripletClipSampler)
    memory, neighbour, current = sampler(30, np.random.default_rng(0), ref=10)
    assert (neighbour, current) == (11, 10) and memory in (8, 9)
    # INPUT.CLIP.LENGTH is checked once, against SALI's clip contract
    # (tests/modeling/test_clip_contract.py); the sampler always draws the 3 frames.
    cfg.INPUT.CLIP.SAMPLING = "backward"
    with pytest.raises(KeyError, match="INPUT.CLIP.SAMPLING.*'backward'.*triplet"):
        build_clip_sampler(cfg)


def test_moved_triplet_keys_name_their_new_place(tmp_path):
    """INPUT.CLIP.MEMORY_RANGE / NEIGHBOUR_OFFSET moved into SALI's section: a clear error."""
    path = tmp_path / "old.yaml"
    path.write_text("INPUT:\n  CLIP:\n    NEIGHBOUR_OFFSET: 1\n")
    cfg = add_vps_config(get_cfg())
    with pytest.raises(ConfigError, match=f"{path}.*MODEL.SALI.TRIPLET.NEIGHBOUR_OFFSET"):
        cfg.merge_from_file(str(path))
    with pytest.raises(ConfigError, match="command-line.*MODEL.SALI.TRIPLET.MEMORY_RANGE"):
        cfg.merge_from_list(["INPUT.CLIP.MEMORY_RANGE", "3"])
