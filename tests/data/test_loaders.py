"""Training/test loaders: determinism across workers, sharding, weighting, test order."""

import itertools
from collections import Counter

import cv2
import pytest
import torch
from test_mappers import write_video

from vps_d2.config import add_vps_config, get_cfg
from vps_d2.data import DatasetCatalog
from vps_d2.data import build as build_mod
from vps_d2.data.build import (
    TrainClipDataset,
    build_test_loader,
    build_train_loader,
    get_video_records,
)
from vps_d2.data.samplers import TrainingSampler, shard_indices


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    """A registered dataset of 3 videos of 3, 5 and 8 frames (sizes differ)."""
    root = tmp_path_factory.mktemp("tiny_vps")
    records = [
        write_video(root, "case1", n=3, size=(40, 56)),
        write_video(root, "case2", n=5, size=(60, 80)),
        write_video(root, "case3", n=8, size=(48, 64), missing_gt=(7,)),
    ]
    name = "test_loaders_tiny"
    DatasetCatalog.register(name, lambda: [dict(r) for r in records])
    DatasetCatalog.register(name + "_empty", lambda: [])
    yield name, records
    DatasetCatalog.remove(name)
    DatasetCatalog.remove(name + "_empty")


def _cfg(name, workers=0):
    cfg = add_vps_config(get_cfg())
    cfg.DATASETS.TRAIN = (name,)
    cfg.INPUT.SIZE_TRAIN = (32, 40)
    cfg.INPUT.CLIP.LENGTH = 2
    cfg.INPUT.CLIP.MAX_SKIP = 2
    cfg.SOLVER.IMS_PER_BATCH = 3
    cfg.DATALOADER.NUM_WORKERS = workers
    cfg.SEED = 11
    return cfg


def _take(loader, n_batches):
    return list(itertools.islice(iter(loader), n_batches))


def _same(batches_a, batches_b):
    for ba, bb in zip(batches_a, batches_b, strict=True):
        for a, b in zip(ba, bb, strict=True):
            if a["video_id"] != b["video_id"] or a["frame_indices"] != b["frame_indices"]:
                return False
            if not torch.equal(a["image"], b["image"]) or not torch.equal(
                a["sem_seg"], b["sem_seg"]
            ):
                return False
    return True


def test_train_loader_deterministic_for_0_and_2_workers(tiny_dataset):
    name, _ = tiny_dataset
    b0 = _take(build_train_loader(_cfg(name, workers=0)), 4)
    b0_again = _take(build_train_loader(_cfg(name, workers=0)), 4)
    b2 = _take(build_train_loader(_cfg(name, workers=2)), 4)
    assert all(isinstance(b, list) and len(b) == 3 for b in b0)
    assert b0[0][0]["image"].shape == (2, 3, 32, 40)
    assert _same(b0, b0_again)
    assert _same(b0, b2)
    other = _take(build_train_loader(_cfg(name), seed=12), 4)
    assert not _same(b0, other)
    # 12 clips: more than one epoch of the 15 annotated frames is not reached, so no
    # (video, reference) pair repeats within the first 12 samples.
    pairs = [(c["video_id"], c["frame_indices"][-1]) for b in b0 for c in b]
    assert len(set(pairs)) == 12
    assert ("case3", 7) not in pairs  # frame without GT is never a reference


def test_train_loader_resumes_the_same_stream(tiny_dataset):
    name, _ = tiny_dataset
    full = _take(build_train_loader(_cfg(name)), 5)
    resumed = _take(build_train_loader(_cfg(name), start_iter=3), 2)
    assert _same(full[3:], resumed)


def test_batch_size_must_divide_across_processes(tiny_dataset, monkeypatch):
    name, _ = tiny_dataset
    monkeypatch.setattr(build_mod.comm, "get_world_size", lambda: 2)
    with pytest.raises(ValueError, match="IMS_PER_BATCH"):
        build_train_loader(_cfg(name))  # 3 clips over 2 processes


