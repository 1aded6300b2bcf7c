#!/usr/bin/env python
"""Write a synthetic dataset with a trained generator (ArSDM) and measure it.

The command lives in :mod:`vps_d2.cli.synthesize` (installed as ``vps-synthesize``);
this script runs it from a source checkout, whose ``vps_d2`` it imports first.
"""

if __name__ == "__main__":
    from _command import run  # tools/_command.py: the Ctrl-C guard, then the command

    run("synthesize")  # vps_d2.cli.synthesize
