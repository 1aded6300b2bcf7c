#!/usr/bin/env python
"""Detectron2's own demo (its demo/demo.py and demo/predictor.py, imported, not copied) on a
vps_d2 config.

Same flags as Detectron2's demo (--config-file, --video-input, --input, --webcam, --output,
--confidence-threshold, --opts), plus --d2-demo-dir (default: $DETECTRON2_DEMO, else the
demo/ folder next to an installed Detectron2 source checkout). What this script adds:

* ``import vps_d2.d2``: Detectron2's get_cfg, build_model and MetadataCatalog then know
  vps_d2's keys, models (with "sem_seg" / "instances" outputs) and datasets;
* the one-line hook ``predictor.DefaultPredictor = vps_d2.d2.VideoDefaultPredictor``: the
  demo's VisualizationDemo then predicts each video frame with the model's state kept per
  video (SALI's memory, Diff-VPS's temporal buffer), as vps_d2's evaluation does;
* --config-file configs/<name>.yaml finds any shipped config by name, as vps_d2's tools do;
* --confidence-threshold also sets TEST.D2_OUTPUTS.SCORE_THRESH (instances below it are not
  drawn); on videos TEST.D2_OUTPUTS.INSTANCE_MASKS is turned off, because Detectron2's
  VideoVisualizer draws the box and class name only of instances without a mask.

Example (Diff-VPS draws its box and class name; the other methods their mask)::

    python tools/d2_demo.py --config-file configs/diff_vps_sample.yaml \
        --video-input case.mp4 --output out/ --opts MODEL.WEIGHTS output/model_final.pth

Exit status: 0 on success, 1 on an error, 2 without Detectron2 or its demo folder.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import types

from vps_d2.cli import run_command
from vps_d2.utils.lazy import lazy_import

# Detectron2 and its adapter load when the demo is: the module itself imports neither.
vd2 = lazy_import("vps_d2.d2")
_model_zoo = lazy_import("vps_d2.model_zoo")


def find_demo_dir(explicit: str | None = None) -> str:
    """The folder holding Detectron2's demo.py and predictor.py (FileNotFoundError if none)."""
    import detectron2

    tried = [
        explicit,
        os.environ.get("DETECTRON2_DEMO"),
        os.path.join(os.path.dirname(os.path.dirname(detectron2.__file__)), "demo"),
    ]
    for d in tried:
        if d and all(os.path.isfile(os.path.join(d, f)) for f in ("demo.py", "predictor.py")):
            return os.path.abspath(d)
    raise FileNotFoundError(
        "Detectron2's demo folder (demo.py, predictor.py) not found in "
        f"{[d for d in tried if d]}: pass --d2-demo-dir DETECTRON2_CHECKOUT/demo (or set "
        "$DETECTRON2_DEMO)"
    )


def _load(name: str, path: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_demo(demo_dir: str):
    """Import Detectron2's demo/predictor.py (hooked) and demo/demo.py; return demo.py."""
    predictor = _load("predictor", os.path.join(demo_dir, "predictor.py"))
    predictor.DefaultPredictor = vd2.VideoDefaultPredictor  # the one-line hook
    # Some Detectron2 checkouts import it by a Meta-internal path: the same module there.
    parts = "vision.fair.detectron2.demo".split(".")
    for i in range(1, len(parts) + 1):
        sys.modules.setdefault(".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
    sys.modules["vision.fair.detectron2.demo.predictor"] = predictor
    demo = _load("d2_demo_main", os.path.join(demo_dir, "demo.py"))
    setup_cfg = demo.setup_cfg

    def setup_with_threshold(args):
        args.config_file = _model_zoo.resolve_config_path(args.config_file)  # configs/<name>.yaml
        cfg = setup_cfg(args)
        cfg.defrost()
        cfg.TEST.D2_OUTPUTS.SCORE_THRESH = float(args.confidence_threshold)
        if args.video_input or args.webcam:  # VideoVisualizer draws no box of a masked instance
            cfg.TEST.D2_OUTPUTS.INSTANCE_MASKS = False
        vd2.register_all(cfg)  # DATASETS.ROOT and the other dataset options of the config
        cfg.freeze()
        return cfg

    demo.setup_cfg = setup_with_threshold
    return demo


def main(argv: list[str] | None = None) -> int:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--d2-demo-dir", default=None)
    known, rest = pre.parse_known_args(sys.argv[1:] if argv is None else argv)
    try:
        demo_dir = find_demo_dir(known.d2_demo_dir)
        demo = load_demo(demo_dir)
    except ImportError as e:
        print(f"d2_demo: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"d2_demo: {e}", file=sys.stderr)
        return 2
    sys.argv = [os.path.join(demo_dir, "demo.py"), *rest]
    try:
        demo.main()
    except (ValueError, KeyError, FileNotFoundError) as e:
        print(f"d2_demo: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


def console(argv=None) -> int:
    """The ``vps-d2-demo`` command: :func:`main`, a Ctrl-C it did not catch as one line."""
    return run_command(main, argv)


if __name__ == "__main__":
    sys.exit(console())
