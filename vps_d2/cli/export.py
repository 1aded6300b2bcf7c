#!/usr/bin/env python
r"""Export a trained model's streaming step (per frame, or per clip) to ONNX or torch.export.

  python tools/export.py --config-file vps_d2/methods/sali/configs/sali_sample.yaml \
      --format onnx --output out/sali.onnx --opts MODEL.WEIGHTS output/sali_sample/model_final.pth
  python tools/demo.py --config-file vps_d2/methods/sali/configs/sali_sample.yaml \
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
import sys

from vps_d2.cli import run_command
from vps_d2.config import ConfigError
from vps_d2.utils.cli_args import add_plugin_argument, plain
from vps_d2.utils.lazy import lazy_import

# torch, the model and the exporter load after the flags are parsed: --help is quick.
_checkpoint = lazy_import("vps_d2.checkpoint")
_defaults = lazy_import("vps_d2.engine.defaults")
_export = lazy_import("vps_d2.modeling.export")
_modeling = lazy_import("vps_d2.modeling")
_file_io = lazy_import("vps_d2.utils.file_io")
_logger = lazy_import("vps_d2.utils.logger")
_plugins = lazy_import("vps_d2.utils.plugins")

logger = logging.getLogger("vps_d2.export")

#: The file extension each format is written with (the formats of
#: ``vps_d2.modeling.export.EXPORT_FORMATS``, named here so that --help imports no torch).
FORMAT_EXTENSIONS = {"onnx": (".onnx",), "torch-export": (".pt2",)}


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Export a vps_d2 model's streaming step (ONNX / torch.export)",
        epilog=plain(__doc__.split("\n\n", 1)[1]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config-file", required=True, metavar="FILE", help="config file")
    add_plugin_argument(parser)
    parser.add_argument(
        "--format",
        choices=tuple(FORMAT_EXTENSIONS),
        default="onnx",
        help="onnx: an ONNX Runtime graph (opset 18); torch-export: a torch.export program",
    )
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
    cfg = _defaults.setup_cfg(
        argparse.Namespace(config_file=args.config_file, opts=args.opts, plugin=args.plugin)
    )
    cfg.defrost()
    cfg.MODEL.DEVICE = "cpu"  # the exported graph is device-independent
    cfg.freeze()
    model = _modeling.build_model(cfg)
    _checkpoint.load_model_weights(model, cfg.MODEL.WEIGHTS)
    model.eval()
    meta = _export.export_streaming_step(
        model,
        out,
        args.format,
        input_format=cfg.INPUT.FORMAT,
        dynamic_size=not args.static_size,
    )
    return meta


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    _logger.setup_logger()
    try:
        meta = run(args)
    except KeyboardInterrupt:
        print("Interrupted: nothing was written.", file=sys.stderr)
        return 130
    except OSError as e:
        print(
            f"Error: {_file_io.describe_os_error(e) if e.strerror is not None else e}",
            file=sys.stderr,
        )
        return 1
    except (
        ConfigError,
        _plugins.PluginError,
        _checkpoint.CheckpointError,
        _export.ExportError,
        ValueError,
        KeyError,
    ) as e:
        msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
        print(f"Error: {msg}", file=sys.stderr)
        return 1
    print(
        f"Exported {meta['meta_architecture']} ({args.format}, opset {meta['opset']}, "
        f"{meta['frames_per_step']} frame(s) per step, {len(meta['states'])} state tensors) "
        f"to {args.output}"
    )
    return 0


def console(argv=None) -> int:
    """The ``vps-export`` command: :func:`main`, a Ctrl-C it did not catch as one line."""
    return run_command(main, argv)


if __name__ == "__main__":
    sys.exit(console())
