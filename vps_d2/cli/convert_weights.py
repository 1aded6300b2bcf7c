#!/usr/bin/env python
"""Convert a published checkpoint into a vps_d2 checkpoint.

    vps-convert --from sali --input Net_epoch_8_best.pth \\
        --output pretrained/sali_pvtv2_b5_public.pth
    vps-convert --from diff-vps --input best_model_0.9064.pt \\
        --output pretrained/diff_vps_pvtv2_b3_public.pth
    vps-convert --from pvt_v2 --input pvt_v2_b5.pth --output pvt_v2_b5_timm.pth

The input may be a plain state dict or one wrapped in {"state_dict" | "model" | "net" |
"module": ...}, with or without DataParallel/DDP "module." prefixes. Every tensor goes
through the converter's explicit table; tensors the table does not know and (for method
checkpoints) model tensors nothing was mapped to are listed by name and are an error
unless --allow-partial. Method checkpoints are checked against the model built from the
converter's config (or --config-file) and written atomically as {"model": ...,
"conversion": {source, converter, converter_version, config}}, which MODEL.WEIGHTS loads;
backbone files (pvt_v2, res2net, hrnet) are written in timm's names, for
MODEL.BACKBONE.WEIGHTS (which also reads the original files directly).
"""

from __future__ import annotations

import argparse
import os
import sys

import vps_d2
from vps_d2.cli import run_command
from vps_d2.config import add_vps_config, get_cfg
from vps_d2.utils.lazy import lazy_import

# The converters (registered by the methods) load after the flags are parsed: --help is quick.
_convert = lazy_import("vps_d2.checkpoint.convert")
_model_zoo = lazy_import("vps_d2.model_zoo")
_modeling = lazy_import("vps_d2.modeling")


def _names() -> list[str]:
    vps_d2.register_all()  # the methods register their converters
    return sorted(name for name, _ in _convert.CONVERTER_REGISTRY)


def _converter_lines() -> str:
    return "\n".join(f"  {n:9s} {_convert.CONVERTER_REGISTRY.get(n).description}" for n in _names())


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="--from list prints the converters (name and what each reads)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--from", dest="source", required=True, help="the converter's name, or list: print them"
    )
    p.add_argument("--input", required=True, help="the published checkpoint")
    p.add_argument("--output", required=True, help="the vps_d2 checkpoint to write")
    p.add_argument(
        "--config-file",
        default="",
        help="config the weights are checked against (default: the converter's, e.g. "
        "configs/sali_pvtv2_b5_public.yaml)",
    )
    p.add_argument(
        "--allow-partial",
        action="store_true",
        help="write even if tensors are unmapped or model tensors are missing (listed)",
    )
    p.add_argument("--force", action="store_true", help="overwrite --output if it exists")
    return p


def _fmt(names: list[str], limit: int = 20) -> str:
    more = f" ... and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    i = argv.index("--from") if "--from" in argv else -2
    if argv[i + 1 : i + 2] == ["list"] or "--from=list" in argv:
        print(f"converters:\n{_converter_lines()}")
        return 0
    parser = get_parser()
    args = parser.parse_args(argv)
    if args.source not in _names():
        parser.error(f"argument --from: invalid choice: {args.source!r} (choose from {_names()})")
    conv = _convert.CONVERTER_REGISTRY.get(args.source)
    if os.path.abspath(args.input) == os.path.abspath(args.output):
        print("error: --output must differ from --input", file=sys.stderr)
        return 2
    if os.path.exists(args.output) and not args.force:
        print(f"error: {args.output} exists (pass --force to overwrite it)", file=sys.stderr)
        return 2
    try:
        state = _convert.read_state_dict(args.input)
    except (FileNotFoundError, _convert.ConversionError) as e:
        print(f"error: --input: {e}", file=sys.stderr)
        return 2
    if not conv.matches(state):
        other = _convert.detect_source(state)
        hint = f" It looks like --from {other.name}." if other and other is not conv else ""
        print(
            f"error: {args.input} is not in the {args.source!r} format (none of its expected "
            f"tensors {list(conv.signature)} are there).{hint}",
            file=sys.stderr,
        )
        return 2
    try:
        res = conv.convert(state)
    except _convert.ConversionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    problems = []
    if res.unmapped:
        problems.append(
            f"{len(res.unmapped)} tensor(s) of the input have no rule: {_fmt(res.unmapped)}"
        )
    config = ""
    if conv.target == "model":
        config = args.config_file or conv.config
        cfg = get_cfg()
        add_vps_config(cfg)
        cfg.merge_from_file(_model_zoo.resolve_config_path(config))
        cfg.MODEL.DEVICE = "cpu"
        cfg.MODEL.BACKBONE.PRETRAINED = False
        cfg.MODEL.BACKBONE.WEIGHTS = ""
        expected = _modeling.build_model(cfg).state_dict()
        missing, extra, wrong = _convert.compare_with_model(res.state_dict, expected)
        if missing:
            problems.append(f"{len(missing)} model tensor(s) get no value: {_fmt(missing)}")
        if extra:
            problems.append(f"{len(extra)} converted tensor(s) the model lacks: {_fmt(extra)}")
        if wrong:
            problems.append(f"{len(wrong)} shape mismatch(es): {_fmt(wrong)}")
            res.state_dict = {
                k: v
                for k, v in res.state_dict.items()
                if k not in set(w.split(":")[0] for w in wrong)
            }
    for name, reason in sorted(res.ignored.items()):
        print(f"unused: {name} ({reason})")
    for p in problems:
        print(("warning: " if args.allow_partial else "error: ") + p, file=sys.stderr)
    if problems and not args.allow_partial:
        print("nothing written (pass --allow-partial to write anyway)", file=sys.stderr)
        return 1
    meta = conv.metadata(args.input)
    meta["config"] = os.path.basename(config) if config else ""
    meta["partial"] = bool(problems)
    _convert.save_converted(args.output, res.state_dict, meta)
    n = sum(v.numel() for v in res.state_dict.values())
    where = (
        f"MODEL.WEIGHTS with --config-file configs/{meta['config']}"
        if config
        else ("MODEL.BACKBONE.WEIGHTS")
    )
    print(
        f"wrote {args.output}: {len(res.state_dict)} tensors ({n:,} values) from "
        f"{len(state)} input tensors ({len(res.ignored)} unused); load it as {where}"
    )
    return 0


def console(argv=None) -> int:
    """The ``vps-convert`` command: :func:`main`, a Ctrl-C it did not catch as one line."""
    return run_command(main, argv)


if __name__ == "__main__":
    sys.exit(console())
