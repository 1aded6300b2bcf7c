#!/usr/bin/env python
"""Export a trained model's streaming step to ONNX or torch.export (docs/deployment.md).

The command lives in :mod:`vps_d2.cli.export` (installed as ``vps-export``);
this script runs it from a source checkout, whose ``vps_d2`` it imports first.
"""

import os
import signal
import sys


def _interrupted_while_starting(*_):
    """Ctrl-C while the imports below run: one line, status 130."""
    print("Interrupted while starting: nothing was done", file=sys.stderr, flush=True)
    os._exit(130)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    guarded = signal.getsignal(signal.SIGINT) is signal.default_int_handler
    if guarded:
        signal.signal(signal.SIGINT, _interrupted_while_starting)
    from vps_d2.cli.export import console

    if guarded and signal.getsignal(signal.SIGINT) is _interrupted_while_starting:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # imports done
    sys.exit(console())
