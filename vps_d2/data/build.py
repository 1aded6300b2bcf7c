"""Training and test loaders.

Training (:func:`build_train_loader`): a *sample* is a (video, reference frame) pair, one
per annotated frame of every training video. The infinite sampler shuffles all samples
(uniform over annotated frames, so a video is drawn in proportion to its number of
annotated frames; every frame is a reference once per pass) and each process keeps its
shard of the stream. Sample ``k`` of the global stream is mapped with
``numpy.random.default_rng([seed, k])``: the clips depend only on the seed, never on the
number of workers. Batches are lists of mapped clips (``SOLVER.IMS_PER_BATCH //
world_size`` per process).

Test (:func:`build_test_loader`): the process ``rank`` of ``world_size`` takes the videos
``rank::world_size``; the loader yields *batches*: lists of ``frames_per_batch``
consecutive frames of one video (the last batch of a video may be shorter), videos one
after the other, frames read ahead by ``DATALOADER.NUM_WORKERS_TEST`` workers (at most
``2 * workers`` frames in flight). This is the per-batch protocol of Detectron2's
``inference_on_dataset``: ``outputs = model(batch)``, one output per frame, the model keeping
its stream state per video (see :mod:`vps_d2.modeling.meta_arch.base`).
"""

from __future__ import annotations

import bisect
import inspect
import logging
import random
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from vps_d2.utils import comm

from .catalog import DatasetCatalog
from .datasets.builtin import exclude_holdout
from .mappers import VideoTestFrames, build_mapper, check_record
from .samplers import TrainingSampler, shard_indices, shared_random_seed

__all__ = [
    "TestVideo",
    "TrainClipDataset",
    "VideoTestLoader",
    "build_test_loader",
    "build_train_loader",
    "get_video_records",
    "pin_memory_from_cfg",
    "trivial_batch_collator",
    "worker_init_reset_seed",
]

logger = logging.getLogger(__name__)


def get_video_records(dataset_names: str | Sequence[str]) -> list[dict]:
    """Concatenate the video records of the registered datasets ``dataset_names``.

    Raises:
        ValueError: no dataset name, a dataset with no video, or a malformed record
            (naming the dataset and the video).
        KeyError: a name that is not registered (the catalog lists the registered ones).
    """
    if isinstance(dataset_names, str):
        dataset_names = [dataset_names]
    dataset_names = list(dataset_names)
    if not dataset_names:
        raise ValueError("No dataset given (DATASETS.TRAIN / DATASETS.TEST is empty)")
    records: list[dict] = []
    for name in dataset_names:
        recs = DatasetCatalog.get(name)
        if not recs:
            raise ValueError(
                f"Dataset '{name}' is empty: its loader returned no video. Check that the "
                f"dataset exists under DATASETS.ROOT (or $VPS_DATASETS) in the expected layout."
            )
        for r in recs:
            check_record(r, where=f"dataset '{name}'")
        empty = [r["video_id"] for r in recs if r["length"] == 0]
        if empty:
            logger.warning(
                "Dataset '%s': skipping %d video(s) without frames: %s", name, len(empty), empty
            )
        records.extend(r for r in recs if r["length"] > 0)
        logger.info(
            "Dataset '%s': %d videos, %d frames", name, len(recs), sum(r["length"] for r in recs)
        )
    return records


def trivial_batch_collator(batch: list) -> list:
    """Batches stay lists of dicts."""
    return batch


def worker_init_reset_seed(worker_id: int) -> None:
    """Seed ``random``/``numpy``'s global generators in a worker from torch's worker seed.

    The mappers use explicit generators; this only makes any other (global) randomness of
    a user's mapper reproducible. (OpenCV's thread count is left alone: calling
    ``cv2.setNumThreads`` in a forked worker after the parent used OpenCV's thread pool
    can deadlock.)
    """
    seed = torch.initial_seed() % 2**31
    random.seed(seed)
    np.random.seed(seed)


def _accepts_rng(mapper: Callable) -> bool:
    try:
        params = inspect.signature(mapper).parameters
    except (TypeError, ValueError):
        return False
    return "rng" in params and "ref" in params


