#!/usr/bin/env python
"""Train or evaluate a vps_d2 model (Detectron2's tools/train_net.py interface).

The command lives in :mod:`vps_d2.cli.train_net` (installed as ``vps-train``);
this script runs it from a source checkout, whose ``vps_d2`` it imports first.
"""

if __name__ == "__main__":
    from _command import run  # tools/_command.py: the Ctrl-C guard, then the command

    run("train_net")  # vps_d2.cli.train_net
