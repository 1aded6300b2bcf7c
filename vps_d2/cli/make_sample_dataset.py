#!/usr/bin/env python
"""Write the synthetic, colonoscopy-like sample dataset in the SUN-SEG layout.

The frames are procedurally drawn (no real patient data); they let the data loaders, the
training loop and the evaluation run end to end without the real SUN-SEG release.

Example::

    python tools/make_sample_dataset.py --output datasets/vps-sample --seed 0

See docs/data.md ("The synthetic sample dataset") and :mod:`vps_d2.synthetic`.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys


def _interrupted_while_starting(*_):
    """Ctrl-C while the imports below run (torch takes seconds): one line, status 130."""
    print("Interrupted while starting: nothing was done", file=sys.stderr, flush=True)
    os._exit(130)


if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, _interrupted_while_starting)

from vps_d2.cli import run_command
from vps_d2.utils.lazy import lazy_import

# The renderer (vps_d2.data: torch) loads after the flags are parsed: --help is quick.
_synthetic = lazy_import("vps_d2.synthetic")
_logger = lazy_import("vps_d2.utils.logger")

if signal.getsignal(signal.SIGINT) is _interrupted_while_starting:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # imports done: KeyboardInterrupt


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Write the synthetic sample dataset (SUN-SEG layout) to --output."
    )
    p.add_argument(
        "--output",
        required=True,
        help="dataset folder to create, e.g. datasets/vps-sample (never the real SUN-SEG's)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed -> same bytes)")
    p.add_argument("--train-clips", type=int, default=10, help="clips in TrainDataset")
    p.add_argument("--test-clips", type=int, default=3, help="clips in each of the 4 test splits")
    p.add_argument("--frames-min", type=int, default=20, help="fewest frames per clip")
    p.add_argument("--frames-max", type=int, default=40, help="most frames per clip")
    p.add_argument("--height", type=int, default=240, help="frame height in pixels")
    p.add_argument("--width", type=int, default=320, help="frame width in pixels")
    p.add_argument(
        "--overwrite", action="store_true", help="replace --output if it exists and is not empty"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    _logger.setup_logger(fmt="%(levelname)s %(name)s: %(message)s", stream="stderr")
    try:
        summary = _synthetic.make_sample_dataset(
            args.output,
            seed=args.seed,
            train_clips=args.train_clips,
            test_clips=args.test_clips,
            frames_min=args.frames_min,
            frames_max=args.frames_max,
            height=args.height,
            width=args.width,
            overwrite=args.overwrite,
        )
    except (FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"Synthetic sample dataset written to {summary['output_dir']} ({summary['seconds']} s)")
    for split, stats in summary["splits"].items():
        print(
            f"  {split:24s} {stats['clips']:3d} clips {stats['frames']:5d} frames "
            f"({stats['empty_masks']} without polyp)"
        )
    return 0


def console(argv=None) -> int:
    """The ``vps-make-sample`` command: :func:`main`, a Ctrl-C it did not catch as one line."""
    return run_command(main, argv)


if __name__ == "__main__":
    sys.exit(console())
