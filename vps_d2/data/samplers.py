"""Samplers: the infinite, sharded training stream and the split of test videos.

:class:`TrainingSampler` yields an endless stream of dataset indices: the concatenation of
random permutations of ``range(size)`` drawn from a ``torch.Generator`` seeded with
``seed``. Every process builds the same stream (same seed) and process ``rank`` of
``world_size`` keeps the items at positions ``rank, rank + world_size, ...``, so the
processes' shards are disjoint and together cover the stream. Each item is
``(position, index)``: the position in the global stream identifies the sample, and the
training dataset seeds that sample's randomness with ``(seed, position)``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler

from vps_d2.utils import comm

__all__ = ["TrainingSampler", "shard_indices", "shared_random_seed"]


def shared_random_seed() -> int:
    """A random seed that all processes agree on (rank 0's)."""
    seed = int(np.random.SeedSequence().generate_state(1)[0] & 0x7FFFFFFF)
    return int(comm.all_gather(seed)[0])


def shard_indices(n: int, rank: int, world_size: int) -> list[int]:
    """Indices ``rank, rank + world_size, ...`` of ``range(n)`` (the part of process ``rank``)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
    return list(range(rank, n, world_size))


class TrainingSampler(Sampler):
    """Infinite stream of ``(global_position, index)`` for this process (see module doc).

    Args:
        size: number of samples of the dataset (> 0).
        shuffle: random permutations (True) or ``0, 1, ..., size - 1`` repeated.
        seed: seed of the stream; must be the same on every process. ``None``: a shared
            random seed.
        rank, world_size: this process's shard; ``None``: from :mod:`vps_d2.utils.comm`.
        start: first global position of the stream (a resumed run skips the samples
            already used, so it sees exactly the clips an uninterrupted run would).
    """

    def __init__(
        self,
        size: int,
        shuffle: bool = True,
        seed: int | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        start: int = 0,
    ) -> None:
        if not isinstance(size, int) or size <= 0:
            raise ValueError(f"TrainingSampler: the dataset must have > 0 samples, got {size!r}")
        self._size = size
        self._shuffle = shuffle
        self._seed = int(shared_random_seed() if seed is None else seed)
        self._rank = comm.get_rank() if rank is None else int(rank)
        self._world_size = comm.get_world_size() if world_size is None else int(world_size)
        # Global stream position to start from (resume: iterations done x IMS_PER_BATCH).
        self._start = int(start)
        if self._start < 0:
            raise ValueError(f"TrainingSampler: start must be >= 0, got {start}")
        if self._world_size < 1 or not 0 <= self._rank < self._world_size:
            raise ValueError(f"TrainingSampler: rank {rank} not in [0, {self._world_size})")

    @property
    def seed(self) -> int:
        return self._seed

    def _infinite_indices(self) -> Iterator[int]:
        g = torch.Generator()
        g.manual_seed(self._seed)
        while True:
            if self._shuffle:
                yield from torch.randperm(self._size, generator=g).tolist()
            else:
                yield from range(self._size)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        stream = enumerate(self._infinite_indices())
        yield from itertools.islice(stream, self._start + self._rank, None, self._world_size)
