"""Detectron2's command-line flags (``default_argument_parser``), kept free of heavy imports:
a command's ``--help`` answers without importing torch (re-exported by vps_d2.engine)."""

from __future__ import annotations

import argparse

__all__ = [
    "DefaultsHelpFormatter",
    "RawDescriptionDefaultsHelpFormatter",
    "add_plugin_argument",
    "default_argument_parser",
    "plain",
]


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``(default: X)`` after a flag's help only where X says something: not for None,
    False, empty lists, required flags, or a help text that already names its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or "default" in text.lower()
            or action.required
            or default is None
            or default is False
            or default == []
            or default is argparse.SUPPRESS
        ):
            return text
        return super()._get_help_string(action)


class RawDescriptionDefaultsHelpFormatter(
    DefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter
):
    """:class:`DefaultsHelpFormatter` keeping the description's and epilog's line breaks."""


def plain(text: str) -> str:
    """A docstring's text for a terminal: RST literals (````x````) and ``::`` made plain."""
    return text.replace("``", "").replace("::\n", ":\n")


def default_argument_parser(epilog: str | None = None) -> argparse.ArgumentParser:
    """Detectron2's flags: --config-file, --resume, --eval-only, --num-gpus, --num-machines,
    --machine-rank, --dist-url and trailing KEY VALUE opts."""
    parser = argparse.ArgumentParser(
        epilog=epilog
        or (
            "Examples:\n"
            "  python tools/train_net.py --config-file configs/frame_baseline_sample.yaml\n"
            "  python tools/train_net.py --config-file cfg.yaml --eval-only MODEL.WEIGHTS m.pth\n"
            "  python tools/train_net.py --config-file cfg.yaml --num-gpus 8 --num-machines 2 "
            "--machine-rank 0 --dist-url tcp://10.0.0.1:23456\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config-file", default="", metavar="FILE", help="path to config file")
    add_plugin_argument(parser)
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUTPUT_DIR/last_checkpoint (iteration, optimizer, scheduler) "
        "if it exists; otherwise start from MODEL.WEIGHTS",
    )
    parser.add_argument("--eval-only", action="store_true", help="evaluate MODEL.WEIGHTS only")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start a new training run in an OUTPUT_DIR that already holds one: its files are "
        "first moved to OUTPUT_DIR/previous_runs/<time>/ (nothing is deleted)",
    )
    parser.add_argument(
        "--num-gpus",
        type=int,
        default=1,
        help="processes per machine: GPUs, or CPU processes (gloo) when CUDA is unavailable",
    )
    parser.add_argument("--num-machines", type=int, default=1, help="total number of machines")
    parser.add_argument(
        "--machine-rank", type=int, default=0, help="the rank of this machine (unique per machine)"
    )
    parser.add_argument(
        "--dist-url",
        default="auto",
        help="initialization URL for multi-machine runs: tcp://HOST:PORT of machine 0; "
        "'auto' picks a free local port (single machine)",
    )
    parser.add_argument(
        "opts",
        default=None,
        nargs=argparse.REMAINDER,
        help="Modify config options at the end of the command: KEY VALUE pairs, e.g. "
        "SOLVER.MAX_ITER 100 OUTPUT_DIR out/",
    )
    return parser


def add_plugin_argument(parser: argparse.ArgumentParser) -> None:
    """``--plugin MODULE`` (repeatable): import a method kept outside vps_d2 first."""
    parser.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE (a dotted name or a .py file) before reading the config, so a "
        "method kept outside vps_d2 registers its config section, model and parts "
        "(repeatable; also $VPS_D2_PLUGINS and the 'vps_d2.plugins' entry points)",
    )
