#!/usr/bin/env python
"""Benchmark SALI: parameters, GFLOPs, streaming speed and memory (prints a Markdown table).

    python tools/benchmark_sali.py                       # pvt_v2_b2 and pvt_v2_b5, CPU
    python tools/benchmark_sali.py --backbones pvt_v2_b2 --memory-frames 100 1000 \
        --memory-size 64 --device cpu --threads 2

All models are randomly initialised (nothing is downloaded). Per backbone:

* parameters (total, backbone, SALI's own modules);
* GFLOPs of one streaming step at --size (the backbone runs once per frame: the neighbour's
  features are cached), counted by fvcore's FlopCountAnalysis (one multiply-add = one
  flop, fvcore's convention). fvcore has no handle for torchvision::deform_conv2d nor for
  aten::scaled_dot_product_attention (PVTv2's attention): this script registers both
  (deformable conv: out elements x Cin/groups x k x k, the bilinear sampling not counted;
  attention: Lq x Lk x (d + dv) per head). Element-wise ops, softmax, topk and gather are
  not counted (fvcore's default).
  Given with a memory of 1 frame and of MEMORY.CAPACITY frames (pre-filled);
* streaming ms/frame at --size, same two memory states (median of --timed-frames);
* memory after 100 and 1,000 streamed frames (--memory-frames) at --memory-size x
  --memory-size (smaller than --size so that the CPU run stays short): frames and bytes in
  the banks, process RSS.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn as nn

try:
    import vps_d2  # noqa: F401
except ImportError:  # source checkout without installation
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import vps_d2.methods.sali  # noqa: F401,E402  (registers MODEL.SALI)
from vps_d2.config import add_vps_config, get_cfg  # noqa: E402
from vps_d2.modeling import build_model  # noqa: E402
from vps_d2.utils.file_io import atomic_write_json  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = {"pvt_v2_b2": "configs/sali_pvtv2_b2.yaml", "pvt_v2_b5": "configs/sali_pvtv2_b5.yaml"}


def deform_conv2d_flop_jit(inputs, outputs) -> int:
    """fvcore handle for torchvision::deform_conv2d: multiply-adds of the convolution."""
    from fvcore.nn.jit_handles import get_shape

    weight = get_shape(inputs[1])  # Cout, Cin/groups, kh, kw
    out = get_shape(outputs[0])  # N, Cout, H, W
    n = 1
    for s in out:
        n *= s
    return n * weight[1] * weight[2] * weight[3]


def sdpa_flop_jit(inputs, outputs) -> int:
    """fvcore handle for aten::scaled_dot_product_attention (PVTv2's attention):
    q (..., Lq, d), k (..., Lk, d), v (..., Lk, dv): Lq*Lk*d + Lq*Lk*dv multiply-adds."""
    from fvcore.nn.jit_handles import get_shape

    q, k, v = (get_shape(inputs[i]) for i in range(3))
    batch = 1
    for s in q[:-2]:
        batch *= s
    return batch * q[-2] * k[-2] * (q[-1] + v[-1])


def build(backbone: str, size: int, device: str):
    cfg = get_cfg()
    add_vps_config(cfg)
    cfg.merge_from_file(os.path.join(ROOT, CONFIGS.get(backbone, CONFIGS["pvt_v2_b2"])))
    cfg.MODEL.BACKBONE.TIMM_NAME = backbone
    cfg.MODEL.BACKBONE.PRETRAINED, cfg.MODEL.BACKBONE.WEIGHTS = False, ""
    cfg.MODEL.DEVICE = device
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
                bank.write(torch.randn(1, kp.out_channels, n, device=x.device),
                           torch.randn(1, vp.out_channels, n, device=x.device), t)  # fmt: skip
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
    from fvcore.nn import FlopCountAnalysis

    fill_memory(model, memory_frames)
    x = torch.randn(1, 3, *model.test_size, device=model.device)
    with torch.no_grad():
        fca = FlopCountAnalysis(_Step(model), x)
        fca.set_op_handle("torchvision::deform_conv2d", deform_conv2d_flop_jit)
        fca.set_op_handle("aten::scaled_dot_product_attention", sdpa_flop_jit)
        fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        total = fca.total()
        skipped = sorted(fca.unsupported_ops())
    return total / 1e9, skipped


def time_steps(model, memory_frames: int, n: int) -> float:
    fill_memory(model, memory_frames)
    x = torch.randn(1, 3, *model.test_size, device=model.device)
    times = []
    for i in range(n + 1):
        model._t = model._t if model._t % model.banks[0].write_every else model._t + 1
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        model.step_logits(x)
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        if i:  # the first call warms up
            times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def rss_mib() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # peak, Linux KiB


def memory_run(backbone: str, size: int, checkpoints: list[int], device: str) -> dict:
    model, _ = build(backbone, size, device)
    model.reset()
    g = torch.Generator().manual_seed(0)
    base = torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=g)
    out = {}
    for t in range(max(checkpoints)):
        model.step({"image": torch.roll(base, t % 11, 2), "height": size, "width": size})
        if t + 1 in checkpoints:
            out[t + 1] = {
                "bank_frames": [b.num_frames for b in model.banks],
                "bank_mib": sum(b.nbytes() for b in model.banks) / 2**20,
                "rss_mib": rss_mib(),
            }
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backbones", nargs="*", default=["pvt_v2_b2", "pvt_v2_b5"],
                   help="models of the parameters/GFLOPs/speed table (none: skip it)")  # fmt: skip
    p.add_argument("--size", type=int, default=352, help="frame size for GFLOPs and timing")
    p.add_argument("--timed-frames", type=int, default=3, help="timed steps per memory state")
    p.add_argument("--memory-frames", type=int, nargs="*", default=[100, 1000],
                   help="checkpoints of the streaming memory run (none: skip it)")  # fmt: skip
    p.add_argument("--memory-size", type=int, default=64, help="frame size of the memory run")
    p.add_argument("--memory-backbone", default="pvt_v2_b2")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--json", default="", help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = {"device": args.device, "threads": torch.get_num_threads(), "size": args.size}
    rows = []
    for name in args.backbones:
        model, cfg = build(name, args.size, args.device)
        cap = cfg.MODEL.SALI.MEMORY.CAPACITY
        n_all = sum(p.numel() for p in model.parameters())
        n_bb = sum(p.numel() for p in model.backbone.parameters())
        g1, skipped = gflops(model, 1)
        gfull, _ = gflops(model, cap)
        bank_full = sum(b.nbytes() for b in model.banks) / 2**20
        ms1 = time_steps(model, 1, args.timed_frames)
        msfull = time_steps(model, cap, args.timed_frames)
        r = {"params_m": n_all / 1e6, "backbone_params_m": n_bb / 1e6,
             "sali_params_m": (n_all - n_bb) / 1e6, "gflops_mem1": g1,
             "gflops_memfull": gfull, "ms_mem1": ms1, "ms_memfull": msfull,
             "bank_mib_full": bank_full, "capacity": cap, "not_counted": skipped}  # fmt: skip
        results[name] = r
        rows.append(
            f"| SALI {name} | {r['params_m']:.2f} ({r['backbone_params_m']:.2f} + "
            f"{r['sali_params_m']:.2f}) | {g1:.2f} / {gfull:.2f} | {ms1:.0f} / {msfull:.0f} | "
            f"{bank_full:.2f} |"
        )
        del model
    mem = {}
    if args.memory_frames:
        mem = memory_run(args.memory_backbone, args.memory_size, args.memory_frames, args.device)
        results["memory_run"] = {"backbone": args.memory_backbone, "size": args.memory_size,
                                 "checkpoints": mem}  # fmt: skip
    dev = f"{args.device}, {results['threads']} threads"
    if rows:
        print(f"\nSALI benchmark ({dev}; random init; {args.size}x{args.size} input)\n")
        print(
            "| model | params M (backbone + SALI) | GFLOPs/frame, memory 1 / "
            f"{cap} frames | ms/frame, memory 1 / {cap} frames | bank MiB at {cap} frames |"
        )
        print("|---|---|---|---|---|")
        for row in rows:
            print(row)
        skipped = sorted({op for n in args.backbones for op in results[n]["not_counted"]})
        print(
            f"\nOps not counted by fvcore: {', '.join(skipped) or 'none'}; "
            "torchvision::deform_conv2d and aten::scaled_dot_product_attention are counted by "
            "this script's handles."
        )
    if mem:
        print(f"\nStreaming memory ({args.memory_backbone}, {args.memory_size}x"
              f"{args.memory_size} frames, {dev}):\n")  # fmt: skip
        print("| frames streamed | frames in each bank (1/8, 1/16, 1/32) | bank MiB | RSS MiB |")
        print("|---|---|---|---|")
        for n, st in mem.items():
            print(f"| {n} | {st['bank_frames']} | {st['bank_mib']:.3f} | {st['rss_mib']:.0f} |")
    if args.json:
        atomic_write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
