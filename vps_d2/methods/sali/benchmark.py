"""Benchmark SALI: parameters, GFLOPs, streaming speed and memory (prints a Markdown table).

    python -m vps_d2.methods.sali.benchmark                 # pvt_v2_b2 and pvt_v2_b5, CPU
    python -m vps_d2.methods.sali.benchmark --backbones pvt_v2_b2 --memory-frames 100 1000 \
        --memory-size 64 --device cpu --threads 2
    python -m vps_d2.methods.sali.benchmark --quick         # smoke run, sali_sample.yaml

All models are randomly initialised (nothing is downloaded); configs sali_pvtv2_b2.yaml /
sali_pvtv2_b5.yaml (found with ``vps_d2.model_zoo.get_config_file``). Per backbone:

* parameters (total, backbone, SALI's own modules);
* GFLOPs of one streaming step at --size x --size (the backbone runs once per frame: the
  neighbour's features are cached), counted by fvcore's FlopCountAnalysis through
  ``vps_d2.utils.benchmark.count_flops`` (one multiply-add = one flop, fvcore's convention;
  torchvision::deform_conv2d: out elements x Cin/groups x k x k, the bilinear sampling not
  counted; aten::scaled_dot_product_attention, PVTv2's attention: Lq x Lk x (d + dv) per
  head). Element-wise ops, softmax, topk and gather are not counted (fvcore's default).
  Given with a memory of 1 frame and of MEMORY.CAPACITY frames (pre-filled);
* streaming ms/frame at --size (``step_logits`` on a normalised (1, 3, size, size) input):
  median of --timed-frames calls after one warm-up call, same two memory states, on
  --threads torch CPU threads (0: torch's default);
* memory after 100 and 1,000 streamed frames (--memory-frames) at --memory-size x
  --memory-size (smaller than --size so that the CPU run stays short): frames and bytes in
  the banks, process RSS (/proc/self/statm).

--quick runs sali_sample.yaml (small CNN) at its INPUT.SIZE_TEST (96x128): 1 timed frame,
a memory run of 3 and 6 frames; explicit flags still override these settings.
"""

from __future__ import annotations

import argparse
import sys

import torch
import torch.nn as nn

import vps_d2.methods.sali  # noqa: F401  (registers MODEL.SALI)
from vps_d2.config import add_vps_config, get_cfg
from vps_d2.model_zoo import get_config_file
from vps_d2.modeling import build_model
from vps_d2.utils.benchmark import (
    add_common_arguments,
    add_memory_arguments,
    count_flops,
    count_parameters,
    markdown_table,
    parse_benchmark_args,
    streaming_memory,
    synthetic_frames,
    time_callable,
    write_json,
)

CONFIGS = {
    "pvt_v2_b2": "sali_pvtv2_b2.yaml",
    "pvt_v2_b5": "sali_pvtv2_b5.yaml",
    "sample": "sali_sample.yaml",
}
QUICK = {
    "backbones": ["sample"],
    "size": 0,
    "timed_frames": 1,
    "memory_frames": [3, 6],
    "memory_size": 0,
    "memory_backbone": "sample",
}


def build(backbone: str, size: int, device: str):
    """SALI of ``backbone``'s config (pvt_v2_b2's for other timm names; "sample": the small
    CNN of sali_sample.yaml) with random init, tested at size x size (0: the config's
    INPUT.SIZE_TEST)."""
    cfg = get_cfg()
    add_vps_config(cfg)
    cfg.merge_from_file(get_config_file(CONFIGS.get(backbone, CONFIGS["pvt_v2_b2"])))
    if backbone != "sample":
        cfg.MODEL.BACKBONE.TIMM_NAME = backbone
    cfg.MODEL.BACKBONE.PRETRAINED, cfg.MODEL.BACKBONE.WEIGHTS = False, ""
    cfg.MODEL.DEVICE = device
    if size:
        cfg.INPUT.SIZE_TEST = (size, size)
    torch.manual_seed(0)
    return build_model(cfg).eval(), cfg


def fill_memory(model, frames: int) -> None:
    """Reset, stream one frame (sets the per-level sizes), then write random frames until
    each bank holds ``frames`` frames (values as the model would store them)."""
    model.reset()
    x = torch.randn(1, 3, *model.test_size, device=model.device)
    model.step_logits(x)
    with torch.inference_mode():
        for bank, kp, vp in zip(model.banks, model.lim.key_proj, model.lim.value_proj):
            n = bank.elements_per_frame
            t = model._t
            while bank.num_frames < frames:
                t = max(bank.stored_frames()) + bank.write_every
                bank.write(
                    torch.randn(1, kp.out_channels, n, device=x.device),
                    torch.randn(1, vp.out_channels, n, device=x.device),
                    t,
                )
        model._t = t + 1  # next step reads, does not write (t + 1 is not a write frame)


