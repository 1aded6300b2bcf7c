"""Detectron2's command-line conventions: argument parser, config set-up, default_setup."""

from __future__ import annotations

import argparse
import glob
import logging
import os
import sys
import time
from collections.abc import Callable

import torch

from vps_d2.config import CfgNode, add_vps_config, get_cfg
from vps_d2.data import get_video_records
from vps_d2.data.datasets import HOLDOUT_VAL, configure_datasets, is_validation_split
from vps_d2.model_zoo import resolve_config_path
from vps_d2.modeling import resolve_clip_config
from vps_d2.modeling.meta_arch.build import warn_unread_method_keys
from vps_d2.utils import comm
from vps_d2.utils.cli_args import add_plugin_argument, default_argument_parser
from vps_d2.utils.env import collect_env_info, seed_all_rng
from vps_d2.utils.file_io import (
    DirectoryLock,
    OutputPathError,
    prepare_output_dir,
    remove_stale_temp_files,
)
from vps_d2.utils.logger import setup_logger
from vps_d2.utils.plugins import load_plugins

from .launch import get_local_world_size
from .run_guard import PREVIOUS_CONFIGS, check_run_compatible, save_run_config

__all__ = [
    "RUN_FILES",
    "PreflightError",
    "add_plugin_argument",
    "log_preflight_notes",
    "move_previous_run",
    "missing_files",
    "preflight",
    "configure_cpu_threads",
    "default_argument_parser",
    "default_setup",
    "setup_cfg",
]

logger = logging.getLogger(__name__)


def _vps_cfg() -> CfgNode:
    return add_vps_config(get_cfg())


def setup_cfg(args: argparse.Namespace, new_cfg: Callable[[], CfgNode] = _vps_cfg) -> CfgNode:
    """load plug-ins -> get_cfg -> add_vps_config -> merge --config-file -> merge opts ->
    INPUT.CLIP.LENGTH / SAMPLING resolved against the model's clip contract (unset values
    filled in, contradictions a ConfigError naming the key) -> freeze. ``--config-file
    configs/<name>.yaml`` that is not a file names a shipped config
    (:func:`vps_d2.model_zoo.get_config_file`); ``args.config_file`` is set to its path.
    ``new_cfg`` makes the empty config (:mod:`vps_d2.d2` passes Detectron2's, extended)."""
    load_plugins(getattr(args, "plugin", None) or [])
    cfg = new_cfg()
    if args.config_file:
        args.config_file = resolve_config_path(args.config_file)
        cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(list(args.opts or []))
    resolve_clip_config(cfg)  # INPUT.CLIP.* checked against the model's clip contract
    if not getattr(args, "eval_only", False):
        add_holdout_split(cfg)
    warn_unread_method_keys(cfg, new_cfg())  # e.g. MODEL.SALI.* in a FrameBaseline config
    cfg.freeze()
    return cfg


def add_holdout_split(cfg: CfgNode) -> None:
    """Model selection on a validation split by default: a training run that evaluates
    (DATASETS.TEST), names no validation split there and no TEST.VPS.BEST_DATASET, with
    DATASETS.HOLDOUT_VAL > 0, gets ``holdout_val`` (those training videos, not trained on)
    first in DATASETS.TEST; model_best.pth is chosen on it. Written into the config, so
    config.yaml says what the run did."""
    d = cfg.DATASETS
    if not d.TEST or not d.TRAIN or cfg.TEST.VPS.BEST_DATASET or float(d.HOLDOUT_VAL) <= 0:
        return
    if any(is_validation_split(name) for name in d.TEST):
        return
    d.TEST = (HOLDOUT_VAL, *d.TEST)


class PreflightError(ValueError):
    """A problem found before any process starts (the message names the key or file)."""