class TrainClipDataset(Dataset):
    """Map-style dataset of (video, reference frame) samples over annotated frames.

    ``dataset[(k, i)]``: sample ``i`` (the i-th annotated frame over all videos) mapped with
    ``mapper(record, rng=default_rng([seed, k]), ref=frame)``; ``dataset[i]`` uses ``k = i``.
    Videos without any annotated frame are left out (with a warning).
    """

    def __init__(self, records: list[dict], mapper: Callable, seed: int) -> None:
        self.records: list[dict] = []
        self._refs: list[np.ndarray] = []  # annotated frame indices per kept video
        skipped = []
        for r in records:
            refs = np.array(
                [i for i, g in enumerate(r["gt_file_names"]) if g is not None], dtype=np.int64
            )
            if len(refs) == 0:
                skipped.append(r["video_id"])
                continue
            self.records.append(r)
            self._refs.append(refs)
        if skipped:
            logger.warning(
                "Training: %d video(s) without any GT mask are not used: %s", len(skipped), skipped
            )
        if not self.records:
            raise ValueError("No training video has a GT mask: nothing to train on")
        self._starts = np.cumsum([0] + [len(x) for x in self._refs]).tolist()
        self.mapper = mapper
        self.seed = int(seed)
        self._mapper_takes_rng = _accepts_rng(mapper)
        if not self._mapper_takes_rng:
            logger.warning(
                "The training mapper does not take (rng=, ref=): clips are not "
                "reproducible from the seed and ignore the sampled reference frame"
            )

    def __len__(self) -> int:
        return self._starts[-1]

    def locate(self, i: int) -> tuple[int, int]:
        """Sample index -> (video index, reference frame)."""
        if not 0 <= i < len(self):
            raise IndexError(f"sample {i} out of range ({len(self)} samples)")
        v = bisect.bisect_right(self._starts, i) - 1
        return v, int(self._refs[v][i - self._starts[v]])

    def __getitem__(self, item: int | tuple[int, int]) -> dict:
        k, i = item if isinstance(item, tuple) else (item, item)
        v, ref = self.locate(int(i))
        if not self._mapper_takes_rng:
            return self.mapper(self.records[v])
        rng = np.random.default_rng([self.seed % 2**63, int(k)])
        return self.mapper(self.records[v], rng=rng, ref=ref)


def _resolve_seed(cfg, seed: int | None) -> int:
    if seed is None:
        seed = cfg.SEED if cfg.SEED >= 0 else shared_random_seed()
    return int(seed)


def build_train_loader(
    cfg,
    mapper: Callable | None = None,
    dataset_names: str | Sequence[str] | None = None,
    seed: int | None = None,
    start_iter: int = 0,
) -> DataLoader:
    """Infinite training loader: iterating it yields lists of mapped clips forever.

    Args:
        cfg: uses DATASETS.TRAIN, SOLVER.IMS_PER_BATCH, DATALOADER.NUM_WORKERS, SEED and
            what the default mapper reads (INPUT.*).
        mapper: ``mapper(record, rng=, ref=) -> dict``; default: the one named by
            INPUT.DATASET_MAPPER_NAME (``VideoClipDatasetMapper``). A mapper taking only
            the record is accepted but is then not reproducible.
        dataset_names: default ``cfg.DATASETS.TRAIN``.
        seed: seed of the sample stream and of every clip; default ``cfg.SEED``, or a
            random seed shared by all processes when ``cfg.SEED < 0``.
        start_iter: first iteration (resume): the stream starts after the
            ``start_iter * SOLVER.IMS_PER_BATCH`` samples an uninterrupted run used.

    Returns:
        A ``torch.utils.data.DataLoader`` whose batches are lists of
        ``SOLVER.IMS_PER_BATCH // world_size`` clip dicts.
    """
    world_size = comm.get_world_size()
    total = int(cfg.SOLVER.IMS_PER_BATCH)
    if total < 1 or total % world_size != 0:
        raise ValueError(
            f"SOLVER.IMS_PER_BATCH ({total}) must be a positive multiple of the number of "
            f"processes ({world_size})"
        )
    batch_size = total // world_size
    names = cfg.DATASETS.TRAIN if dataset_names is None else dataset_names
    records = get_video_records(names)
    if dataset_names is None:  # the videos held out for model selection are not trained on
        records = exclude_holdout(records)
    if mapper is None:
        mapper = build_mapper(cfg, is_train=True)
    seed = _resolve_seed(cfg, seed)
    dataset = TrainClipDataset(records, mapper, seed)
    sampler = TrainingSampler(len(dataset), shuffle=True, seed=seed, start=start_iter * total)
    num_workers = int(cfg.DATALOADER.NUM_WORKERS)
    if num_workers < 0:
        raise ValueError(f"DATALOADER.NUM_WORKERS must be >= 0, got {num_workers}")
    logger.info(
        "Training loader: %d videos, %d samples, seed %d, %d clips per process and batch, "
        "%d workers",
        len(dataset.records),
        len(dataset),
        seed,
        batch_size,
        num_workers,
    )
    generator = torch.Generator()
    generator.manual_seed((seed + comm.get_rank()) % 2**63)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=trivial_batch_collator,
        worker_init_fn=worker_init_reset_seed,
        persistent_workers=num_workers > 0,
        generator=generator,
        drop_last=False,
        pin_memory=pin_memory_from_cfg(cfg),
    )


