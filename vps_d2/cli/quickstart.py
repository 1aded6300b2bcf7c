#!/usr/bin/env python
"""The README quickstart, end to end on the synthetic sample dataset (CPU is enough).

1. create datasets/vps-sample if absent (vps-make-sample, tools/make_sample_dataset.py);
2. train configs/frame_baseline_sample.yaml (vps-train, tools/train_net.py);
3. evaluate the result with --eval-only and print the metrics;
4. render a sample test video with the trained model (vps-demo, tools/demo.py) and a
   contact sheet.

Each step is the command a user would type (``python -m vps_d2.cli.<tool>``, what the
``vps-*`` commands run); they are printed before they run, in the current folder (relative
paths are relative to it; the configs ship with the package). The script
fails (non-zero exit) when a step fails or the evaluation wrote no metrics.

``--short`` runs the same four steps in about a minute on 2 CPU cores, as a smoke test of
an installation (CI runs it after the README's install command): a small sample dataset
(4 training clips, 1 clip per test split, 96x128 frames), 200 iterations at 64x80, all of
it in a new temporary folder (``--output-dir`` to choose one), so that the user's
``datasets/`` and ``output/`` are never touched; the temporary folder is removed when the
run succeeds. Its numbers only show that the pipeline runs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

from vps_d2.cli import run_command
from vps_d2.utils.cli_args import plain

# --short: a small dataset and a short training at a small input size.
SHORT_DATA_ARGS = [
    "--train-clips",
    "4",
    "--test-clips",
    "1",
    "--frames-min",
    "12",
    "--frames-max",
    "16",
    "--height",
    "96",
    "--width",
    "128",
]
SHORT_OPTS = [
    "INPUT.SIZE_TRAIN",
    "(64, 80)",
    "INPUT.SIZE_TEST",
    "(64, 80)",
    "SOLVER.MAX_ITER",
    "200",
    "SOLVER.CHECKPOINT_PERIOD",
    "1000",
    "DATALOADER.NUM_WORKERS",
    "0",
    "DATALOADER.NUM_WORKERS_TEST",
    "0",
]


def run(cmd: list[str]) -> None:
    print("\n$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def print_results(results_file: str) -> None:
    """Print maxDice per split; raise if the evaluation wrote no usable metrics."""
    if not os.path.isfile(results_file):
        raise SystemExit(f"Quickstart failed: the evaluation wrote no {results_file}")
    with open(results_file, encoding="utf-8") as f:
        results = json.load(f)
    if not results:
        raise SystemExit(f"Quickstart failed: {results_file} holds no split")
    print("\nDice (maxDice) per split:")
    for split, metrics in results.items():
        value = metrics.get("maxDice", float("nan"))
        if not (isinstance(value, (int, float)) and math.isfinite(value)):
            raise SystemExit(f"Quickstart failed: no finite maxDice for {split} in {results_file}")
        print(f"  {split:28s} {value:.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", default="configs/frame_baseline_sample.yaml")
    parser.add_argument(
        "--output-dir",
        default=None,
        help="default: output/frame_baseline_sample (with --short: a new temporary folder)",
    )
    parser.add_argument(
        "--data",
        default=None,
        help="sample dataset folder (default: datasets/vps-sample; with --short: inside the "
        "temporary folder)",
    )
    parser.add_argument(
        "--short",
        action="store_true",
        help="a one-minute smoke test (small data, 200 iterations) in a temporary folder",
    )
    parser.add_argument("--skip-demo", action="store_true")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="extra KEY VALUE config opts")
    args = parser.parse_args(argv)
    py = [sys.executable, "-m"]
    start = time.time()
    temp_dir = None
    data_args, opts = ["--seed", "0"], list(args.opts)
    if args.short:
        temp_dir = tempfile.mkdtemp(prefix="vps_d2_quickstart_")
        print(f"--short: data and outputs go to {temp_dir}")
        output_dir = args.output_dir or os.path.join(temp_dir, "output")
        data = args.data or os.path.join(temp_dir, "datasets", "vps-sample")
        data_args += SHORT_DATA_ARGS
        opts = SHORT_OPTS + opts
    else:
        output_dir = args.output_dir or "output/frame_baseline_sample"
        data = args.data or "datasets/vps-sample"
    if data != "datasets/vps-sample":
        # The sample datasets are registered under <DATASETS.ROOT>/vps-sample.
        if os.path.basename(os.path.normpath(data)) != "vps-sample":
            raise SystemExit(f"--data must name a folder called vps-sample, got {data!r}")
        opts = ["DATASETS.ROOT", os.path.dirname(os.path.abspath(data))] + opts
    if not os.path.isdir(os.path.join(data, "TrainDataset")):
        run([*py, "vps_d2.cli.make_sample_dataset", "--output", data, *data_args])
    else:
        print(f"Sample dataset found at {data}")
    common = ["--config-file", args.config_file]
    # --resume: a second quickstart continues (or, when finished, keeps) the first one's run
    # instead of being refused by an OUTPUT_DIR that already holds a run.
    run([*py, "vps_d2.cli.train_net", *common, "--resume", "OUTPUT_DIR", output_dir, *opts])
    weights = os.path.join(output_dir, "model_final.pth")
    run(
        [
            *py,
            "vps_d2.cli.train_net",
            *common,
            "--eval-only",
            "MODEL.WEIGHTS",
            weights,
            "OUTPUT_DIR",
            os.path.join(output_dir, "eval"),
            *opts,
        ]
    )
    print_results(os.path.join(output_dir, "eval", "results.json"))
    if not args.skip_demo:
        case_root = os.path.join(data, "TestEasyDataset", "Unseen", "Frame")
        case = sorted(os.listdir(case_root))[0]
        video = os.path.join(output_dir, "demo", f"{case}.mp4")
        run(
            [
                *py,
                "vps_d2.cli.demo",
                *common,
                "--input",
                os.path.join(case_root, case),
                "--output",
                video,
                "--gt",
                os.path.join(os.path.dirname(case_root), "GT", case),
                "--opts",
                "MODEL.WEIGHTS",
                weights,
                *opts,
            ]
        )
        demo_dir = os.path.dirname(video)
        written = sorted(n for n in os.listdir(demo_dir) if not n.startswith("."))
        if not written:
            raise SystemExit(f"Quickstart failed: the demo wrote nothing to {demo_dir}")
        print(f"\nDemo output in {demo_dir}: {', '.join(written)}")
    print(f"\nQuickstart finished in {time.time() - start:.0f} s")
    if temp_dir is not None and args.output_dir is None:
        shutil.rmtree(temp_dir, ignore_errors=True)
        print(f"Removed the temporary folder {temp_dir}")
    return 0


def console(argv=None) -> int:
    """The ``vps-quickstart`` command: :func:`main`, a Ctrl-C it did not catch as one line."""
    return run_command(main, argv)


if __name__ == "__main__":
    sys.exit(console())
