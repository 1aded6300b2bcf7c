"""Process launch through Lightning Fabric (Detectron2's ``launch`` signature).

One process per device on each machine: GPUs when CUDA is available, otherwise CPU
processes communicating over gloo. Multi-node runs take ``--num-machines``,
``--machine-rank`` and ``--dist-url tcp://HOST:PORT`` exactly as in Detectron2; they are
handed to Fabric as MASTER_ADDR / MASTER_PORT / NODE_RANK.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import torch
from lightning_fabric import Fabric
from lightning_fabric.strategies import DDPStrategy

from vps_d2.config import ConfigError

__all__ = [
    "AMP_PRECISIONS",
    "ddp_kwargs_from_cfg",
    "get_fabric",
    "launch",
    "launch_kwargs_from_args",
    "make_fabric",
    "precision_from_cfg",
]

logger = logging.getLogger(__name__)

_FABRIC: Fabric | None = None
_LOCAL_WORLD_SIZE = 1


def get_fabric() -> Fabric | None:
    """The Fabric of this process (set by :func:`launch`), or None outside a launch."""
    return _FABRIC


def get_local_world_size() -> int:
    """Processes of this job on this machine (``--num-gpus``); 1 outside a launch."""
    return _LOCAL_WORLD_SIZE


def _set_fabric(fabric: Fabric | None, local_world_size: int = 1) -> None:
    global _FABRIC, _LOCAL_WORLD_SIZE
    _FABRIC = fabric
    _LOCAL_WORLD_SIZE = local_world_size


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: SOLVER.AMP.PRECISION -> Fabric precision on CUDA ("" is the default, float16).
AMP_PRECISIONS = {"": "16-mixed", "float16": "16-mixed", "bfloat16": "bf16-mixed"}


def precision_from_cfg(cfg, accelerator: str) -> str:
    """SOLVER.AMP.ENABLED / PRECISION -> a Fabric precision: "32-true" without AMP; on CUDA
    "16-mixed" (float16, "" or "float16") or "bf16-mixed" ("bfloat16"); on the CPU always
    "bf16-mixed" (CPU autocast has no float16).

    Raises:
        ConfigError: an unknown SOLVER.AMP.PRECISION, or bfloat16 on a GPU without it.
    """
    if not cfg.SOLVER.AMP.ENABLED:
        return "32-true"
    name = str(cfg.SOLVER.AMP.get("PRECISION", ""))
    if name not in AMP_PRECISIONS:
        raise ConfigError(
            f"SOLVER.AMP.PRECISION = {name!r}: must be 'float16', 'bfloat16' or '' (float16 "
            "on CUDA)"
        )
    if accelerator != "cuda":
        if name == "float16":
            logger.warning("SOLVER.AMP.PRECISION float16: the CPU autocasts to bfloat16")
        return "bf16-mixed"
    if name == "bfloat16" and not torch.cuda.is_bf16_supported():
        raise ConfigError(
            f"SOLVER.AMP.PRECISION bfloat16: {torch.cuda.get_device_name()} does not support "
            "bfloat16 (Ampere or newer GPUs do): use float16"
        )
    return AMP_PRECISIONS[name]


def accelerator_from_cfg(cfg) -> str:
    """MODEL.DEVICE -> "cuda" when asked for and available, else "cpu"."""
    if cfg.MODEL.DEVICE.startswith("cuda"):
        if torch.cuda.is_available():
            return "cuda"
        logger.warning(
            "MODEL.DEVICE is %r but CUDA is not available: using the CPU", cfg.MODEL.DEVICE
        )
    return "cpu"


def ddp_kwargs_from_cfg(cfg) -> dict:
    """SOLVER.DDP -> keyword arguments of DistributedDataParallel (through Fabric)."""
    return {
        "find_unused_parameters": bool(cfg.SOLVER.DDP.FIND_UNUSED_PARAMETERS),
        "static_graph": bool(cfg.SOLVER.DDP.STATIC_GRAPH),
    }


def launch_kwargs_from_args(args) -> dict:
    """``--num-machines``, ``--machine-rank`` and ``--dist-url`` as keyword arguments of
    :func:`launch` (and of Detectron2's, which takes the same names)."""
    return {
        "num_machines": args.num_machines,
        "machine_rank": args.machine_rank,
        "dist_url": args.dist_url,
    }


def make_fabric(
    num_devices: int = 1,
    num_machines: int = 1,
    accelerator: str = "cpu",
    precision: str = "32-true",
    ddp_kwargs: dict | None = None,
) -> Fabric:
    """A Fabric for ``num_devices`` processes per machine (DDP when more than one).

    ``ddp_kwargs``: passed to DistributedDataParallel (``find_unused_parameters``,
    ``static_graph``; default both False).
    """
    world = num_devices * num_machines
    strategy: Any = "auto"
    if world > 1:
        kwargs = {"find_unused_parameters": False, **(ddp_kwargs or {})}
        strategy = DDPStrategy(start_method="spawn", **kwargs)
    return Fabric(
        accelerator=accelerator,
        devices=num_devices,
        num_nodes=num_machines,
        strategy=strategy,
        precision=precision,
    )


def _worker(fabric: Fabric, main_func: Callable, args: tuple, local_world_size: int) -> Any:
    _set_fabric(fabric, local_world_size)
    return main_func(*args)


def launch(
    main_func: Callable,
    num_gpus_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: str | None = None,
    args: tuple = (),
    accelerator: str = "auto",
    precision: str = "32-true",
    ddp_kwargs: dict | None = None,
) -> Any:
    """Run ``main_func(*args)`` in every process of the job.

    Args:
        num_gpus_per_machine: processes per machine (GPUs, or CPU processes without CUDA).
        num_machines, machine_rank: the multi-node layout (Detectron2's flags).
        dist_url: ``tcp://HOST:PORT`` of machine 0, or "auto" (a free local port; single
            machine only).
        accelerator: "cuda", "cpu" or "auto" (CUDA when available).
        precision: a Fabric precision ("32-true", "16-mixed", "bf16-mixed").
        ddp_kwargs: DistributedDataParallel options (:func:`ddp_kwargs_from_cfg`).
    """
    if accelerator == "auto":
        accelerator = "cuda" if torch.cuda.is_available() else "cpu"
    if accelerator == "cuda" and num_gpus_per_machine > torch.cuda.device_count():
        raise ValueError(
            f"--num-gpus {num_gpus_per_machine} but only {torch.cuda.device_count()} CUDA "
            "devices are visible"
        )
    if num_gpus_per_machine < 1 or num_machines < 1:
        raise ValueError("--num-gpus and --num-machines must be >= 1")
    if not 0 <= machine_rank < num_machines:
        raise ValueError(f"--machine-rank {machine_rank} not in [0, {num_machines})")
    world = num_gpus_per_machine * num_machines
    if world > 1:
        if not dist_url or dist_url == "auto":
            if num_machines > 1:
                raise ValueError("--dist-url auto only works on one machine; give tcp://HOST:PORT")
            host, port = "127.0.0.1", _free_port()
        else:
            url = urlparse(dist_url)
            if url.scheme != "tcp" or not url.hostname or not url.port:
                raise ValueError(f"--dist-url must look like tcp://HOST:PORT, got {dist_url!r}")
            host, port = url.hostname, url.port
        os.environ["MASTER_ADDR"] = host
        os.environ["MASTER_PORT"] = str(port)
        os.environ["NODE_RANK"] = str(machine_rank)
    fabric = make_fabric(num_gpus_per_machine, num_machines, accelerator, precision, ddp_kwargs)
    return fabric.launch(_worker, main_func, args, num_gpus_per_machine)
