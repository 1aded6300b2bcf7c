#!/usr/bin/env python
"""Train or evaluate a vps_d2 model (Detectron2's tools/train_net.py interface).

  python tools/train_net.py --config-file configs/sample/baseline.yaml
  python tools/train_net.py --config-file configs/sample/baseline.yaml --resume
  python tools/train_net.py --config-file configs/sample/baseline.yaml --eval-only \
      MODEL.WEIGHTS output/sample_baseline/model_final.pth
  python tools/train_net.py --config-file C.yaml --num-gpus 8 --num-machines 2 \
      --machine-rank 0 --dist-url tcp://10.0.0.1:23456
  python tools/train_net.py --engine detectron2 --config-file configs/sample/baseline.yaml
  python tools/train_net.py --plugin my_method.py --config-file my_method.yaml
"""

from __future__ import annotations

import logging
import sys

import vps_d2  # noqa: F401  (registers datasets, backbones, models in every process)
from vps_d2.checkpoint import CheckpointError, load_model_weights
from vps_d2.config import ConfigError
from vps_d2.engine import (
    NonFiniteLossError,
    Trainer,
    default_argument_parser,
    default_setup,
    launch,
    setup_cfg,
)
from vps_d2.engine.launch import accelerator_from_cfg, ddp_kwargs_from_cfg, precision_from_cfg
from vps_d2.utils.plugins import PluginError

logger = logging.getLogger("vps_d2.tools.train_net")


def main(args):
    cfg = setup_cfg(args)
    default_setup(cfg, args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        load_model_weights(model, cfg.MODEL.WEIGHTS)
        return Trainer.test(cfg, model)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    trainer.train()
    return None


def build_parser():
    parser = default_argument_parser()
    parser.add_argument(
        "--engine",
        choices=("vps_d2", "detectron2"),
        default="vps_d2",
        help="vps_d2: vps_d2's own engine (Lightning Fabric); detectron2: the same flags and "
        "config on Detectron2's DefaultTrainer, launch and checkpointer (needs Detectron2 "
        "installed from its repository)",
    )
    return parser


def cli(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.engine == "detectron2":
        try:
            import vps_d2.d2 as d2_engine
        except ImportError as e:
            print(f"Error: --engine detectron2: {e}", file=sys.stderr)
            return 2
    try:
        cfg = setup_cfg(args)  # validate the config before starting any process
    except ConfigError as e:
        print(f"Config error: {e}", file=sys.stderr)
        return 2
    except PluginError as e:
        print(f"Plug-in error: {e}", file=sys.stderr)
        return 2
    acc = accelerator_from_cfg(cfg)
    try:
        if args.engine == "detectron2":
            d2_engine.launch_main(args)
            return 0
        launch(
            main,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
            accelerator=acc,
            precision=precision_from_cfg(cfg, acc),
            ddp_kwargs=ddp_kwargs_from_cfg(cfg),
        )
    except (
        FileNotFoundError,
        CheckpointError,
        ConfigError,
        NonFiniteLossError,
        KeyError,
        ValueError,
    ) as e:
        # Problems in the user's input: one clear line, no traceback.
        print(f"Error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli())
