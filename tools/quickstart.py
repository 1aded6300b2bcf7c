#!/usr/bin/env python
"""The README quickstart, end to end on the synthetic sample dataset (CPU is enough).

The command lives in :mod:`vps_d2.cli.quickstart` (installed as ``vps-quickstart``);
this script runs it from a source checkout, whose ``vps_d2`` it imports first.
"""

if __name__ == "__main__":
    from _command import run  # tools/_command.py: the Ctrl-C guard, then the command

    run("quickstart")  # vps_d2.cli.quickstart