#: What a training run leaves in OUTPUT_DIR (moved aside together by ``--overwrite``).
RUN_FILES = (
    "model_*.pth",
    "last_checkpoint",
    "model_best.json",
    "last_eval.json",
    "metrics.json",
    "results.json",
    "config.yaml",
    PREVIOUS_CONFIGS,
    "log.txt",
    "log.txt.rank*",
    "events.out.tfevents.*",
    "predictions",
    "worst_cases",
    "classification",
)


def _existing_run(output_dir: str) -> list[str]:
    found = []
    for pattern in ("last_checkpoint", "model_final.pth", "model_[0-9]*.pth"):
        found += sorted(glob.glob(os.path.join(output_dir, pattern)))
    return [os.path.basename(p) for p in found]


def move_previous_run(output_dir: str) -> str:
    """Move the files of the run in ``output_dir`` to ``output_dir/previous_runs/<time>/``."""
    dest = os.path.join(output_dir, "previous_runs", time.strftime("%Y%m%d-%H%M%S"))
    n = 1
    while os.path.exists(dest):
        n += 1
        dest = os.path.join(output_dir, "previous_runs", time.strftime("%Y%m%d-%H%M%S") + f"-{n}")
    os.makedirs(dest)
    for pattern in RUN_FILES:
        for path in glob.glob(os.path.join(output_dir, pattern)):
            os.replace(path, os.path.join(dest, os.path.basename(path)))
    return dest


def _check_output_dir(output_dir: str) -> None:
    if not output_dir:
        return
    try:  # any OSError (a file in the way, read-only file system, ...): one line
        prepare_output_dir(output_dir, "OUTPUT_DIR")
    except OutputPathError as e:
        raise PreflightError(str(e)) from e


def _weight_keys(node: CfgNode, prefix: str = "") -> list[tuple[str, str]]:
    """``(KEY, value)`` of every config key whose name ends in WEIGHTS and holds a path."""
    found = []
    for name, value in node.items():
        key = f"{prefix}{name}"
        if isinstance(value, CfgNode):
            found += _weight_keys(value, key + ".")
        elif name.endswith("WEIGHTS") and isinstance(value, str) and value:
            config_key = name[: -len("WEIGHTS")] + "CONFIG"
            if config_key in node and not node[config_key]:
                continue  # X_WEIGHTS without X_CONFIG is unused (ArSDM's segmenter)
            found.append((key, value))
    return found


def missing_files(cfg: CfgNode, *, eval_only: bool = False, resuming: bool = False) -> list[str]:
    """One line per file the run would open that is not there, naming the key, the path and
    what to do: MODEL.WEIGHTS (needed with ``--eval-only``; not read when ``resuming`` from
    OUTPUT_DIR/last_checkpoint), and every other non-empty key ending in WEIGHTS (backbone
    weights, Diff-VPS's discriminator, ArSDM's frozen segmenter, a plug-in's), which the
    model reads when it is built, also for ``--eval-only``."""
    problems = []
    weights = cfg.MODEL.WEIGHTS
    if eval_only and not weights:
        problems.append(
            "--eval-only needs MODEL.WEIGHTS (the checkpoint to evaluate): add "
            "MODEL.WEIGHTS path/to/model_final.pth to the command"
        )
    elif weights and not resuming and not os.path.isfile(weights):
        what = (
            "point it at the checkpoint to evaluate"
            if eval_only
            else 'point it at an existing checkpoint, or set MODEL.WEIGHTS "" to train from '
            "the backbone's weights"
        )
        problems.append(f"MODEL.WEIGHTS file not found: {weights!r} ({_where(weights)}): {what}")
    for key, path in _weight_keys(cfg):
        if key == "MODEL.WEIGHTS" or os.path.isfile(path):
            continue
        problems.append(
            f"{key} file not found: {path!r} ({_where(path)}): vps_d2 never downloads; put the "
            f"file there or pass {key} /path/to/file (the method's README says how to get it), "
            f'or {key} "" for random initialisation'
        )
    b = cfg.MODEL.BACKBONE
    if b.get("PRETRAINED", False) and not b.get("WEIGHTS", ""):
        problems.append(
            "MODEL.BACKBONE.PRETRAINED is True but MODEL.BACKBONE.WEIGHTS is empty: vps_d2 "
            "never downloads; pass MODEL.BACKBONE.WEIGHTS /path/to/file, or "
            "MODEL.BACKBONE.PRETRAINED False for random initialisation"
        )
    return problems


