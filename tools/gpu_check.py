#!/usr/bin/env python
"""GPU readiness: check every CUDA path and measure the papers' speeds in one command.

The command lives in :mod:`vps_d2.cli.gpu_check` (installed as ``vps-gpu-check``);
this script runs it from a source checkout, whose ``vps_d2`` it imports first.
"""

if __name__ == "__main__":
    from _command import run  # tools/_command.py: the Ctrl-C guard, then the command

    run("gpu_check")  # vps_d2.cli.gpu_check
