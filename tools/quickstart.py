#!/usr/bin/env python
"""The README quickstart, end to end on the synthetic sample dataset (CPU is enough).

1. create datasets/vps-sample if absent (tools/make_sample_dataset.py);
2. train configs/sample/baseline.yaml (tools/train_net.py);
3. evaluate the result with --eval-only and print the metrics;
4. render a sample test video with the trained model (tools/demo.py) and a contact sheet.

Each step is the command a user would type; they are printed before they run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(cmd: list[str]) -> None:
    print("\n$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", default="configs/sample/baseline.yaml")
    parser.add_argument("--output-dir", default="output/sample_baseline")
    parser.add_argument("--data", default="datasets/vps-sample")
    parser.add_argument("--skip-demo", action="store_true")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="extra KEY VALUE config opts")
    args = parser.parse_args()
    py = sys.executable
    start = time.time()
    if not os.path.isdir(os.path.join(ROOT, args.data, "TrainDataset")):
        run([py, "tools/make_sample_dataset.py", "--output", args.data, "--seed", "0"])
    else:
        print(f"Sample dataset found at {args.data}")
    common = ["--config-file", args.config_file]
    run([py, "tools/train_net.py", *common, "OUTPUT_DIR", args.output_dir, *args.opts])
    weights = os.path.join(args.output_dir, "model_final.pth")
    run([py, "tools/train_net.py", *common, "--eval-only", "MODEL.WEIGHTS", weights,
         "OUTPUT_DIR", os.path.join(args.output_dir, "eval"), *args.opts])  # fmt: skip
    results_file = os.path.join(ROOT, args.output_dir, "eval", "results.json")
    if os.path.isfile(results_file):
        with open(results_file, encoding="utf-8") as f:
            results = json.load(f)
        print("\nDice (maxDice) per split:")
        for split, metrics in results.items():
            print(f"  {split:28s} {metrics.get('maxDice', float('nan')):.3f}")
    if not args.skip_demo:
        case_root = os.path.join(ROOT, args.data, "TestEasyDataset", "Unseen", "Frame")
        case = sorted(os.listdir(case_root))[0]
        run([py, "tools/demo.py", *common, "--input", os.path.join(case_root, case),
             "--output", os.path.join(args.output_dir, "demo", f"{case}.mp4"),
             "--gt", os.path.join(os.path.dirname(case_root), "GT", case),
             "--opts", "MODEL.WEIGHTS", weights])  # fmt: skip
    print(f"\nQuickstart finished in {time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