def _where(path: str) -> str:
    return "absolute path" if os.path.isabs(path) else f"relative to {os.getcwd()}"


def preflight(
    cfg: CfgNode, args: argparse.Namespace, world_size: int, main_machine: bool = True
) -> DirectoryLock | None:
    """Everything that can be checked before processes start, so a mistake costs one clear
    line instead of a spawn traceback after the set-up (or after the whole training):

    * OUTPUT_DIR can be created and written (not under a file);
    * SOLVER.IMS_PER_BATCH is a multiple of the number of processes;
    * every file the run will open exists (:func:`missing_files`: MODEL.WEIGHTS, the
      backbone's and any other ``*WEIGHTS`` key's file), and every DATASETS.TRAIN /
      DATASETS.TEST entry is registered and loads (a missing split folder fails here, not
      after training); all of these problems are reported together, one line each;
    * ``--resume``: the file last_checkpoint names exists;
    * a new training run into an OUTPUT_DIR that holds one is refused unless ``--resume``
      or ``--overwrite`` (which moves the old files aside first);
    * stale temporary files of dead processes in OUTPUT_DIR are removed;
    * OUTPUT_DIR is locked for this run (:class:`~vps_d2.utils.file_io.DirectoryLock`; a
      second run into it is refused while this one lives).

    ``main_machine`` False (``--machine-rank`` > 0): only the checks, no lock, no refusal
    (machine 0 decides for the shared OUTPUT_DIR).

    Returns the lock (release it at the end), or None.
    """
    out = cfg.OUTPUT_DIR
    move_other_run = False
    if out and main_machine:  # before anything is written
        move_other_run = check_run_compatible(
            cfg,
            out,
            resume=bool(args.resume),
            eval_only=bool(args.eval_only),
            overwrite=bool(getattr(args, "overwrite", False)),
        )
    _check_output_dir(out)
    total = int(cfg.SOLVER.IMS_PER_BATCH)
    if not args.eval_only and (total < 1 or total % world_size):
        raise PreflightError(
            f"SOLVER.IMS_PER_BATCH ({total}) must be a positive multiple of the number of "
            f"processes ({world_size} = --num-gpus x --num-machines)"
        )
    last = os.path.join(out, "last_checkpoint") if out else ""
    resuming = bool(args.resume) and bool(last) and os.path.isfile(last)
    problems = missing_files(cfg, eval_only=bool(args.eval_only), resuming=resuming)
    configure_datasets(cfg)
    names = list(cfg.DATASETS.TEST) + ([] if args.eval_only else list(cfg.DATASETS.TRAIN))
    for name in names:
        try:
            get_video_records(name)  # raises naming the dataset and the folder
        except (OSError, KeyError, ValueError) as e:
            if not problems:
                raise  # the only problem: as it is
            problems.append(f"DATASETS: {e.args[0] if e.args else e}")
    if problems:
        raise PreflightError(
            problems[0]
            if len(problems) == 1
            else f"{len(problems)} problems:\n  " + "\n  ".join(problems)
        )
    if not out or not main_machine:
        return None
    if args.resume and os.path.isfile(last):
        with open(last, encoding="utf-8") as f:
            name = f.read().strip()
        if not os.path.isfile(os.path.join(out, name)):
            raise PreflightError(
                f"{last} names {name!r}, which does not exist in {out}: remove last_checkpoint "
                "to start afresh, or point it at an existing model_XXXXXXX.pth"
            )
    lock = DirectoryLock(out)
    lock.acquire(" ".join(sys.argv))
    try:
        remove_stale_temp_files(out, report=lambda message: _note(args, message))
        existing = _existing_run(out)
        if (existing or move_other_run) and not args.eval_only and not args.resume:
            if not getattr(args, "overwrite", False):
                raise PreflightError(
                    f"OUTPUT_DIR {out} already holds a training run ({', '.join(existing[:3])}"
                    f"{', ...' if len(existing) > 3 else ''}): --resume continues it, "
                    "--overwrite moves its files to OUTPUT_DIR/previous_runs/<time>/ and starts "
                    "a new one, or choose another OUTPUT_DIR"
                )
            dest = move_previous_run(out)
            _note(args, f"--overwrite: the previous run's files were moved to {dest}")
    except BaseException:
        lock.release()
        raise
    return lock


