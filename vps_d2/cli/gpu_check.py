#!/usr/bin/env python
"""GPU readiness: check every CUDA path and measure the papers' speeds in one command.

  vps-gpu-check                       # on a GPU machine: < 8 minutes
  vps-gpu-check --budget-s 900        # more time: fewer rows skipped
  vps-gpu-check --methods diff_vps --skip-speed
  vps-gpu-check --device cpu --smoke  # the whole sequence on the CPU, tiny sizes

Without a CUDA GPU (and without --device cpu) it prints one line and exits 0. For each
method's sample config: training iterations in fp32 / fp16 / bf16 (finite losses, every
optimizer stepping), --resume, --eval-only, 40 streamed frames equal to the CPU's, 2-process
NCCL DDP when 2 GPUs are visible; then the speed table at each paper's resolution (random
init): inference FPS (eager, channels_last + AMP, torch.compile, ONNX Runtime when an export
module exists), training it/s and peak GPU memory. Prints Markdown tables and writes
OUTPUT/gpu_check.json (rewritten after every row). Exit code 1 when a check failed. What is
checked and how the sizes were chosen: vps_d2/engine/gpu_check.py, docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys

import vps_d2
from vps_d2.cli import run_command
from vps_d2.utils.lazy import lazy_import, load

# torch and the package load after the flags are parsed, the rest once a GPU was found.
torch = lazy_import("torch")
_deploy = lazy_import("vps_d2.deploy")  # importing it registers the ONNX Runtime row
_gpu_check = lazy_import("vps_d2.engine.gpu_check")
_logger = lazy_import("vps_d2.utils.logger")
_train_net = lazy_import("vps_d2.cli.train_net")
#: DEFAULT_BUDGET_S of vps_d2.engine.gpu_check (repeated: the package is imported only once
#: a GPU was found, so that the skip line comes quickly).
DEFAULT_BUDGET_S = 450.0


def cuda_skip_reason() -> str:
    """Why the GPU check cannot run here ("" when a CUDA device is visible)."""
    if torch.cuda.is_available():
        return ""
    built = torch.version.cuda
    how = f"torch {torch.__version__} built for CUDA {built}" if built else "a CPU-only torch"
    return f"no CUDA GPU visible ({how})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes and iteration counts (tests the logic)"
    )
    parser.add_argument("--out", default="output/gpu_check", help="folder of the runs and JSON")
    parser.add_argument("--json", default="", help="JSON report (default OUT/gpu_check.json)")
    parser.add_argument(
        "--budget-s",
        type=float,
        default=DEFAULT_BUDGET_S,
        help="time budget in seconds: rows that would not fit are skipped with the reason",
    )
    parser.add_argument(
        "--methods",
        nargs="*",
        default=[],
        help="sample configs to check, by prefix (sali, pgn_aen, ...) or META_ARCHITECTURE",
    )
    parser.add_argument("--skip-checks", action="store_true", help="only the speed table")
    parser.add_argument("--skip-speed", action="store_true", help="only the checks")
    return parser


def cli(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.device == "cuda":
        why = cuda_skip_reason()
        if why:
            print(f"gpu_check: skipped: {why} (--device cpu --smoke runs the sequence on the CPU)")
            return 0
    vps_d2.register_all()  # every method: the check discovers them
    load(_deploy)  # its import registers the ONNX Runtime row's runner
    try:
        configs = _gpu_check.discover_sample_configs(args.methods)
    except KeyError as e:
        print(f"Error: {e.args[0]}", file=sys.stderr)
        return 2
    plan = _gpu_check.make_plan(
        args.device,
        smoke=args.smoke,
        budget_s=args.budget_s,
        sample_configs=[] if args.skip_speed else configs,
    )
    _logger.setup_logger(None)
    report = _gpu_check.run_gpu_check(
        plan,
        _train_net.cli,
        args.out,
        configs=configs,
        json_path=args.json,
        checks=not args.skip_checks,
        speed=not args.skip_speed,
    )
    meta = report.meta
    where = meta.get("gpu", "CPU")
    print(f"\n# gpu_check on {where} (torch {meta['torch']}, CUDA {meta['cuda']})\n")
    if not args.skip_checks:
        print("\n".join(report.check_table()) + "\n")
    if not args.skip_speed:
        print("\n".join(report.speed_table()) + "\n")
    print(f"{len(report.rows)} rows in {meta['elapsed_s']:.0f} s, written to {report.json_path}")
    if report.failed:
        print(f"{len(report.failed)} check(s) FAILED", file=sys.stderr)
        return 1
    return 0


def console(argv=None) -> int:
    """The ``vps-gpu-check`` command: :func:`cli`, a Ctrl-C it did not catch as one line."""
    return run_command(cli, argv)


if __name__ == "__main__":
    sys.exit(console())
