#!/usr/bin/env python
"""CPU speed of every method's streaming step per backend: eager PyTorch, torch.compile,
ONNX Runtime (the step exported by tools/export.py), in one run.

  python tools/benchmark_deploy.py --quick            # the table of docs/deployment.md
  python tools/benchmark_deploy.py --frames 20 --compile --json deploy.json

Per method and input size: "small" is the method's sample config (small CNN backbone) at its
INPUT.SIZE_TEST, "paper" the paper config's network (random init, nothing downloaded) at the
paper's INPUT.SIZE_TEST. Each cell is the mean ms per frame over --frames frames of one
synthetic video at that size (after --warmup frames of another video), streamed through
``model.stream`` (eager), the compiled exported step (torch.compile, with --compile: it
compiles for minutes on CPU) or the ONNX Runtime predictor, with 1 thread and with all the
CPU's threads (torch.set_num_threads / ORT intra-op threads). The last column is eager / ONNX
Runtime. A method without an exported step (or a backend that fails) shows its reason.
Prints a Markdown table; --json writes the figures.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import sys
import tempfile
import time


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

import torch

from vps_d2.config import add_vps_config, get_cfg
from vps_d2.deploy import OnnxRuntimePredictor
from vps_d2.model_zoo import get_config_file
from vps_d2.modeling import build_model, resolve_clip_config
from vps_d2.modeling.export import (
    STREAMING_STEP_REGISTRY,
    StepStreamer,
    build_streaming_step,
    export_streaming_step,
)
from vps_d2.utils.benchmark import markdown_table, synthetic_frames, write_json

if signal.getsignal(signal.SIGINT) is _interrupted_while_starting:
    signal.signal(signal.SIGINT, signal.default_int_handler)

#: method -> (sample config, paper config).
METHODS = {
    "frame_baseline": ("frame_baseline_sample.yaml", "frame_baseline_res2net50.yaml"),
    "diff_vps": ("diff_vps_sample.yaml", "diff_vps_pvtv2_b3.yaml"),
    "sali": ("sali_sample.yaml", "sali_pvtv2_b2.yaml"),
    "pgn_aen": ("pgn_aen_sample.yaml", "pgn_aen_res2net50.yaml"),
}
BACKENDS = ("eager", "torch.compile", "onnxruntime")


def build(config: str):
    """(cfg, eval-mode model at random init, seed 0) of a shipped config, CPU, no download."""
    cfg = add_vps_config(get_cfg())
    cfg.merge_from_file(get_config_file(config))
    cfg.MODEL.BACKBONE.PRETRAINED, cfg.MODEL.BACKBONE.WEIGHTS = False, ""
    if cfg.MODEL.META_ARCHITECTURE == "DiffVPS":  # the discriminator is not timed
        cfg.MODEL.DIFF_VPS.DISCRIMINATOR.WEIGHTS = ""
    cfg.MODEL.DEVICE = "cpu"
    resolve_clip_config(cfg)
    torch.manual_seed(0)
    return cfg, build_model(cfg).eval()


def _ms_per_frame(stream, size, frames: int, warmup: int) -> float:
    """Mean ms per frame of ``stream(frames)`` over one video (after a warm-up video)."""
    h, w = size
    for _ in stream(synthetic_frames(warmup, h, w, video_id="warmup", seed=1)):
        pass
    start = time.perf_counter()
    n = sum(1 for _ in stream(synthetic_frames(frames, h, w, video_id="timed", seed=2)))
    return 1000.0 * (time.perf_counter() - start) / n


def _first_line(e: BaseException) -> str:
    lines = [ln for ln in str(e).splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[0][:80] if lines else ''}"


def bench_model(method, label, cfg, model, args, threads, tmp) -> list[dict]:
    """Rows {method, size, threads, eager, torch.compile, onnxruntime} of one model."""
    size = tuple(model.test_size)
    cells: dict[str, dict] = {n: {} for n in threads}
    reasons: dict[str, str] = {}
    for n in threads:
        torch.set_num_threads(n)
        cells[n]["eager"] = _ms_per_frame(model.stream, size, args.frames, args.warmup)
    exported = type(model).__name__ in STREAMING_STEP_REGISTRY
    onnx_file = os.path.join(tmp, f"{method}_{label}.onnx")
    if not exported:
        reasons["onnxruntime"] = reasons["torch.compile"] = "no exported step"
    else:
        try:
            export_streaming_step(model, onnx_file, "onnx", input_format=cfg.INPUT.FORMAT)
        except Exception as e:  # report the failure in the table, go on
            reasons["onnxruntime"] = _first_line(e)
    if exported and args.compile:
        try:
            step = build_streaming_step(model)
            compiled = torch.compile(step, dynamic=False)
            streamer = StepStreamer(_torch_run(compiled, step.input_names), step.metadata())
            for n in threads:
                torch.set_num_threads(n)
                cells[n]["torch.compile"] = _ms_per_frame(
                    streamer.stream, size, args.frames, args.warmup
                )
        except Exception as e:
            reasons["torch.compile"] = _first_line(e)
    elif exported:
        reasons["torch.compile"] = "not run (--compile)"
    if "onnxruntime" not in reasons:
        for n in threads:
            pred = OnnxRuntimePredictor(onnx_file, num_threads=n)
            cells[n]["onnxruntime"] = _ms_per_frame(pred, size, args.frames, args.warmup)
    rows = []
    for n in threads:
        row = {"method": method, "size": f"{label} {size[0]}x{size[1]}", "threads": n}
        for b in BACKENDS:
            row[b] = cells[n].get(b, reasons.get(b, ""))
        rows.append(row)
    return rows


def _torch_run(module, names):
    @torch.no_grad()
    def run(inputs):
        return [o.numpy() for o in module(*[torch.from_numpy(inputs[k]) for k in names])]

    return run


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    parser.add_argument(
        "--sizes", nargs="+", choices=("small", "paper"), default=["small", "paper"]
    )
    parser.add_argument("--frames", type=int, default=20, help="timed frames per cell")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up frames per cell")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--quick", action="store_true", help="6 timed frames, 2 warm-up")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    if args.quick:
        args.frames, args.warmup = 6, 2
    if args.frames < 1 or args.warmup < 0:
        print("Error: --frames must be >= 1 and --warmup >= 0", file=sys.stderr)
        return 1
    all_threads = os.cpu_count() or 1
    threads = sorted({1, all_threads})
    rows = []
    with tempfile.TemporaryDirectory(prefix="vps_deploy_bench_") as tmp:
        for method in args.methods:
            for label, config in zip(("small", "paper"), METHODS[method]):
                if label not in args.sizes:
                    continue
                cfg, model = build(config)
                rows += bench_model(method, label, cfg, model, args, threads, tmp)
                print(f"done: {method} {label}", file=sys.stderr, flush=True)
    header = ["method", "size", "threads", "eager ms", "compile ms", "ORT ms", "eager / ORT"]
    table = []
    for r in rows:
        ort, eager = r["onnxruntime"], r["eager"]
        ratio = f"{eager / ort:.2f}" if isinstance(ort, float) and ort > 0 else ""
        table.append(
            [r["method"], r["size"], str(r["threads"]), eager, r["torch.compile"], ort, ratio]
        )
    print(
        f"CPU: {platform.processor() or platform.machine()}, {all_threads} threads; torch "
        f"{torch.__version__}; {args.frames} timed frames per cell (mean ms/frame)"
    )
    print("\n".join(markdown_table(header, table, fmt="{:.1f}")))
    if args.json:
        write_json(args.json, {"threads": threads, "frames": args.frames, "rows": rows})
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("Interrupted", file=sys.stderr)
        sys.exit(130)
