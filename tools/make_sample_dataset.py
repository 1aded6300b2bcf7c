#!/usr/bin/env python
"""Write the synthetic, colonoscopy-like sample dataset in the SUN-SEG layout.

The command lives in :mod:`vps_d2.cli.make_sample_dataset` (installed as ``vps-make-sample``);
this script runs it from a source checkout, whose ``vps_d2`` it imports first.
"""

if __name__ == "__main__":
    from _command import run  # tools/_command.py: the Ctrl-C guard, then the command

    run("make_sample_dataset")  # vps_d2.cli.make_sample_dataset
