"""Process-group helpers (the group itself is created by Lightning Fabric)."""

from __future__ import annotations

from typing import Any

import torch.distributed as dist

__all__ = ["all_gather", "get_rank", "get_world_size", "is_main_process", "synchronize"]


def _initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_world_size() -> int:
    return dist.get_world_size() if _initialized() else 1


def get_rank() -> int:
    return dist.get_rank() if _initialized() else 0


def is_main_process() -> bool:
    return get_rank() == 0


def synchronize() -> None:
    """Barrier across all processes (no-op in a single process)."""
    if get_world_size() > 1:
        dist.barrier()


def all_gather(obj: Any) -> list[Any]:
    """Gather a picklable object from every process; returns the list in rank order."""
    if get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out
