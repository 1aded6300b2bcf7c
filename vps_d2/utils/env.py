"""Environment summary and seeding."""

from __future__ import annotations

import importlib
import logging
import os
import platform
import random
import sys

import numpy as np
import torch

__all__ = ["collect_env_info", "seed_all_rng"]

logger = logging.getLogger(__name__)


def seed_all_rng(seed: int | None = None) -> int:
    """Seed Python, NumPy and torch; a random seed when None (returned and logged)."""
    if seed is None or seed < 0:
        seed = int.from_bytes(os.urandom(2), "big") + os.getpid() % 10000
        logger.info("Using a generated random seed %d", seed)
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return seed


def collect_env_info() -> str:
    rows = [
        ("sys.platform", sys.platform),
        ("Python", sys.version.replace("\n", "")),
        ("machine", platform.machine()),
        ("CPU count", os.cpu_count()),
    ]
    for mod in (
        "vps_d2",
        "torch",
        "torchvision",
        "numpy",
        "fvcore",
        "timm",
        "cv2",
        "lightning_fabric",
        "scipy",
    ):
        try:
            rows.append((mod, getattr(importlib.import_module(mod), "__version__", "?")))
        except ImportError:
            rows.append((mod, "not installed"))
    rows.append(("CUDA available", torch.cuda.is_available()))
    if torch.cuda.is_available():
        rows.append(("CUDA", torch.version.cuda))
        for i in range(torch.cuda.device_count()):
            rows.append((f"GPU {i}", torch.cuda.get_device_name(i)))
    rows.append(("torch threads", torch.get_num_threads()))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
