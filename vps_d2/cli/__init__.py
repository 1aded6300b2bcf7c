"""The command-line tools, the top layer (like tools/): nothing in vps_d2 imports this package.

Each module is one command, installed as a console script (setup.py) and wrapped by the
``tools/<name>.py`` of a source checkout:

=====================  ==========================  ====================================
command                module                      does
=====================  ==========================  ====================================
``vps-train``          ``train_net``               train or evaluate (``--eval-only``)
``vps-evaluate``       ``evaluate``                score saved predictions (SUN-SEG)
``vps-demo``           ``demo``                    overlay a model's masks on a video
``vps-synthesize``     ``synthesize``              write a synthetic dataset (ArSDM)
``vps-make-sample``    ``make_sample_dataset``     write the synthetic sample dataset
``vps-quickstart``     ``quickstart``              the README quickstart, end to end
``vps-convert``        ``convert_weights``         convert a public checkpoint
``vps-gpu-check``      ``gpu_check``               the GPU check sequence and speed table
``vps-d2-demo``        ``d2_demo``                 Detectron2's demo on a vps_d2 model
``vps-export``         ``export``                  export a streaming step (ONNX, .pt2)
=====================  ==========================  ====================================

``--help`` of every command imports no torch model, method, timm or evaluation module: the
modules import those lazily (:func:`vps_d2.utils.lazy.lazy_import`), after parsing the flags.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

__all__ = ["run_command"]


def run_command(main: Callable[[Sequence[str] | None], int], argv=None) -> int:
    """``main(argv)``'s exit status; a Ctrl-C it did not catch: one line, status 130."""
    try:
        return main(argv)
    except KeyboardInterrupt:
        print("Interrupted", file=sys.stderr, flush=True)
        return 130