def pin_memory_from_cfg(cfg) -> bool:
    """Page-locked batches (so the model's ``non_blocking`` copies overlap the GPU work) when
    the run trains on CUDA: MODEL.DEVICE "cuda[...]" and a GPU visible."""
    return str(cfg.MODEL.DEVICE).startswith("cuda") and torch.cuda.is_available()


class TestVideo:
    """One test video: ``.record``, ``len()`` frames, iterating yields its frame dicts in order.

    Each iteration reads ahead with ``num_workers`` worker processes (0: in this process).
    """

    def __init__(self, record: dict, image_format: str = "RGB", num_workers: int = 0) -> None:
        self.frames = VideoTestFrames(record, image_format)
        self.record = record
        self.num_workers = int(num_workers)

    @property
    def video_id(self) -> str:
        return self.record["video_id"]

    def __len__(self) -> int:
        return len(self.frames)

    def __iter__(self) -> Iterator[dict]:
        if self.num_workers == 0:
            yield from self.frames
            return
        loader = DataLoader(
            self.frames,
            batch_size=None,
            shuffle=False,
            num_workers=min(self.num_workers, len(self.frames)),
        )
        yield from loader

    def __repr__(self) -> str:
        return f"TestVideo({self.video_id!r}, {len(self)} frames)"


class VideoTestLoader:
    """This process's videos of one dataset, as batches of consecutive frames.

    Iterating yields lists of at most ``frames_per_batch`` consecutive test frame dicts of
    one video, in order, video after video; ``len()`` is the number of batches.
    :meth:`videos` yields the :class:`TestVideo` objects instead.
    """

    def __init__(
        self,
        records: list[dict],
        image_format: str = "RGB",
        num_workers: int = 0,
        dataset_name: str = "",
        frames_per_batch: int = 1,
    ) -> None:
        if int(frames_per_batch) < 1:
            raise ValueError(f"frames_per_batch must be >= 1, got {frames_per_batch}")
        self.records = records
        self.image_format = image_format
        self.num_workers = num_workers
        self.dataset_name = dataset_name
        self.frames_per_batch = int(frames_per_batch)

    def __len__(self) -> int:
        n = self.frames_per_batch
        return sum((int(r["length"]) + n - 1) // n for r in self.records)

    def videos(self) -> Iterator[TestVideo]:
        for r in self.records:
            yield TestVideo(r, self.image_format, self.num_workers)

    def __iter__(self) -> Iterator[list[dict]]:
        for video in self.videos():
            batch: list[dict] = []
            for frame in video:
                batch.append(frame)
                if len(batch) == self.frames_per_batch:
                    yield batch
                    batch = []
            if batch:
                yield batch


def build_test_loader(
    cfg,
    dataset_name: str,
    *,
    frames_per_batch: int = 1,
    rank: int | None = None,
    world_size: int | None = None,
) -> VideoTestLoader:
    """Loader over the videos of ``dataset_name`` for this process (videos ``rank::world``).

    Args:
        cfg: uses INPUT.FORMAT and DATALOADER.NUM_WORKERS_TEST.
        dataset_name: a registered dataset.
        frames_per_batch: consecutive frames per batch: the model's clip contract's
            ``test_frames_per_batch`` (1 for online models, the clip length for clip
            models; ``vps_d2.engine.Trainer.build_test_loader`` passes it).
        rank, world_size: default: this process in :mod:`vps_d2.utils.comm`.

    Returns:
        A :class:`VideoTestLoader` yielding lists of test frame dicts (``image`` uint8
        (3, H, W) at the original size, ``video_id``, ``frame_index``, ...).
    """
    rank = comm.get_rank() if rank is None else rank
    world_size = comm.get_world_size() if world_size is None else world_size
    records = get_video_records(dataset_name)
    mine = [records[i] for i in shard_indices(len(records), rank, world_size)]
    num_workers = int(cfg.DATALOADER.NUM_WORKERS_TEST)
    if num_workers < 0:
        raise ValueError(f"DATALOADER.NUM_WORKERS_TEST must be >= 0, got {num_workers}")
    return VideoTestLoader(mine, cfg.INPUT.FORMAT, num_workers, dataset_name, frames_per_batch)