def test_sampler_shards_are_disjoint_and_cover_the_stream():
    size, world, n = 7, 3, 20
    shards = [
        list(itertools.islice(TrainingSampler(size, seed=5, rank=r, world_size=world), n))
        for r in range(world)
    ]
    single = list(itertools.islice(TrainingSampler(size, seed=5, rank=0, world_size=1), n * world))
    positions = [p for shard in shards for p, _ in shard]
    assert sorted(positions) == list(range(n * world))  # disjoint and covering
    for shard in shards:
        for pos, idx in shard:
            assert single[pos] == (pos, idx)  # all ranks agree on one global stream
    # Each pass over the data is a permutation: uniform over samples.
    for e in range(n * world // size):
        assert sorted(i for _, i in single[e * size : (e + 1) * size]) == list(range(size))
    other_seed = list(itertools.islice(TrainingSampler(size, seed=6, world_size=1, rank=0), 14))
    assert other_seed != single[:14]


def test_samples_are_frames_so_videos_weigh_by_length(tiny_dataset):
    _, records = tiny_dataset
    ds = TrainClipDataset(records, mapper=lambda r, rng, ref: (r["video_id"], ref), seed=0)
    assert len(ds) == 3 + 5 + 7  # annotated frames
    refs = [ds[i] for i in range(len(ds))]
    assert Counter(v for v, _ in refs) == {"case1": 3, "case2": 5, "case3": 7}
    assert sorted(r for v, r in refs if v == "case3") == list(range(7))
    # The clip's randomness comes from the global position, not from the worker.
    ds2 = TrainClipDataset(records, mapper=lambda r, rng, ref: rng.integers(1 << 30), seed=0)
    assert ds2[(4, 2)] == ds2[(4, 2)] != ds2[(5, 2)]


def test_test_loader_order_size_and_sharding(tiny_dataset):
    name, records = tiny_dataset
    cfg = _cfg(name)
    cfg.DATALOADER.NUM_WORKERS_TEST = 1
    seen = []
    for rank in range(2):
        loader = build_test_loader(cfg, name, rank=rank, world_size=2)
        assert len(list(loader.videos())) == len(shard_indices(3, rank, 2))
        for video in loader.videos():
            rec = video.record
            frames = list(video)
            assert len(frames) == len(video) == rec["length"]
            assert [f["frame_index"] for f in frames] == list(range(rec["length"]))
            h, w = cv2.imread(rec["file_names"][0]).shape[:2]
            for f in frames:
                assert f["image"].shape == (3, h, w) and (f["height"], f["width"]) == (h, w)
                assert f["video_id"] == rec["video_id"]
            seen.append((rank, rec["video_id"]))
    assert seen == [(0, "case1"), (0, "case3"), (1, "case2")]


@pytest.mark.parametrize("per_batch", [1, 3])
def test_test_loader_batches_consecutive_frames_of_one_video(tiny_dataset, per_batch):
    """Iterating the loader gives Detectron2-style batches: consecutive frames of one video,
    per_batch at a time (the last batch of a video shorter), every frame exactly once."""
    name, records = tiny_dataset
    cfg = _cfg(name)
    cfg.DATALOADER.NUM_WORKERS_TEST = 0
    loader = build_test_loader(cfg, name, frames_per_batch=per_batch)
    batches = list(loader)
    assert len(batches) == len(loader) == sum(-(-r["length"] // per_batch) for r in records)
    seen = []
    for batch in batches:
        assert 1 <= len(batch) <= per_batch
        assert len({f["video_id"] for f in batch}) == 1
        idx = [f["frame_index"] for f in batch]
        assert idx == list(range(idx[0], idx[0] + len(batch)))
        seen += [(f["video_id"], f["frame_index"]) for f in batch]
    assert seen == [(r["video_id"], i) for r in records for i in range(r["length"])]
    with pytest.raises(ValueError, match="frames_per_batch"):
        build_test_loader(cfg, name, frames_per_batch=0)


def test_get_video_records_errors(tiny_dataset):
    name, records = tiny_dataset
    assert [r["video_id"] for r in get_video_records([name, name])] == [
        r["video_id"] for r in records + records
    ]
    with pytest.raises(ValueError, match=f"{name}_empty"):
        get_video_records(name + "_empty")
    with pytest.raises(KeyError, match="not registered"):
        get_video_records("no_such_dataset")
    DatasetCatalog.register("test_loaders_bad", lambda: [{"video_id": "x", "length": 2}])
    try:
        with pytest.raises(ValueError, match="test_loaders_bad"):
            get_video_records("test_loaders_bad")
    finally:
        DatasetCatalog.remove("test_loaders_bad")
