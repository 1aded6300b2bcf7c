"""Logging set-up: console (main process) and log.txt (log.txt.rank<N> on other ranks)."""

from __future__ import annotations

import logging
import os
import sys

__all__ = ["setup_logger"]

_FMT = "[%(asctime)s %(name)s %(levelname)s] %(message)s"


def setup_logger(output: str | None = None, distributed_rank: int = 0) -> logging.Logger:
    """Configure the root logger once per process; returns the "vps_d2" logger."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for h in list(root.handlers):
        if getattr(h, "_vps_d2", False):
            root.removeHandler(h)
            h.close()
    formatter = logging.Formatter(_FMT, datefmt="%m/%d %H:%M:%S")
    if distributed_rank == 0:
        ch = logging.StreamHandler(stream=sys.stdout)
        ch.setFormatter(formatter)
        ch._vps_d2 = True  # type: ignore[attr-defined]
        root.addHandler(ch)
    if output:
        filename = output if output.endswith((".txt", ".log")) else os.path.join(output, "log.txt")
        if distributed_rank > 0:
            filename = f"{filename}.rank{distributed_rank}"
        os.makedirs(os.path.dirname(os.path.abspath(filename)), exist_ok=True)
        fh = logging.FileHandler(filename, encoding="utf-8")
        fh.setFormatter(formatter)
        fh._vps_d2 = True  # type: ignore[attr-defined]
        root.addHandler(fh)
    return logging.getLogger("vps_d2")
