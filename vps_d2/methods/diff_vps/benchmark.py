"""Benchmark Diff-VPS: sizes per component vs the public code, speed, streaming memory.

    python -m vps_d2.methods.diff_vps.benchmark --threads 2
    python -m vps_d2.methods.diff_vps.benchmark --steps 1 3 10 --timed-frames 3 \
        --memory-frames 100 1000
    python -m vps_d2.methods.diff_vps.benchmark --quick     # smoke run, diff_vps_sample.yaml

Models are built from diff_vps_pvtv2_b3.yaml (found with ``vps_d2.model_zoo.get_config_file``)
with random init (nothing is read or downloaded). Printed, each in a Markdown table:

* parameters (M) and GFLOPs per component, for the paper configuration with SegFormer
  MiT-b3's MLP ratios (4, 4, 4, 4) (the public code's encoders) and with timm's pvt_v2_b3
  ratios (8, 8, 4, 4), next to the public code's measured sizes (methods.md, section 3) and
  the ratio ours / theirs. GFLOPs by fvcore's FlopCountAnalysis at --size x --size (224)
  through ``vps_d2.utils.benchmark.count_flops``, one multiply-add = one flop (fvcore's
  convention); aten::scaled_dot_product_attention (the encoders' attention) is counted as
  Lq x Lk x (d + dv) per head; element-wise ops, softmax and interpolation are not counted.
  "training sample" = one generator forward (image encoder on the target, temporal encoder
  on the 4 previous frames, FPN, one denoising pass, reconstruction); "inference frame" =
  encoders + FPN + SAMPLE_STEPS x head, counted both as the public code computes it (the
  temporal encoder re-runs on the 4 previous frames of every frame) and as vps_d2 streams it
  (each frame's temporal features are computed once and cached for the next 4 frames);
* CPU ms/frame of the streaming step (``model.step`` on a uint8 frame, inference mode) for
  each --steps (DDIM steps), median of --timed-frames after one warm-up frame, on --threads
  torch threads (0: torch's default);
* streaming memory after each of --memory-frames frames at --memory-size (the cached
  temporal features, the process RSS from /proc/self/statm).

--quick runs diff_vps_sample.yaml (small CNN encoders) at its INPUT.SIZE_TEST (96x128)
instead, without the public code's columns: 1 DDIM step, 1 timed frame, a memory run of 3
and 6 frames; explicit flags still override these settings.
"""

from __future__ import annotations

import argparse
import sys

import torch

from vps_d2.config import add_vps_config, get_cfg
from vps_d2.methods.diff_vps.diffusion import cosine_log_snr
from vps_d2.model_zoo import get_config_file
from vps_d2.modeling import build_model
from vps_d2.utils.benchmark import (
    add_common_arguments,
    add_memory_arguments,
    count_flops,
    markdown_table,
    params_m,
    parse_benchmark_args,
    ratio_cell,
    streaming_memory,
    synthetic_frames,
    time_callable,
    write_json,
)

CONFIG = "diff_vps_pvtv2_b3.yaml"
SAMPLE = "diff_vps_sample.yaml"
RATIOS = {"MiT-b3 ratios (4,4,4,4)": [4, 4, 4, 4], "timm ratios (8,8,4,4)": [8, 8, 4, 4]}
SAMPLE_LABEL = "sample (small CNN)"
QUICK = {"size": 0, "steps": [1], "timed_frames": 1, "memory_frames": [3, 6], "memory_size": 0}

# The public code's measured sizes (methods.md, section 3: fvcore, 224x224, random init).
PUBLIC_PARAMS_M = {
    "image encoder": 44.07,
    "temporal encoder": 44.07,
    "FPN": 0.21,
    "latent transform": 0.44,
    "time MLP": 1.07,
    "decode head (incl. FiLM, cls, box)": 8.88,
    "  of which FiLM": 6.30,
    "  of which class head": 0.0046,
    "  of which box head": 0.0175,
    "reconstruction": 3.15,
    "generator": 102.06,
    "discriminator": 23.84,
}
PUBLIC_GFLOPS = {
    "temporal encoder (4 frames)": 24.7,
    "training sample (generator)": 47.9,
    "encoders per inference frame": 30.9,
    "head per DDIM step": 9.05,
    "inference frame, 3 steps (public code's computation)": 58.2,
}


