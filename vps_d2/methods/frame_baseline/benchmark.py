"""Benchmark the frame-wise baseline: parameters, GFLOPs per component, CPU speed.

    python -m vps_d2.methods.frame_baseline.benchmark --threads 2
    python -m vps_d2.methods.frame_baseline.benchmark --timed-frames 10 --json out.json
    python -m vps_d2.methods.frame_baseline.benchmark --quick     # smoke run, sample config

Models are built from frame_baseline_res2net50.yaml (Res2Net-50 26w_4s + light FPN decoder;
found with ``vps_d2.model_zoo.get_config_file``) with random init: nothing is read or
downloaded. Printed, each in a Markdown table:

* parameters (M) and GFLOPs per component at --size x --size (352): backbone, decoder
  (light FPN), head (the 1x1 predictor and the upsampling of its logits to the input size),
  with each component's share of the total. GFLOPs of ``predict_logits`` on one normalised
  (1, 3, size, size) frame, by fvcore's FlopCountAnalysis through
  ``vps_d2.utils.benchmark.count_flops``: one multiply-add = one flop (fvcore's
  convention); element-wise ops fvcore has no handle for are not counted;
* CPU ms per frame of the streaming step (``model.step`` on a uint8 frame: normalisation,
  network, probabilities at the frame's size; inference mode, batch 1): median of
  --timed-frames frames after one warm-up frame, on --threads torch threads (0: torch's
  default), for the Res2Net-50 model at --size and at the sample config's INPUT.SIZE_TEST
  (128x160), and for frame_baseline_sample.yaml (small CNN) at that size; the last column
  is the ratio to the first row.

--quick measures only frame_baseline_sample.yaml at its size (sizes table and speed, 1 timed
frame); explicit flags still override these settings.
"""

from __future__ import annotations

import argparse
import sys

import torch

import vps_d2.methods.frame_baseline  # noqa: F401  (registers MODEL.FRAME_BASELINE)
from vps_d2.config import add_vps_config, get_cfg
from vps_d2.model_zoo import get_config_file
from vps_d2.modeling import build_model
from vps_d2.utils.benchmark import (
    add_common_arguments,
    count_flops,
    markdown_table,
    params_m,
    parse_benchmark_args,
    ratio_cell,
    synthetic_frames,
    time_callable,
    write_json,
)

CONFIG = "frame_baseline_res2net50.yaml"
SAMPLE = "frame_baseline_sample.yaml"
QUICK = {"size": 0, "timed_frames": 1}


def load_cfg(config: str, device: str, size: int | tuple[int, int] = 0):
    """Config of the shipped file ``config`` without pretrained weights, tested at ``size``
    (an int: size x size; 0: the config's INPUT.SIZE_TEST)."""
    cfg = add_vps_config(get_cfg())
    cfg.merge_from_file(get_config_file(config))
    cfg.MODEL.BACKBONE.PRETRAINED, cfg.MODEL.BACKBONE.WEIGHTS = False, ""
    cfg.MODEL.DEVICE = device
    if size:
        cfg.INPUT.SIZE_TEST = (size, size) if isinstance(size, int) else tuple(size)
    return cfg


def build(config: str, device: str, size: int | tuple[int, int] = 0):
    """Model of :func:`load_cfg` with random init (seed 0), in eval mode."""
    cfg = load_cfg(config, device, size)
    torch.manual_seed(0)
    return build_model(cfg).eval()


def sizes(model) -> tuple[dict[str, tuple[float, float]], list[str]]:
    """{component: (params M, GFLOPs)} of ``predict_logits`` on one frame at the test size
    (head = the predictor and the final upsampling: total - backbone - decoder), and the ops
    fvcore did not count."""
    x = torch.randn(1, 3, *model.test_size, device=model.device)
    flops = count_flops(model.predict_logits, x, owner=model)
    bb = flops.module_gflops("backbone", "owner.")
    dec = flops.module_gflops("decoder", "owner.")
    total = flops.gflops
    return {
        "backbone": (params_m(model.backbone), bb),
        "decoder (light FPN)": (params_m(model.decoder), dec),
        "head (1x1 predictor + upsampling)": (params_m(model.predictor), total - bb - dec),
        "**total**": (params_m(model), total),
    }, flops.not_counted


def time_frames(model, n: int) -> float:
    """Median ms of ``model.step`` over ``n`` frames after one warm-up frame."""
    h, w = model.test_size
    frames = list(synthetic_frames(n + 1, h, w, video_id="bench"))
    with torch.inference_mode():
        stats = time_callable(
            model.step, n, warmup=1, setup=lambda i: (frames[i],), device=model.device
        )
    return stats.median_ms


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--size",
        type=int,
        default=352,
        help="frame size of the sizes table and of the first timing row (0: the "
        "sample config's INPUT.SIZE_TEST, sample model only)",
    )
    p.add_argument("--timed-frames", type=int, default=3, help="timed frames per row")
    add_common_arguments(
        p, quick_help="smoke run: frame_baseline_sample.yaml at its size, 1 timed frame"
    )
    return parse_benchmark_args(p, argv, QUICK)


def main(argv=None) -> int:
    args = parse_args(argv)
    dev = f"{args.device}, {torch.get_num_threads()} threads"
    sample_size = tuple(load_cfg(SAMPLE, args.device).INPUT.SIZE_TEST)
    hw = lambda s: f"{s[0]}x{s[1]}"
    # --size 0 (--quick): the sample model at its own size only
    config, size = (CONFIG, (args.size, args.size)) if args.size else (SAMPLE, sample_size)
    results: dict = {
        "device": args.device,
        "threads": torch.get_num_threads(),
        "config": config,
        "size": list(size),
    }
    model = build(config, args.device, size)
    table, not_counted = sizes(model)
    del model
    results["sizes"] = {k: {"params_m": p, "gflops": g} for k, (p, g) in table.items()}
    results["not_counted"] = not_counted
    p_tot, g_tot = table["**total**"]
    print(
        f"\nFrameBaseline sizes ({config}, random init; {hw(size)} input; fvcore, "
        "1 multiply-add = 1 flop)\n"
    )
    print(
        "\n".join(
            markdown_table(
                ["component", "params M", "GFLOPs", "params share", "GFLOPs share"],
                [
                    [k, p, g, ratio_cell(p, p_tot), ratio_cell(g, g_tot)]
                    for k, (p, g) in table.items()
                ],
                fmt=[None, "{:.3f}", "{:.2f}", None, None],
            )
        )
    )
    print(f"\nOps not counted by fvcore: {', '.join(not_counted) or 'none'}.")
    runs = [(config, size)]
    if args.size:
        runs += [(CONFIG, sample_size), (SAMPLE, sample_size)]
    if args.timed_frames:
        timing = []
        for name, s in runs:
            model = build(name, args.device, s)
            timing.append([name, hw(s), time_frames(model, args.timed_frames)])
            del model
        results["ms_per_frame"] = [{"config": c, "size": s, "ms": ms} for c, s, ms in timing]
        print(
            f"\nFrameBaseline streaming ms/frame ({dev}; batch 1; median of "
            f"{args.timed_frames} frames after 1 warm-up)\n"
        )
        ref = timing[0][2]
        print(
            "\n".join(
                markdown_table(
                    ["config", "input", "ms/frame", f"vs {timing[0][0]} at {timing[0][1]}"],
                    [[c, s, ms, ratio_cell(ms, ref, "{:.2f}x")] for c, s, ms in timing],
                    fmt=[None, None, "{:.1f}", None],
                )
            )
        )
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
