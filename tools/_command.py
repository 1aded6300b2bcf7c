"""What every ``tools/<name>.py`` wrapper does: run the command ``vps_d2.cli.<name>`` of this
source checkout (installed or not), with Ctrl-C during the imports as one line.

Standard library only, so that the SIGINT guard is in place before anything of vps_d2 (and
torch behind it) is imported; the command restores Python's handler once its imports ran.
"""

import importlib
import os
import signal
import sys


def _interrupted_while_starting(*_):
    """Ctrl-C while the imports run: one line, status 130."""
    print("Interrupted while starting: nothing was done", file=sys.stderr, flush=True)
    os._exit(130)


def run(name: str) -> None:
    """Exit with ``vps_d2.cli.<name>.console()``'s status."""
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    guarded = signal.getsignal(signal.SIGINT) is signal.default_int_handler
    if guarded:
        signal.signal(signal.SIGINT, _interrupted_while_starting)
    console = importlib.import_module(f"vps_d2.cli.{name}").console
    if guarded and signal.getsignal(signal.SIGINT) is _interrupted_while_starting:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # imports done
    sys.exit(console())
