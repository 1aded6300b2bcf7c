#!/usr/bin/env python
"""Detectron2's own demo (its demo/demo.py and demo/predictor.py, imported, not copied) on a
vps_d2 model.

The command lives in :mod:`vps_d2.cli.d2_demo` (installed as ``vps-d2-demo``);
this script runs it from a source checkout, whose ``vps_d2`` it imports first.
"""

if __name__ == "__main__":
    from _command import run  # tools/_command.py: the Ctrl-C guard, then the command

    run("d2_demo")  # vps_d2.cli.d2_demo