def build(ratios, device: str, size: int, steps: int = 3):
    """Diff-VPS with random init: diff_vps_pvtv2_b3.yaml with the encoders' MLP ``ratios``
    (None: diff_vps_sample.yaml), ``steps`` DDIM steps, tested at size x size (0: the
    config's INPUT.SIZE_TEST)."""
    cfg = add_vps_config(get_cfg())
    cfg.merge_from_file(get_config_file(SAMPLE if ratios is None else CONFIG))
    if ratios is not None:
        cfg.MODEL.BACKBONE.TIMM_KWARGS = ["mlp_ratios", list(ratios), "drop_path_rate", 0.1]
    cfg.MODEL.BACKBONE.PRETRAINED, cfg.MODEL.BACKBONE.WEIGHTS = False, ""
    cfg.MODEL.DIFF_VPS.DISCRIMINATOR.WEIGHTS = ""
    cfg.MODEL.DIFF_VPS.DIFFUSION.SAMPLE_STEPS = steps
    cfg.MODEL.DEVICE = device
    if size:
        cfg.INPUT.SIZE_TEST = (size, size)
    torch.manual_seed(0)
    return build_model(cfg).eval(), cfg


def param_table(model) -> dict[str, float]:
    head = (model.decode_head, model.class_head, model.box_head)
    gen = [m for name, m in model.named_children() if name != "discriminator"]
    return {
        "image encoder": params_m(model.backbone.image),
        "temporal encoder": params_m(model.backbone.temporal),
        "FPN": params_m(model.fpn),
        "latent transform": params_m(model.latent_fusion, model.mask_embed),
        "time MLP": params_m(model.time_embed),
        "decode head (incl. FiLM, cls, box)": params_m(*head),
        "  of which FiLM": params_m(model.decode_head.film),
        "  of which class head": params_m(model.class_head),
        "  of which box head": params_m(model.box_head),
        "reconstruction": params_m(model.reconstruction),
        "generator": params_m(*gen),
        "discriminator": params_m(model.discriminator),
    }


def _gflops(model, fn, *inputs) -> float:
    return count_flops(fn, inputs, owner=model).gflops


def gflops_table(model, steps: int) -> dict[str, float]:
    """GFLOPs per component at the model's test size (H, W); inputs (1, 3, H, W)."""
    dev = model.device
    hw = tuple(model.test_size)
    x = torch.randn(1, 3, *hw, device=dev)
    prev = torch.randn(1, 4, 3, *hw, device=dev)
    bb = model.backbone
    with torch.no_grad():
        spatial = bb.image_features(x)
        temporal = bb.temporal_features(prev)
        priors = model.fpn([s + r for s, r in zip(spatial, temporal)])
    z = torch.randn(1, model.mask_embed.embedding.embedding_dim, *priors[0].shape[-2:], device=dev)
    ls = cosine_log_snr(torch.full((1,), 0.5, device=dev))
    g = {
        "image encoder (1 frame)": _gflops(model, bb.image_features, x),
        "temporal encoder (4 frames)": _gflops(model, bb.temporal_features, prev),
        "FPN": _gflops(model, lambda *f: model.fpn(list(f)), *spatial),
        "head per DDIM step": _gflops(
            model, lambda z_, *p: model.denoise(z_, list(p), ls), z, *priors
        ),
        "reconstruction": _gflops(model, lambda *r: model.reconstruction(list(r), hw), *temporal),
        "discriminator (1 frame)": _gflops(model, model.discriminator, x),
    }
    enc1 = g["image encoder (1 frame)"]
    t1 = g["temporal encoder (4 frames)"] / 4
    g["training sample (generator)"] = sum(
        g[k]
        for k in (
            "image encoder (1 frame)",
            "temporal encoder (4 frames)",
            "FPN",
            "head per DDIM step",
            "reconstruction",
        )
    )
    g["encoders per inference frame"] = enc1 + 4 * t1
    g[f"inference frame, {steps} steps (public code's computation)"] = (
        enc1 + 4 * t1 + g["FPN"] + steps * g["head per DDIM step"]
    )
    g[f"inference frame, {steps} steps (vps_d2 streaming, cached)"] = (
        enc1 + t1 + g["FPN"] + steps * g["head per DDIM step"]
    )
    return g


def time_stream(model, n: int) -> float:
    """Median ms of ``n`` streamed frames (a new random uint8 frame each) after one warm-up
    frame, at the model's test size."""
    g = torch.Generator().manual_seed(0)
    h, w = model.test_size
    model.reset()

    def frame(i: int) -> tuple:
        img = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)
        return ({"image": img, "height": h, "width": w, "video_id": "bench", "frame_index": i},)

    return time_callable(model.step, n, warmup=1, setup=frame, device=model.device).median_ms


def memory_run(ratios, size: int, checkpoints: list[int], device: str) -> dict:
    model, _ = build(ratios, device, size)
    model.reset()
    h, w = model.test_size

    def probe() -> dict:
        cached = sum(f.numel() * f.element_size() for feats in model._buffer for f in feats)
        return {"buffer_frames": len(model._buffer), "buffer_mib": cached / 2**20}

    frames = synthetic_frames(max(checkpoints), h, w)
    return streaming_memory(map(model.step, frames), checkpoints, probe)


