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

import vps_d2
from vps_d2.cli import run_command
from vps_d2.config import ConfigError
from vps_d2.utils.cli_args import default_argument_parser
from vps_d2.utils.lazy import lazy_import, load

# The engine (torch, the trainer, the evaluation) loads after the flags are parsed: --help is
# quick. vps_d2.d2 only with --engine detectron2.
_checkpoint = lazy_import("vps_d2.checkpoint")
_d2 = lazy_import("vps_d2.d2")
_engine = lazy_import("vps_d2.engine")
_defaults = lazy_import("vps_d2.engine.defaults")
_launch = lazy_import("vps_d2.engine.launch")
_preemption = lazy_import("vps_d2.engine.preemption")
_trainer = lazy_import("vps_d2.engine.trainer")
_file_io = lazy_import("vps_d2.utils.file_io")
_plugins = lazy_import("vps_d2.utils.plugins")

if signal.getsignal(signal.SIGINT) is _interrupted_while_starting:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # imports done: KeyboardInterrupt

logger = logging.getLogger("vps_d2.tools.train_net")


def main(args):
    """One process of the job. SIGTERM / SIGUSR1 during training save a checkpoint and stop
    (vps_d2.engine.preemption); the process then returns a :class:`Stopped`."""
    vps_d2.register_all()  # datasets, backbones, models (also in a spawned DDP process)
    with _preemption.stop_signals():
        try:
            cfg = _engine.setup_cfg(args)
            _engine.default_setup(cfg, args)
            return _trainer.train_or_evaluate(_engine.Trainer, cfg, args)
        except _preemption.StopRequested as e:
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
            load(_d2)
        except ImportError as e:
            print(f"Error: --engine detectron2: {e}", file=sys.stderr)
            return 2
    try:
        cfg = _engine.setup_cfg(args)  # validate the config before starting any process
    except ConfigError as e:
        print(f"Config error: {e}", file=sys.stderr)
        return 2
    except _plugins.PluginError as e:
        print(f"Plug-in error: {e}", file=sys.stderr)
        return 2
    acc = _launch.accelerator_from_cfg(cfg)
    lock = None
    try:
        # SIGTERM / SIGUSR1: passed on to the spawned processes (they save and stop), or,
        # in this process, a checkpoint at the current iteration (vps_d2.engine.preemption)
        with _preemption.stop_signals(relay=args.num_gpus * args.num_machines > 1):
            lock = _defaults.preflight(
                cfg, args, args.num_gpus * args.num_machines, main_machine=args.machine_rank == 0
            )
            if args.engine == "detectron2":
                _d2.launch_main(args)
                return 0
            result = _engine.launch(
                main,
                args.num_gpus,
                args=(args,),
                accelerator=acc,
                precision=_launch.precision_from_cfg(cfg, acc),
                ddp_kwargs=_launch.ddp_kwargs_from_cfg(cfg),
                **_launch.launch_kwargs_from_args(args),
            )
        if isinstance(result, _preemption.Stopped):
            print(result.message(_last_checkpoint(cfg.OUTPUT_DIR)), file=sys.stderr)
            return _preemption.PREEMPTED_EXIT_CODE
    except _preemption.StopRequested as e:  # before the processes started, or in the launcher
        print(e.stopped.message(_last_checkpoint(cfg.OUTPUT_DIR)), file=sys.stderr)
        return _preemption.PREEMPTED_EXIT_CODE
    except KeyboardInterrupt:
        last = _last_checkpoint(cfg.OUTPUT_DIR)
        where = (
            f"the last checkpoint is {last}; continue with the same command and --resume"
            if last
            else "no checkpoint was saved yet"
        )
        print(f"Interrupted: {where}", file=sys.stderr)
        return 130
    except _file_io.DiskFullError as e:
        last = _last_checkpoint(cfg.OUTPUT_DIR)
        keep = f"; the last complete checkpoint is {last}" if last else ""
        print(f"Error: {e}{keep}", file=sys.stderr)
        return 1
    except (
        FileNotFoundError,
        NotADirectoryError,
        PermissionError,
        _checkpoint.CheckpointError,
        ConfigError,
        _file_io.LockedError,
        _engine.NonFiniteLossError,
        _defaults.PreflightError,
        KeyError,
        ValueError,
    ) as e:
        # Problems in the user's input: one clear line, no traceback.
        print(f"Error: {type(e).__name__}: {_one_line(e)}", file=sys.stderr)
        return 1
    except OSError as e:  # any other: read-only file system, quota, name too long, ...
        print(f"Error: {_file_io.describe_os_error(e)}", file=sys.stderr)
        return 1
    finally:
        if lock is not None:
            lock.release()
    return 0


def console(argv=None) -> int:
    """The ``vps-train`` command: :func:`cli`, a Ctrl-C it did not catch as one line (130)."""
    return run_command(cli, argv)


if __name__ == "__main__":
    sys.exit(console())
