#!/usr/bin/env python
"""Train or evaluate a vps_d2 model (Detectron2's tools/train_net.py interface).

  python tools/train_net.py --config-file configs/frame_baseline_sample.yaml
  python tools/train_net.py --config-file configs/frame_baseline_sample.yaml --resume
  python tools/train_net.py --config-file configs/frame_baseline_sample.yaml --eval-only \
      MODEL.WEIGHTS output/sample_baseline/model_final.pth
  python tools/train_net.py --config-file C.yaml --num-gpus 8 --num-machines 2 \
      --machine-rank 0 --dist-url tcp://10.0.0.1:23456
  python tools/train_net.py --engine detectron2 --config-file configs/frame_baseline_sample.yaml
  python tools/train_net.py --plugin my_method.py --config-file my_method.yaml
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys


def _interrupted_while_starting(*_):
    """Ctrl-C while the imports below run (torch takes seconds): one line, status 130."""
    print("Interrupted while starting: nothing was done", file=sys.stderr, flush=True)
    os._exit(130)


if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, _interrupted_while_starting)

import vps_d2  # noqa: F401  (registers datasets, backbones, models in every process)
from vps_d2.checkpoint import CheckpointError
from vps_d2.config import ConfigError
from vps_d2.engine import (
    NonFiniteLossError,
    Trainer,
    default_argument_parser,
    default_setup,
    launch,
    setup_cfg,
)
from vps_d2.engine.defaults import PreflightError, preflight
from vps_d2.engine.launch import (
    accelerator_from_cfg,
    ddp_kwargs_from_cfg,
    launch_kwargs_from_args,
    precision_from_cfg,
)
from vps_d2.engine.preemption import PREEMPTED_EXIT_CODE, Stopped, StopRequested, stop_signals
from vps_d2.engine.trainer import train_or_evaluate
from vps_d2.utils.file_io import DiskFullError, LockedError, describe_os_error
from vps_d2.utils.plugins import PluginError

if signal.getsignal(signal.SIGINT) is _interrupted_while_starting:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # imports done: KeyboardInterrupt

logger = logging.getLogger("vps_d2.tools.train_net")


def main(args):
    """One process of the job. SIGTERM / SIGUSR1 during training save a checkpoint and stop
    (vps_d2.engine.preemption); the process then returns a :class:`Stopped`."""
    with stop_signals():
        try:
            cfg = setup_cfg(args)
            default_setup(cfg, args)
            return train_or_evaluate(Trainer, cfg, args)
        except StopRequested as e:
            return e.stopped


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


def _one_line(e: BaseException) -> str:
    """The message of ``e`` without a data-loader worker's traceback: its last line, less
    the ``module.Type: `` prefix the traceback puts in front."""
    text = str(e)
    if "Traceback (most recent call last)" in text:
        lines = [x for x in text.splitlines() if x.strip()]
        text = lines[-1] if lines else text
        text = re.sub(r"^[\w.]+(Error|Exception): ", "", text)
    return text


def _last_checkpoint(output_dir: str) -> str:
    path = os.path.join(output_dir, "last_checkpoint") if output_dir else ""
    if path and os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            name = f.read().strip()
        if os.path.isfile(os.path.join(output_dir, name)):
            return os.path.join(output_dir, name)
    return ""


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
    lock = None
    try:
        # SIGTERM / SIGUSR1: passed on to the spawned processes (they save and stop), or,
        # in this process, a checkpoint at the current iteration (vps_d2.engine.preemption)
        with stop_signals(relay=args.num_gpus * args.num_machines > 1):
            lock = preflight(
                cfg, args, args.num_gpus * args.num_machines, main_machine=args.machine_rank == 0
            )
            if args.engine == "detectron2":
                d2_engine.launch_main(args)
                return 0
            result = launch(
                main,
                args.num_gpus,
                args=(args,),
                accelerator=acc,
                precision=precision_from_cfg(cfg, acc),
                ddp_kwargs=ddp_kwargs_from_cfg(cfg),
                **launch_kwargs_from_args(args),
            )
        if isinstance(result, Stopped):
            print(result.message(_last_checkpoint(cfg.OUTPUT_DIR)), file=sys.stderr)
            return PREEMPTED_EXIT_CODE
    except StopRequested as e:  # before the processes started, or in the launcher
        print(e.stopped.message(_last_checkpoint(cfg.OUTPUT_DIR)), file=sys.stderr)
        return PREEMPTED_EXIT_CODE
    except KeyboardInterrupt:
        last = _last_checkpoint(cfg.OUTPUT_DIR)
        where = (
            f"the last checkpoint is {last}; continue with the same command and --resume"
            if last
            else "no checkpoint was saved yet"
        )
        print(f"Interrupted: {where}", file=sys.stderr)
        return 130
    except DiskFullError as e:
        last = _last_checkpoint(cfg.OUTPUT_DIR)
        keep = f"; the last complete checkpoint is {last}" if last else ""
        print(f"Error: {e}{keep}", file=sys.stderr)
        return 1
    except (
        FileNotFoundError,
        NotADirectoryError,
        PermissionError,
        CheckpointError,
        ConfigError,
        LockedError,
        NonFiniteLossError,
        PreflightError,
        KeyError,
        ValueError,
    ) as e:
        # Problems in the user's input: one clear line, no traceback.
        print(f"Error: {type(e).__name__}: {_one_line(e)}", file=sys.stderr)
        return 1
    except OSError as e:  # any other: read-only file system, quota, name too long, ...
        print(f"Error: {describe_os_error(e)}", file=sys.stderr)
        return 1
    finally:
        if lock is not None:
            lock.release()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(cli())
    except KeyboardInterrupt:  # wherever main() did not catch it: one line, status 130
        print("Interrupted", file=sys.stderr)
        sys.exit(130)