def _params_cell(v: float) -> str:
    return f"{v:.4f}" if v < 0.1 else f"{v:.2f}"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--size",
        type=int,
        default=224,
        help="frame size for GFLOPs and timing (0: the config's INPUT.SIZE_TEST)",
    )
    p.add_argument(
        "--steps",
        type=int,
        nargs="*",
        default=[1, 3, 10],
        help="DDIM steps of the timing table (none: skip it)",
    )
    p.add_argument("--timed-frames", type=int, default=3, help="timed frames per setting")
    add_memory_arguments(p)
    add_common_arguments(
        p, quick_help="smoke run: diff_vps_sample.yaml at its size, 1 step, 1 timed frame"
    )
    return parse_benchmark_args(p, argv, QUICK)


def main(argv=None) -> int:
    args = parse_args(argv)
    dev = f"{args.device}, {torch.get_num_threads()} threads"
    variants = {SAMPLE_LABEL: None} if args.quick else RATIOS
    main_ratios = next(iter(variants.values()))
    results: dict = {
        "device": args.device,
        "threads": torch.get_num_threads(),
        "size": args.size,
        "params_m": {},
        "gflops": {},
    }
    hw = f"{args.size}x{args.size}"
    for label, ratios in variants.items():
        model, cfg = build(ratios, args.device, args.size)
        hw = "x".join(str(s) for s in model.test_size)
        if not args.size:
            results["size"] = list(model.test_size)
        results["params_m"][label] = param_table(model)
        results["gflops"][label] = gflops_table(model, cfg.MODEL.DIFF_VPS.DIFFUSION.SAMPLE_STEPS)
        del model
    labels = list(variants)
    # the public code's columns (and the ratio to them) for the paper configuration only
    public = not args.quick
    extra = ["public code", "ratio (MiT-b3 ratios)"] if public else []
    n = len(labels)
    print(
        f"\nDiff-VPS parameters (M), {'paper' if public else 'sample'} configuration "
        f"(random init; {dev})\n"
    )
    rows = [
        [k, *(results["params_m"][lab][k] for lab in labels)]
        + ([theirs, ratio_cell(results["params_m"][labels[0]][k], theirs)] if public else [])
        for k, theirs in PUBLIC_PARAMS_M.items()
    ]
    print(
        "\n".join(
            markdown_table(
                ["component", *labels, *extra],
                rows,
                fmt=[None] + [_params_cell] * n + [None] * len(extra),
            )
        )
    )
    print(f"\nDiff-VPS GFLOPs (fvcore, {hw}, 1 multiply-add = 1 flop)\n")
    rows = [
        [k, *(results["gflops"][lab][k] for lab in labels)]
        + (
            [
                PUBLIC_GFLOPS.get(k),
                ratio_cell(results["gflops"][labels[0]][k], PUBLIC_GFLOPS.get(k)),
            ]
            if public
            else []
        )
        for k in results["gflops"][labels[0]]
    ]
    print(
        "\n".join(
            markdown_table(
                ["quantity", *labels, *extra],
                rows,
                fmt=[None] + ["{:.2f}"] * n + [None] * len(extra),
            )
        )
    )
    if args.steps:
        timing = {}
        for steps in args.steps:
            model, _ = build(main_ratios, args.device, args.size, steps)
            with torch.inference_mode():
                timing[steps] = time_stream(model, args.timed_frames)
            del model
        results["ms_per_frame"] = timing
        print(
            f"\nStreaming ms/frame ({labels[0].split(' (')[0]}, {hw}, {dev}; median of "
            f"{args.timed_frames} frames)\n"
        )
        ref = timing.get(3)
        print(
            "\n".join(
                markdown_table(
                    ["DDIM steps", "ms/frame", "vs 3 steps"],
                    [[steps, ms, ratio_cell(ms, ref, "{:.2f}x")] for steps, ms in timing.items()],
                    fmt=[None, "{:.0f}", None],
                )
            )
        )
    if args.memory_frames:
        mem = memory_run(main_ratios, args.memory_size, args.memory_frames, args.device)
        results["memory_run"] = {"size": args.memory_size, "checkpoints": mem}
        msize = f"{args.memory_size}x{args.memory_size}" if args.memory_size else hw
        print(f"\nStreaming memory ({labels[0].split(' (')[0]}, {msize} frames, {dev})\n")
        print(
            "\n".join(
                markdown_table(
                    ["frames streamed", "cached frames", "cache MiB", "RSS MiB"],
                    [
                        [n, st["buffer_frames"], st["buffer_mib"], st["rss_mib"]]
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
