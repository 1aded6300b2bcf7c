#!/usr/bin/env python
"""Export a trained model's streaming step to ONNX or torch.export (docs/deployment.md).

The command lives in :mod:`vps_d2.cli.export` (installed as ``vps-export``);
this script runs it from a source checkout, whose ``vps_d2`` it imports first.
"""

if __name__ == "__main__":
    from _command import run  # tools/_command.py: the Ctrl-C guard, then the command

    run("export")  # vps_d2.cli.export
