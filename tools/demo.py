#!/usr/bin/env python
"""Run a trained vps_d2 model on a video, a frame folder or a webcam and draw its masks.

The command lives in :mod:`vps_d2.cli.demo` (installed as ``vps-demo``);
this script runs it from a source checkout, whose ``vps_d2`` it imports first.
"""

if __name__ == "__main__":
    from _command import run  # tools/_command.py: the Ctrl-C guard, then the command

    run("demo")  # vps_d2.cli.demo
