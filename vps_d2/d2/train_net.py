"""``tools/train_net.py --engine detectron2``: the same command line on Detectron2.

Detectron2's ``get_cfg`` + :func:`~vps_d2.d2.add_vps_config` + its own ``merge_from_file``,
its ``default_setup``, ``launch`` (GPUs, or CPU processes over gloo), DefaultTrainer
(:class:`vps_d2.d2.Trainer`), checkpointer and ``inference_on_dataset``; the OUTPUT_DIR
artifacts are those of vps_d2's engine (log.txt, config.yaml, metrics.json, TensorBoard
events, model_XXXXXXX.pth, model_final.pth, last_checkpoint, model_best.pth/.json,
results.json).
"""

from __future__ import annotations

import argparse

from detectron2.engine import default_setup as d2_default_setup
from detectron2.engine import launch as d2_launch
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger as d2_setup_logger

from vps_d2.engine.defaults import configure_cpu_threads, log_preflight_notes, setup_cfg
from vps_d2.engine.launch import launch_kwargs_from_args
from vps_d2.engine.trainer import train_or_evaluate

from .config import get_cfg
from .register import register_all
from .trainer import Trainer

__all__ = ["launch_main", "main", "setup"]


def setup(args: argparse.Namespace):
    """vps_d2's :func:`~vps_d2.engine.defaults.setup_cfg` (plug-ins, the file, the opts,
    INPUT.CLIP resolved against the model's clip contract; frozen) on Detectron2's config
    with vps_d2's keys."""
    return setup_cfg(args, new_cfg=get_cfg)


def main(args: argparse.Namespace):
    """One process of a Detectron2-engine run (train, or ``--eval-only``)."""
    cfg = setup(args)
    d2_default_setup(cfg, args)
    d2_setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="vps_d2")
    log_preflight_notes(args)
    configure_cpu_threads(cfg)
    register_all(cfg)
    return train_or_evaluate(Trainer, cfg, args)


def launch_main(args: argparse.Namespace) -> None:
    """Validate the config, then run :func:`main` in every process via Detectron2's launch."""
    setup(args)
    d2_launch(main, args.num_gpus, args=(args,), **launch_kwargs_from_args(args))
