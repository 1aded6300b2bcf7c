#!/usr/bin/env python
"""Benchmark Diff-VPS: sizes per component vs the public code, speed, streaming memory.

    python tools/benchmark_diff_vps.py --threads 2
    python tools/benchmark_diff_vps.py --steps 1 3 10 --timed-frames 3 --memory-frames 100 1000

Models are built from configs/diff_vps_pvtv2_b3.yaml with random init (nothing is read or
downloaded). Printed, each in a Markdown table:

* parameters (M) and GFLOPs per component, for the paper configuration with SegFormer
  MiT-b3's MLP ratios (4, 4, 4, 4) (the public code's encoders) and with timm's pvt_v2_b3
  ratios (8, 8, 4, 4), next to the public code's measured sizes (methods.md, section 3) and
  the ratio ours / theirs. GFLOPs by fvcore's FlopCountAnalysis at --size (224), one
  multiply-add = one flop (fvcore's convention); aten::scaled_dot_product_attention (the
  encoders' attention) is counted by the handle of tools/benchmark_sali.py (Lq x Lk x (d +
  dv) per head); element-wise ops, softmax and interpolation are not counted. "training
  sample" = one generator forward (image encoder on the target, temporal encoder on the 4
  previous frames, FPN, one denoising pass, reconstruction); "inference frame" = encoders +
  FPN + SAMPLE_STEPS x head, counted both as the public code computes it (the temporal
  encoder re-runs on the 4 previous frames of every frame) and as vps_d2 streams it (each
  frame's temporal features are computed once and cached for the next 4 frames);
* CPU ms/frame of the streaming step for each --steps (DDIM steps), median of
  --timed-frames after one warm-up frame;
* streaming memory after each of --memory-frames frames at --memory-size (the cached
  temporal features, the process RSS).
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
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchmark_sali import rss_mib, sdpa_flop_jit  # noqa: E402

from vps_d2.config import add_vps_config, get_cfg  # noqa: E402
from vps_d2.methods.diff_vps.diffusion import cosine_log_snr  # noqa: E402
from vps_d2.modeling import build_model  # noqa: E402
from vps_d2.utils.file_io import atomic_write_json  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "diff_vps_pvtv2_b3.yaml")
RATIOS = {"MiT-b3 ratios (4,4,4,4)": [4, 4, 4, 4], "timm ratios (8,8,4,4)": [8, 8, 4, 4]}

# The public code's measured sizes (methods.md, section 3: fvcore, 224x224, random init).
PUBLIC_PARAMS_M = {
    "image encoder": 44.07, "temporal encoder": 44.07, "FPN": 0.21, "latent transform": 0.44,
    "time MLP": 1.07, "decode head (incl. FiLM, cls, box)": 8.88, "  of which FiLM": 6.30,
    "  of which class head": 0.0046, "  of which box head": 0.0175, "reconstruction": 3.15,
    "generator": 102.06, "discriminator": 23.84,
}  # fmt: skip
PUBLIC_GFLOPS = {"temporal encoder (4 frames)": 24.7, "training sample (generator)": 47.9,
                 "encoders per inference frame": 30.9, "head per DDIM step": 9.05,
                 "inference frame, 3 steps (public code's computation)": 58.2}  # fmt: skip


def build(ratios, device: str, size: int, steps: int = 3):
    cfg = add_vps_config(get_cfg())
    cfg.merge_from_file(CONFIG)
    cfg.MODEL.BACKBONE.TIMM_KWARGS = ["mlp_ratios", list(ratios), "drop_path_rate", 0.1]
    cfg.MODEL.BACKBONE.PRETRAINED, cfg.MODEL.BACKBONE.WEIGHTS = False, ""
    cfg.MODEL.DIFF_VPS.DISCRIMINATOR.WEIGHTS = ""
    cfg.MODEL.DIFF_VPS.DIFFUSION.SAMPLE_STEPS = steps
    cfg.MODEL.DEVICE = device
    cfg.INPUT.SIZE_TEST = (size, size)
    torch.manual_seed(0)
    return build_model(cfg).eval(), cfg


def _n(*modules) -> float:
    return sum(p.numel() for m in modules if m is not None for p in m.parameters()) / 1e6


def param_table(model) -> dict[str, float]:
    head = (model.decode_head, model.class_head, model.box_head)
    gen = [m for name, m in model.named_children() if name != "discriminator"]
    return {
        "image encoder": _n(model.backbone.image),
        "temporal encoder": _n(model.backbone.temporal),
        "FPN": _n(model.fpn),
        "latent transform": _n(model.latent_fusion, model.mask_embed),
        "time MLP": _n(model.time_embed),
        "decode head (incl. FiLM, cls, box)": _n(*head),
        "  of which FiLM": _n(model.decode_head.film),
        "  of which class head": _n(model.class_head),
        "  of which box head": _n(model.box_head),
        "reconstruction": _n(model.reconstruction),
        "generator": _n(*gen),
        "discriminator": _n(model.discriminator),
    }


class _Call(nn.Module):
    """Wraps a callable so that fvcore can trace it."""

    def __init__(self, model, fn) -> None:
        super().__init__()
        self.model, self.fn = model, fn

    def forward(self, *args):
        return self.fn(*args)


def _gflops(model, fn, *inputs) -> float:
    from fvcore.nn import FlopCountAnalysis

    with torch.no_grad():
        fca = FlopCountAnalysis(_Call(model, fn), inputs)
        fca.set_op_handle("aten::scaled_dot_product_attention", sdpa_flop_jit)
        fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return fca.total() / 1e9


def gflops_table(model, size: int, steps: int) -> dict[str, float]:
    dev = model.device
    x = torch.randn(1, 3, size, size, device=dev)
    prev = torch.randn(1, 4, 3, size, size, device=dev)
    bb = model.backbone
    with torch.no_grad():
        spatial = bb.image_features(x)
        temporal = bb.temporal_features(prev)
        priors = model.fpn([s + r for s, r in zip(spatial, temporal)])
    z = torch.randn(1, model.mask_embed.embedding.embedding_dim, *priors[0].shape[-2:],
                    device=dev)  # fmt: skip
    ls = cosine_log_snr(torch.full((1,), 0.5, device=dev))
    g = {
        "image encoder (1 frame)": _gflops(model, bb.image_features, x),
        "temporal encoder (4 frames)": _gflops(model, bb.temporal_features, prev),
        "FPN": _gflops(model, lambda *f: model.fpn(list(f)), *spatial),
        "head per DDIM step": _gflops(model, lambda z_, *p: model.denoise(z_, list(p), ls),
                                      z, *priors),  # fmt: skip
        "reconstruction": _gflops(model, lambda *r: model.reconstruction(list(r), (size, size)),
                                  *temporal),  # fmt: skip
        "discriminator (1 frame)": _gflops(model, model.discriminator, x),
    }
    enc1 = g["image encoder (1 frame)"]
    t1 = g["temporal encoder (4 frames)"] / 4
    g["training sample (generator)"] = sum(g[k] for k in (
        "image encoder (1 frame)", "temporal encoder (4 frames)", "FPN", "head per DDIM step",
        "reconstruction"))  # fmt: skip
    g["encoders per inference frame"] = enc1 + 4 * t1
    g[f"inference frame, {steps} steps (public code's computation)"] = (
        enc1 + 4 * t1 + g["FPN"] + steps * g["head per DDIM step"])
    g[f"inference frame, {steps} steps (vps_d2 streaming, cached)"] = (
        enc1 + t1 + g["FPN"] + steps * g["head per DDIM step"])
    return g


def time_stream(model, size: int, n: int) -> float:
    g = torch.Generator().manual_seed(0)
    model.reset()
    times = []
    for i in range(n + 1):
        img = torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=g)
        frame = {"image": img, "height": size, "width": size, "video_id": "bench",
                 "frame_index": i}  # fmt: skip
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        model.step(frame)
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        if i:  # the first frame warms up
            times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def memory_run(size: int, checkpoints: list[int], device: str) -> dict:
    model, _ = build(RATIOS["MiT-b3 ratios (4,4,4,4)"], device, size)
    model.reset()
    g = torch.Generator().manual_seed(0)
    base = torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=g)
    out = {}
    for t in range(max(checkpoints)):
        model.step({"image": torch.roll(base, t % 11, 2), "height": size, "width": size,
                    "video_id": "long", "frame_index": t})  # fmt: skip
        if t + 1 in checkpoints:
            cached = sum(f.numel() * f.element_size() for feats in model._buffer for f in feats)
            out[t + 1] = {"buffer_frames": len(model._buffer), "buffer_mib": cached / 2**20,
                          "rss_mib": rss_mib()}  # fmt: skip
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=224, help="frame size for GFLOPs and timing")
    p.add_argument("--steps", type=int, nargs="*", default=[1, 3, 10],
                   help="DDIM steps of the timing table (none: skip it)")  # fmt: skip
    p.add_argument("--timed-frames", type=int, default=3, help="timed frames per setting")
    p.add_argument("--memory-frames", type=int, nargs="*", default=[100, 1000],
                   help="checkpoints of the streaming memory run (none: skip it)")  # fmt: skip
    p.add_argument("--memory-size", type=int, default=64, help="frame size of the memory run")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--json", default="", help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = f"{args.device}, {torch.get_num_threads()} threads"
    results: dict = {"device": args.device, "threads": torch.get_num_threads(),
                     "size": args.size, "params_m": {}, "gflops": {}}  # fmt: skip
    for label, ratios in RATIOS.items():
        model, cfg = build(ratios, args.device, args.size)
        results["params_m"][label] = param_table(model)
        results["gflops"][label] = gflops_table(model, args.size,
                                                cfg.MODEL.DIFF_VPS.DIFFUSION.SAMPLE_STEPS)
        del model
    labels = list(RATIOS)
    print(f"\nDiff-VPS parameters (M), paper configuration (random init; {dev})\n")
    print("| component | " + " | ".join(labels) + " | public code | ratio (MiT-b3 ratios) |")
    print("|---|" + "---|" * (len(labels) + 2))
    for k, theirs in PUBLIC_PARAMS_M.items():
        ours = [results["params_m"][lab][k] for lab in labels]
        print(f"| {k} | " + " | ".join(f"{v:.4f}" if v < 0.1 else f"{v:.2f}" for v in ours)
              + f" | {theirs} | {ours[0] / theirs:.3f} |")  # fmt: skip
    print(f"\nDiff-VPS GFLOPs (fvcore, {args.size}x{args.size}, 1 multiply-add = 1 flop)\n")
    print("| quantity | " + " | ".join(labels) + " | public code | ratio (MiT-b3 ratios) |")
    print("|---|" + "---|" * (len(labels) + 2))
    for k in results["gflops"][labels[0]]:
        ours = [results["gflops"][lab][k] for lab in labels]
        theirs = PUBLIC_GFLOPS.get(k)
        ratio = f"{ours[0] / theirs:.3f}" if theirs else ""
        print(f"| {k} | " + " | ".join(f"{v:.2f}" for v in ours)
              + f" | {theirs if theirs else ''} | {ratio} |")  # fmt: skip
    if args.steps:
        timing = {}
        for steps in args.steps:
            model, _ = build(RATIOS["MiT-b3 ratios (4,4,4,4)"], args.device, args.size, steps)
            with torch.inference_mode():
                timing[steps] = time_stream(model, args.size, args.timed_frames)
            del model
        results["ms_per_frame"] = timing
        print(f"\nStreaming ms/frame (MiT-b3 ratios, {args.size}x{args.size}, {dev}; median of "
              f"{args.timed_frames} frames)\n")  # fmt: skip
        print("| DDIM steps | ms/frame | vs 3 steps |")
        print("|---|---|---|")
        ref = timing.get(3)
        for steps, ms in timing.items():
            rel = f"{ms / ref:.2f}x" if ref else ""
            print(f"| {steps} | {ms:.0f} | {rel} |")
    if args.memory_frames:
        mem = memory_run(args.memory_size, args.memory_frames, args.device)
        results["memory_run"] = {"size": args.memory_size, "checkpoints": mem}
        print(f"\nStreaming memory (MiT-b3 ratios, {args.memory_size}x{args.memory_size} "
              f"frames, {dev})\n")  # fmt: skip
        print("| frames streamed | cached frames | cache MiB | RSS MiB |")
        print("|---|---|---|---|")
        for n, st in mem.items():
            print(f"| {n} | {st['buffer_frames']} | {st['buffer_mib']:.3f} | "
                  f"{st['rss_mib']:.0f} |")  # fmt: skip
    if args.json:
        atomic_write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
