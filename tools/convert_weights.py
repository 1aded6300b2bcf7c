#!/usr/bin/env python
"""Convert a published checkpoint into a vps_d2 checkpoint.

The command lives in :mod:`vps_d2.cli.convert_weights` (installed as ``vps-convert``);
this script runs it from a source checkout, whose ``vps_d2`` it imports first.
"""

if __name__ == "__main__":
    from _command import run  # tools/_command.py: the Ctrl-C guard, then the command

    run("convert_weights")  # vps_d2.cli.convert_weights