class _Step(nn.Module):
    """One streaming step without state changes other than the read statistics:
    image (1, 3, H, W) -> final logits. The neighbour's features are this frame's (same cost
    as cached features of the previous frame)."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        m = self.model
        cur = m.extract(x)
        fs = m.short_term(cur, cur)
        keys, values = m.lim.encode(fs)
        fl = m.lim.read_banks(keys, values, m.empty_read)
        return m.decode(m.long_term_output(fs, fl))[m.final_output]


def gflops(model, memory_frames: int) -> tuple[float, list[str]]:
    """GFLOPs of one streaming step with ``memory_frames`` frames in each bank, and the ops
    fvcore did not count."""
    fill_memory(model, memory_frames)
    x = torch.randn(1, 3, *model.test_size, device=model.device)
    flops = count_flops(_Step(model), x)
    return flops.gflops, flops.not_counted


def time_steps(model, memory_frames: int, n: int) -> float:
    """Median ms of ``n`` streaming steps (after one warm-up) with ``memory_frames`` frames in
    the banks; every step reads the banks and none writes."""
    fill_memory(model, memory_frames)
    x = torch.randn(1, 3, *model.test_size, device=model.device)

    def setup(_i: int) -> tuple:
        model._t = model._t if model._t % model.banks[0].write_every else model._t + 1
        return (x,)

    return time_callable(model.step_logits, n, warmup=1, setup=setup, device=model.device).median_ms


def memory_run(backbone: str, size: int, checkpoints: list[int], device: str) -> dict:
    model, _ = build(backbone, size, device)
    model.reset()
    h, w = model.test_size
    frames = synthetic_frames(max(checkpoints), h, w)
    probe = lambda: {
        "bank_frames": [b.num_frames for b in model.banks],
        "bank_mib": sum(b.nbytes() for b in model.banks) / 2**20,
    }
    return streaming_memory(map(model.step, frames), checkpoints, probe)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--backbones",
        nargs="*",
        default=["pvt_v2_b2", "pvt_v2_b5"],
        help="models of the parameters/GFLOPs/speed table (none: skip it; "
        "'sample': sali_sample.yaml)",
    )
    p.add_argument(
        "--size",
        type=int,
        default=352,
        help="frame size for GFLOPs and timing (0: the config's INPUT.SIZE_TEST)",
    )
    p.add_argument("--timed-frames", type=int, default=3, help="timed steps per memory state")
    add_memory_arguments(p)
    p.add_argument("--memory-backbone", default="pvt_v2_b2")
    add_common_arguments(
        p, quick_help="smoke run: sali_sample.yaml at its size, 1 timed frame, 6 frames"
    )
    return parse_benchmark_args(p, argv, QUICK)


def main(argv=None) -> int:
    args = parse_args(argv)
    results = {"device": args.device, "threads": torch.get_num_threads(), "size": args.size}
    rows = []
    size_text = f"{args.size}x{args.size}"
    for name in args.backbones:
        model, cfg = build(name, args.size, args.device)
        size_text = "x".join(str(s) for s in model.test_size)
        if not args.size:
            results["size"] = list(model.test_size)
        cap = cfg.MODEL.SALI.MEMORY.CAPACITY
        n_all = count_parameters(model)
        n_bb = count_parameters(model.backbone)
        g1, skipped = gflops(model, 1)
        gfull, _ = gflops(model, cap)
        bank_full = sum(b.nbytes() for b in model.banks) / 2**20
        ms1 = time_steps(model, 1, args.timed_frames)
        msfull = time_steps(model, cap, args.timed_frames)
        r = {
            "params_m": n_all / 1e6,
            "backbone_params_m": n_bb / 1e6,
            "sali_params_m": (n_all - n_bb) / 1e6,
            "gflops_mem1": g1,
            "gflops_memfull": gfull,
            "ms_mem1": ms1,
            "ms_memfull": msfull,
            "bank_mib_full": bank_full,
            "capacity": cap,
            "not_counted": skipped,
        }
        results[name] = r
        rows.append(
            [
                f"SALI {name}",
                f"{r['params_m']:.2f} ({r['backbone_params_m']:.2f} + {r['sali_params_m']:.2f})",
                f"{g1:.2f} / {gfull:.2f}",
                f"{ms1:.0f} / {msfull:.0f}",
                f"{bank_full:.2f}",
            ]
        )
        del model
    mem = {}
    if args.memory_frames:
        mem = memory_run(args.memory_backbone, args.memory_size, args.memory_frames, args.device)
        results["memory_run"] = {
            "backbone": args.memory_backbone,
            "size": args.memory_size,
            "checkpoints": mem,
        }
    dev = f"{args.device}, {results['threads']} threads"
    if rows:
        print(f"\nSALI benchmark ({dev}; random init; {size_text} input)\n")
        header = [
            "model",
            "params M (backbone + SALI)",
            f"GFLOPs/frame, memory 1 / {cap} frames",
            f"ms/frame, memory 1 / {cap} frames",
            f"bank MiB at {cap} frames",
        ]
        print("\n".join(markdown_table(header, rows)))
        skipped = sorted({op for n in args.backbones for op in results[n]["not_counted"]})
        print(
            f"\nOps not counted by fvcore: {', '.join(skipped) or 'none'}; "
            "torchvision::deform_conv2d and aten::scaled_dot_product_attention are counted by "
            "the handles of vps_d2.utils.benchmark."
        )
    if mem:
        msize = f"{args.memory_size}x{args.memory_size}" if args.memory_size else "the config's"
        print(f"\nStreaming memory ({args.memory_backbone}, {msize} frames, {dev}):\n")
        print(
            "\n".join(
                markdown_table(
                    [
                        "frames streamed",
                        "frames in each bank (1/8, 1/16, 1/32)",
                        "bank MiB",
                        "RSS MiB",
                    ],
                    [
                        [n, str(st["bank_frames"]), st["bank_mib"], st["rss_mib"]]
                        for n, st in mem.items()
                    ],
                    fmt=[None, None, "{:.3f}", "{:.0f}"],
                )
            )
        )
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
