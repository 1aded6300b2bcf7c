"""Benchmark ArSDM: parameters, GFLOPs of one U-Net call, CPU time per U-Net call and per
generated frame.

    python -m vps_d2.methods.arsdm.benchmark --threads 2
    python -m vps_d2.methods.arsdm.benchmark --quick       # smoke run, sample config only

Models are built with random init from the shipped configs (nothing is read or downloaded).
Printed as Markdown tables:

* per config (arsdm_sample.yaml; without --quick also arsdm_384.yaml): trainable U-Net
  parameters (M; the EMA copy doubles what a checkpoint stores) and, for the sample config
  (the paper's U-Net at 384 x 384 is counted with --paper-flops only: it needs several GB of
  memory), fvcore GFLOPs of one U-Net call on one frame at INPUT.SIZE_TEST (one multiply-add
  = one flop);
* CPU ms of one U-Net call (batch 1, median of --repeats after one warm-up) and of one
  generated frame (SAMPLER.STEPS calls: ``model.step`` on a mask), on --threads torch
  threads, with the ratio of the two (about SAMPLER.STEPS).
"""

from __future__ import annotations

import argparse
import sys

import torch

import vps_d2.methods.arsdm  # noqa: F401  (registers MODEL.ARSDM)
from vps_d2.config import add_vps_config, get_cfg
from vps_d2.model_zoo import get_config_file
from vps_d2.modeling import build_model
from vps_d2.utils.benchmark import count_flops, markdown_table, params_m, time_callable, write_json

SAMPLE = "arsdm_sample.yaml"
PAPER = "arsdm_384.yaml"


def build(config: str, device: str = "cpu"):
    cfg = add_vps_config(get_cfg())
    cfg.merge_from_file(get_config_file(config))
    cfg.MODEL.DEVICE = device
    torch.manual_seed(0)
    return build_model(cfg).eval()


def unet_inputs(model):
    h, w = model.test_size
    x = torch.randn(1, 3, h, w, device=model.device)
    t = torch.tensor([500], device=model.device)
    cond = torch.zeros(1, 2, h, w, device=model.device)
    cond[:, 0] = 1
    return x, t, cond


def time_model(model, repeats: int) -> tuple[float, float]:
    """Median ms of one U-Net call and of one generated frame (``model.step``)."""
    h, w = model.test_size
    frame = {"sem_seg": torch.zeros(h, w), "height": h, "width": w, "video_id": "b"}
    with torch.inference_mode():
        call = time_callable(lambda: model.unet(*unet_inputs(model)), repeats)
        gen = time_callable(lambda: model.step(frame), repeats)
    return call.median_ms, gen.median_ms


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per row")
    p.add_argument("--quick", action="store_true", help="sample config only, 1 repeat")
    p.add_argument("--paper-flops", action="store_true", help="also count arsdm_384.yaml")
    p.add_argument("--json", default="", help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = 1 if args.quick else args.repeats
    configs = [SAMPLE] if args.quick else [SAMPLE, PAPER]
    sizes, speed = [], []
    for config in configs:
        model = build(config)
        gflops = None
        if config == SAMPLE or args.paper_flops:
            gflops = count_flops(model.unet, unet_inputs(model)).gflops
        sizes.append(
            [config, f"{model.test_size[0]}x{model.test_size[1]}", params_m(model.unet), gflops]
        )
        if config != SAMPLE:
            continue
        speed.append([config, model.sampler_steps, *time_model(model, repeats)])
    print(f"torch threads: {torch.get_num_threads()}")
    print(
        "\n".join(
            markdown_table(["config", "size", "U-Net params M", "GFLOPs/call"], sizes, missing="-")
        )
    )
    print()
    print(
        "\n".join(
            markdown_table(
                ["config", "DDIM steps", "ms/U-Net call", "ms/generated frame"],
                speed,
                fmt=[None, None, "{:.1f}", "{:.1f}"],
                ratios=[("frame / call", 3, 2)],
                ratio_fmt="{:.1f}",
            )
        )
    )
    if args.json:
        write_json(
            args.json,
            {
                "threads": torch.get_num_threads(),
                "sizes": [dict(zip(("config", "size", "params_m", "gflops"), r)) for r in sizes],
                "speed": [dict(zip(("config", "steps", "ms_call", "ms_frame"), r)) for r in speed],
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
