#!/usr/bin/env python
"""Export a trained model's streaming step (per frame, or per clip) to ONNX or torch.export.

  python tools/export.py --config-file vps_d2/methods/sali/configs/sali_sample.yaml \\
      --format onnx --output out/sali.onnx --opts MODEL.WEIGHTS output/sali_sample/model_final.pth
  python tools/demo.py --config-file vps_d2/methods/sali/configs/sali_sample.yaml \\
      --backend onnxruntime --model-file out/sali.onnx --input FRAMES/ --output out/demo/

The step's state (temporal buffers, memory banks, frame counters) becomes explicit
fixed-size input and output tensors with validity masks, so the exported graph streams a
video exactly as the eager model (``docs/deployment.md``): ONNX opset 18 (the dynamo
exporter), the image's height and width dynamic (the graph resizes to INPUT.SIZE_TEST).
``--format torch-export`` writes a ``torch.export`` program (``.pt2``). The output file is
written atomically (a failed export leaves nothing). Exit status: 0, 1 with a one-line
message (missing weights, a model or op that cannot be exported), 2 on bad flags, 130 when
interrupted.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys


def _interrupted_while_starting(*_):
    """Ctrl-C while the imports below run (torch takes seconds): one line, status 130."""
    print("Interrupted while starting: nothing was done", file=sys.stderr, flush=True)
    os._exit(130)


if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, _interrupted_while_starting)

try:
    import vps_d2  # noqa: F401
except ImportError:  # running from a source checkout without installing
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vps_d2.checkpoint import CheckpointError, load_model_weights
from vps_d2.config import ConfigError
from vps_d2.engine.defaults import add_plugin_argument, setup_cfg
from vps_d2.modeling import build_model
from vps_d2.modeling.export import EXPORT_FORMATS, ExportError, export_streaming_step
from vps_d2.utils.file_io import describe_os_error
from vps_d2.utils.logger import setup_logger
from vps_d2.utils.plugins import PluginError

if signal.getsignal(signal.SIGINT) is _interrupted_while_starting:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # imports done: KeyboardInterrupt

logger = logging.getLogger("vps_d2.tools.export")

#: The file extension each format is written with.
FORMAT_EXTENSIONS = {"onnx": (".onnx",), "torch-export": (".pt2",)}


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Export a vps_d2 model's streaming step (ONNX / torch.export)",
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config-file", required=True, metavar="FILE", help="config file")
    add_plugin_argument(parser)
    parser.add_argument("--format", choices=EXPORT_FORMATS, default="onnx")
    parser.add_argument(
        "--output", required=True, metavar="FILE", help="the file written (.onnx or .pt2)"
    )
    parser.add_argument(
        "--static-size",
        action="store_true",
        help="fix the input size at INPUT.SIZE_TEST (default: height and width dynamic)",
    )
    parser.add_argument(
        "--opts",
        default=[],
        nargs=argparse.REMAINDER,
        help="config 'KEY VALUE' pairs; MODEL.WEIGHTS names the checkpoint exported",
    )
    return parser


def run(args: argparse.Namespace) -> dict:
    """Check the flags, build the model, load MODEL.WEIGHTS, export; returns the metadata."""
    out = os.path.abspath(os.path.expanduser(args.output))
    if os.path.splitext(out)[1].lower() not in FORMAT_EXTENSIONS[args.format]:
        raise ValueError(
            f"--output {args.output!r}: a --format {args.format} file must end in "
            f"{' or '.join(FORMAT_EXTENSIONS[args.format])}"
        )
    if not os.path.isdir(os.path.dirname(out)):
        raise FileNotFoundError(f"--output folder does not exist: {os.path.dirname(out)!r}")
    cfg = setup_cfg(
        argparse.Namespace(config_file=args.config_file, opts=args.opts, plugin=args.plugin)
    )
    cfg.defrost()
    cfg.MODEL.DEVICE = "cpu"  # the exported graph is device-independent
    cfg.freeze()
    model = build_model(cfg)
    load_model_weights(model, cfg.MODEL.WEIGHTS)
    model.eval()
    meta = export_streaming_step(
        model,
        out,
        args.format,
        input_format=cfg.INPUT.FORMAT,
        dynamic_size=not args.static_size,
    )
    return meta


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logger()
    try:
        meta = run(args)
    except KeyboardInterrupt:
        print("Interrupted: nothing was written.", file=sys.stderr)
        return 130
    except OSError as e:
        print(f"Error: {describe_os_error(e) if e.strerror is not None else e}", file=sys.stderr)
        return 1
    except (ConfigError, PluginError, CheckpointError, ExportError, ValueError, KeyError) as e:
        msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
        print(f"Error: {msg}", file=sys.stderr)
        return 1
    print(
        f"Exported {meta['meta_architecture']} ({args.format}, opset {meta['opset']}, "
        f"{meta['frames_per_step']} frame(s) per step, {len(meta['states'])} state tensors) "
        f"to {args.output}"
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("Interrupted", file=sys.stderr)
        sys.exit(130)
