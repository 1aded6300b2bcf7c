#!/usr/bin/env python
"""Measure the training data loader's throughput (clips/s) with 0 and N worker processes.

  python tools/benchmark_data.py                      # datasets/vps-sample, else synthetic
  python tools/benchmark_data.py --dataset-root datasets/vps-sample --workers 0 2 4
  python tools/benchmark_data.py --config-file configs/frame_baseline_sample.yaml \
      INPUT.CLIP.LENGTH 5

The data are the TrainDataset split of ``--dataset-root`` (a SUN-SEG-layout folder, by
default the sample dataset at datasets/vps-sample, made with
``python tools/make_sample_dataset.py --output datasets/vps-sample``); when it does not
exist, a small synthetic set is written to a temporary folder first. Each setting is timed
over ``--batches`` batches after ``--warmup`` batches (worker start-up is not counted).

The table compares with the model: fill in :func:`model_iterations_per_second` and the
last column says whether loading keeps up with training (clips/s >= it/s x batch).
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import sys
import tempfile
import time


def _interrupted_while_starting(*_):
    """Ctrl-C while the imports below run (torch takes seconds): one line, status 130."""
    print("Interrupted while starting: nothing was done", file=sys.stderr, flush=True)
    os._exit(130)


if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, _interrupted_while_starting)

try:
    import vps_d2  # noqa: F401
except ImportError:  # running from a source checkout without installing the package
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from vps_d2.config import add_vps_config, get_cfg
from vps_d2.data.build import build_train_loader
from vps_d2.data.catalog import DatasetCatalog
from vps_d2.data.datasets.folder import load_video_folder
from vps_d2.model_zoo import resolve_config_path

if signal.getsignal(signal.SIGINT) is _interrupted_while_starting:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # imports done: KeyboardInterrupt

_DATASET_NAME = "benchmark_data_train"


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Training data loader throughput (clips/s).")
    p.add_argument(
        "--config-file",
        default="configs/frame_baseline_sample.yaml",
        help="config of the loader (INPUT.*, SOLVER.*) and of the model timed for it/s",
    )
    p.add_argument(
        "--model-steps",
        type=int,
        default=10,
        help="timed training iterations of the model (0: skip)",
    )
    p.add_argument(
        "--dataset-root",
        default=os.path.join("datasets", "vps-sample"),
        help="SUN-SEG-layout folder whose TrainDataset is loaded (synthetic set if missing)",
    )
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="worker counts")
    p.add_argument("--batches", type=int, default=10, help="timed batches per setting")
    p.add_argument("--warmup", type=int, default=2, help="untimed batches per setting")
    p.add_argument("--clip-length", type=int, default=3, help="INPUT.CLIP.LENGTH")
    p.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE config opts")
    return p


def setup_cfg(args):
    cfg = add_vps_config(get_cfg())
    cfg.INPUT.CLIP.LENGTH = args.clip_length
    if args.config_file:
        cfg.merge_from_file(resolve_config_path(args.config_file))
    cfg.merge_from_list(args.opts)
    if cfg.SEED < 0:
        cfg.SEED = 0
    return cfg


def register_train_split(root: str) -> int:
    """Register ``root/TrainDataset`` as the benchmark dataset; return its number of frames."""
    split = os.path.join(root, "TrainDataset")
    records = load_video_folder(split, _DATASET_NAME, "train")
    if _DATASET_NAME in DatasetCatalog:
        DatasetCatalog.remove(_DATASET_NAME)
    DatasetCatalog.register(_DATASET_NAME, lambda: records)
    return sum(r["length"] for r in records)


def measure_loader(cfg, num_workers: int, batches: int, warmup: int) -> dict:
    """Time ``batches`` batches of the training loader with ``num_workers`` workers."""
    cfg = cfg.clone()
    cfg.DATALOADER.NUM_WORKERS = num_workers
    start = time.perf_counter()
    loader = build_train_loader(cfg, dataset_names=[_DATASET_NAME])
    it = iter(loader)
    for _ in itertools.islice(it, warmup):
        pass
    startup = time.perf_counter() - start
    t0 = time.perf_counter()
    clips = sum(len(b) for b in itertools.islice(it, batches))
    seconds = time.perf_counter() - t0
    del it, loader  # stops the workers
    return {
        "workers": num_workers,
        "clips": clips,
        "seconds": seconds,
        "clips_per_s": clips / seconds,
        "startup_s": startup,
    }


def model_iterations_per_second(cfg, steps: int = 10, warmup: int = 2) -> float | None:
    """Training iterations/s of the model of ``cfg`` on the CPU, data excluded.

    Builds the model and optimizer from the config, loads ``warmup + steps`` batches first,
    then times forward + backward + optimizer step on them. ``steps <= 0``: not measured.
    """
    if steps <= 0:
        return None
    from vps_d2.engine.defaults import configure_cpu_threads
    from vps_d2.modeling import build_model
    from vps_d2.solver import build_optimizer

    cfg = cfg.clone()
    configure_cpu_threads(cfg, num_workers=0)  # as tools/train_net.py does on the CPU
    cfg.MODEL.DEVICE = "cpu"
    cfg.DATALOADER.NUM_WORKERS = 0
    batches = list(
        itertools.islice(
            iter(build_train_loader(cfg, dataset_names=[_DATASET_NAME])), warmup + steps
        )
    )
    model = build_model(cfg)
    model.train()
    optimizer = build_optimizer(cfg, model)
    t0 = 0.0
    for i, batch in enumerate(batches):
        if i == warmup:
            t0 = time.perf_counter()
        losses = sum(model(batch).values())
        optimizer.zero_grad(set_to_none=True)
        losses.backward()
        optimizer.step()
    return steps / (time.perf_counter() - t0)


def print_table(cfg, results: list[dict], model_its: float | None) -> None:
    print(
        f"clips of {cfg.INPUT.CLIP.LENGTH} frames ({cfg.INPUT.CLIP.SAMPLING}), "
        f"{tuple(cfg.INPUT.SIZE_TRAIN)} px, batch {cfg.SOLVER.IMS_PER_BATCH}, "
        f"augmentation {'on' if cfg.INPUT.AUG.ENABLED else 'off'}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f} (other processes slow the workers down)"
    )
    print("| workers | clips | seconds | clips/s | ms/clip | start-up s |")
    print("|--------:|------:|--------:|--------:|--------:|-----------:|")
    for r in results:
        print(
            f"| {r['workers']:7d} | {r['clips']:5d} | {r['seconds']:7.2f} | "
            f"{r['clips_per_s']:7.1f} | {1000 / r['clips_per_s']:7.1f} | {r['startup_s']:10.2f} |"
        )
    base = next((r for r in results if r["workers"] == 0), None)
    if base is not None:
        for r in results:
            if r["workers"] > 0:
                ratio = r["clips_per_s"] / base["clips_per_s"]
                print(f"speed-up {r['workers']} workers / 0 workers: {ratio:.2f}x")
    if model_its is not None:
        need = model_its * cfg.SOLVER.IMS_PER_BATCH
        print(
            f"model {cfg.MODEL.META_ARCHITECTURE} ({cfg.MODEL.BACKBONE.NAME}) training on CPU: "
            f"{model_its:.2f} it/s x batch {cfg.SOLVER.IMS_PER_BATCH} = {need:.1f} clips/s needed"
        )
        for r in results:
            keeps = "keeps up" if r["clips_per_s"] >= need else "is the bottleneck"
            print(f"  loader with {r['workers']} workers {keeps}")


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    cfg = setup_cfg(args)
    with tempfile.TemporaryDirectory(prefix="vps_bench_") as tmp:
        root = args.dataset_root
        if os.path.isdir(os.path.join(root, "TrainDataset")):
            print(f"data: {os.path.abspath(root)}/TrainDataset")
        else:
            from vps_d2.synthetic import make_sample_dataset

            root = os.path.join(tmp, "vps-sample")
            make_sample_dataset(root, seed=0, train_clips=4, test_clips=1, frames_max=30)
            print(f"data: {root} (synthetic; {args.dataset_root} not found)")
        frames = register_train_split(root)
        print(f"{frames} training frames")
        results = [measure_loader(cfg, w, args.batches, args.warmup) for w in args.workers]
        model_its = model_iterations_per_second(cfg, steps=args.model_steps)
    print_table(cfg, results, model_its)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # wherever main() did not catch it: one line, status 130
        print("Interrupted", file=sys.stderr)
        sys.exit(130)