def configure_cpu_threads(cfg: CfgNode, num_workers: int | None = None) -> None:
    """On the CPU, give torch the cores left after the other local processes and
    ``num_workers`` loader workers (default DATALOADER.NUM_WORKERS), unless OMP_NUM_THREADS
    is set: oversubscribed OpenMP threads spin against each other and made a 2-core run
    ~10x slower."""
    if "OMP_NUM_THREADS" in os.environ or torch.cuda.is_available():
        return
    local_procs = get_local_world_size()
    cores = os.cpu_count() or 1
    workers = int(cfg.DATALOADER.NUM_WORKERS) if num_workers is None else int(num_workers)
    threads = max(1, cores // local_procs - workers)
    torch.set_num_threads(threads)
    logger.info("CPU run: torch uses %d thread(s) (set OMP_NUM_THREADS to override)", threads)


def _note(args: argparse.Namespace, message: str) -> None:
    """Keep a line of ``preflight`` for the log (logging is set up only after it, per process;
    the notes travel with ``args`` into spawned processes)."""
    args.preflight_notes = [*getattr(args, "preflight_notes", []), message]


def log_preflight_notes(args: argparse.Namespace) -> None:
    """Log what ``preflight`` did to OUTPUT_DIR (stale temporary files removed, a previous run
    moved aside by ``--overwrite``); call once logging is set up."""
    if comm.is_main_process():
        for message in getattr(args, "preflight_notes", []):
            logger.info("%s", message)


def default_setup(cfg: CfgNode, args: argparse.Namespace | None = None) -> None:
    """Per-process set-up: OUTPUT_DIR, log.txt, config.yaml dump, seed, env summary,
    dataset options (so spawned processes see the same catalog)."""
    output_dir = cfg.OUTPUT_DIR
    rank = comm.get_rank()
    if rank == 0 and output_dir:
        os.makedirs(output_dir, exist_ok=True)
    comm.synchronize()
    setup_logger(output_dir, distributed_rank=rank)
    logger.info("Rank of current process: %d. World size: %d", rank, comm.get_world_size())
    if comm.get_world_size() > 1 and not torch.cuda.is_available():
        logger.info("No GPU: the %d processes run on the CPU (gloo)", comm.get_world_size())
    logger.info("Environment info:\n%s", collect_env_info())
    if args is not None:
        logger.info("Command line: %s", " ".join(sys.argv))
        logger.info("Command line arguments: %s", args)
        log_preflight_notes(args)
        if getattr(args, "config_file", ""):
            with open(args.config_file, encoding="utf-8") as f:
                logger.info("Contents of args.config_file=%s:\n%s", args.config_file, f.read())
    if rank == 0 and output_dir:
        kept = save_run_config(output_dir, cfg.dump())
        if kept:
            logger.info("The run's previous config.yaml was kept as %s", kept)
        logger.info("Full config saved to %s", os.path.join(output_dir, "config.yaml"))
    seed_all_rng(None if cfg.SEED < 0 else cfg.SEED + rank)
    configure_cpu_threads(cfg)
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = bool(cfg.CUDNN_BENCHMARK)
    configure_datasets(cfg)
