#!/usr/bin/env python
"""Score saved predictions with the SUN-SEG toolbox protocol (same numbers, much faster).

The command lives in :mod:`vps_d2.cli.evaluate` (installed as ``vps-evaluate``);
this script runs it from a source checkout, whose ``vps_d2`` it imports first.
"""

if __name__ == "__main__":
    from _command import run  # tools/_command.py: the Ctrl-C guard, then the command

    run("evaluate")  # vps_d2.cli.evaluate
