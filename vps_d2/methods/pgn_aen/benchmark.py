#!/usr/bin/env python
"""Benchmark PGN+AEN: sizes per component vs the paper's Table 4, CPU speed, streaming memory.

    python tools/benchmark_pgn_aen.py --threads 2                 # everything, CPU
    python tools/benchmark_pgn_aen.py --skip-hrnet --timed-clips 0 --memory-frames

All models are randomly initialised (nothing is downloaded). Printed (Markdown):

1. parameters and GFLOPs per component (backbone, PGN = CFFM [its mining separately], CRL,
   CSA [its encoder separately], the rest = interaction + upsampling) for
   (a) the CFFM row of Table 4: the PGN alone (CFFM as published: TARGETS "last", the other
       five frames as references) on a 6-frame window at 256x448, Res2Net-50 (res2net50d);
       the paper gives 26.49 M / 82.98 G, which methods.md reproduces with the public code's
       backbone + full CFFM there;
   (b) AEN+CFFM on one 3-frame clip at 320x448 (configs/aen_cffm_res2net50.yaml): the first
       clip of a video (empty memory) and a clip with a full memory; paper 33.81 M / 93.48 G;
   (c) the same with HRNet-W48 (configs/aen_cffm_hrnet.yaml);
   next to the public code's measured sizes (../shared/reference/methods.md) and the ratios
   ours / paper. GFLOPs are fvcore's FlopCountAnalysis counts (one multiply-add = one
   flop, fvcore's convention, as the paper's figures are); fvcore has no handle for
   aten::scaled_dot_product_attention, this script registers one (Lq x Lk x (d + dv) per
   head); element-wise ops fvcore does not count are not counted;
2. CPU ms per frame streaming at 320x448 (consecutive 3-frame clips, memory full: the steady
   state; median of --timed-clips clips);
3. streaming memory after 100 and 1,000 frames (--memory-frames) at --memory-size (smaller
   than 320x448 so that the CPU run stays short): windows in the clip memory, its bytes,
   the process RSS.
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
import vps_d2.methods.pgn_aen  # noqa: F401,E402  (registers MODEL.PGN_AEN)
from vps_d2.config import add_vps_config, get_cfg  # noqa: E402
from vps_d2.modeling import build_model  # noqa: E402
from vps_d2.utils.file_io import atomic_write_json  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Paper, Table 4 (Res2Net-50): params M, GFLOPs.
PAPER = {"cffm": (26.49, 82.98), "aen_cffm": (33.81, 93.48)}
# Public code, measured (methods.md section 1): params M / GFLOPs per component.
PUBLIC = {
    "cffm": {"backbone": (23.669, None), "pgn": (2.827, None), "total": (26.496, 83.00)},
    "aen_cffm": {"backbone": (23.669, 38.7), "pgn": (None, 16.1), "pgn_linear": (None, 10.4),
                 "crl": (3.8, 1.6), "csa": (9.0, 11.7 + 2.7), "csa_encoder": (None, 11.7),
                 "total": (None, 93.48)},  # fmt: skip
    "hrnet": {"backbone": (65.3, 3 * 47.4)},
}


def sdpa_flop_jit(inputs, outputs) -> int:
    """fvcore handle for aten::scaled_dot_product_attention: q (..., Lq, d), k (..., Lk, d),
    v (..., Lk, dv) -> Lq*Lk*d + Lq*Lk*dv multiply-adds per batch and head."""
    from fvcore.nn.jit_handles import get_shape

    q, k, v = (get_shape(inputs[i]) for i in range(3))
    batch = 1
    for s in q[:-2]:
        batch *= s
    return batch * q[-2] * k[-2] * (q[-1] + v[-1])


def build(config: str, device: str, **overrides):
    """Model from a config file with random init; ``overrides``: dotted keys -> values."""
    cfg = get_cfg()
    add_vps_config(cfg)
    cfg.merge_from_file(os.path.join(ROOT, config))
    cfg.MODEL.BACKBONE.PRETRAINED, cfg.MODEL.BACKBONE.WEIGHTS = False, ""
    cfg.MODEL.DEVICE = device
    opts = []
    for k, v in overrides.items():
        opts += [k, v]
    cfg.merge_from_list(opts)
    torch.manual_seed(0)
    return build_model(cfg).eval(), cfg


class _Window(nn.Module):
    """One window through the model with a fixed memory: images (1, T, 3, H, W) -> logits."""

    def __init__(self, model, entries) -> None:
        super().__init__()
        self.model = model
        self.entries = entries

    def forward(self, x):
        return self.model.window(x, self.entries, x.shape[1])[0]["logits"]


def full_memory(model, t: int, size) -> list:
    """Entries of a memory filled to MEMORY_LENGTH windows by running the model."""
    mem = []
    x = torch.randn(1, t, 3, *size, device=model.device)
    with torch.no_grad():
        for _ in range(model.memory.maxlen):
            _, entry = model.window(x, mem, t)
            mem = (mem + [entry])[-model.memory.maxlen :]
    return mem


def params_m(module) -> float:
    return 0.0 if module is None else sum(p.numel() for p in module.parameters()) / 1e6


def measure(model, t: int, size, entries) -> dict:
    """Parameters (M) and GFLOPs per component of one window of t frames at size."""
    from fvcore.nn import FlopCountAnalysis

    x = torch.randn(1, t, 3, *size, device=model.device)
    with torch.no_grad():
        fca = FlopCountAnalysis(_Window(model, entries), x)
        fca.set_op_handle("aten::scaled_dot_product_attention", sdpa_flop_jit)
        fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        total = fca.total()
        by = fca.by_module()
    g = {k[len("model."):] if k.startswith("model.") else k: v / 1e9 for k, v in by.items()}
    aen = model.aen
    out = {
        "backbone": (params_m(model.backbone), g.get("backbone", 0.0)),
        "pgn": (params_m(model.pgn), g.get("pgn", 0.0)),
    }
    mining = getattr(model.pgn, "mining", None)
    if mining is not None:
        out["pgn_mining"] = (params_m(mining), g.get("pgn.mining", 0.0))
        out["pgn_linear"] = (params_m(model.pgn) - params_m(mining),
                             g.get("pgn", 0.0) - g.get("pgn.mining", 0.0))  # fmt: skip
    if aen is not None:
        out["crl"] = (params_m(aen.crl), g.get("aen.crl", 0.0))
        if aen.csa is not None:
            out["csa"] = (params_m(aen.csa), g.get("aen.csa", 0.0))
            out["csa_encoder"] = (params_m(aen.csa.encoder), g.get("aen.csa.encoder", 0.0))
    parts = ("backbone", "pgn", "crl", "csa")
    out["other"] = (0.0, total / 1e9 - sum(out[k][1] for k in parts if k in out))
    out["total"] = (params_m(model), total / 1e9)
    out["not_counted"] = sorted(fca.unsupported_ops())
    return out


def time_clips(model, size, n: int) -> float:
    """Median ms per frame of forward_clip in the steady state (memory full)."""
    t = model.clip_length
    model.reset()
    x = torch.randn(t, 3, *size, device=model.device)
    times = []
    with torch.no_grad():
        for i in range(model.memory.maxlen + n):
            t0 = time.perf_counter()
            model.forward_clip(x, model.memory, t)
            if model.device.type == "cuda":
                torch.cuda.synchronize()
            if i >= model.memory.maxlen:  # warm-up until the memory is full
                times.append(time.perf_counter() - t0)
    model.reset()
    return 1000 * statistics.median(times) / t


def rss_mib() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_run(config: str, size: int, checkpoints: list[int], device: str) -> dict:
    model, _ = build(config, device, **{"INPUT.SIZE_TEST": (size, size)})
    g = torch.Generator().manual_seed(0)
    base = torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=g)
    frames = ({"image": torch.roll(base, t % 11, 2), "height": size, "width": size,
               "video_id": "long", "frame_index": t} for t in range(max(checkpoints)))  # fmt: skip
    out = {}
    for t, _ in enumerate(model.stream(frames)):
        if t + 1 in checkpoints:
            out[t + 1] = {"windows": len(model.memory), "memory_mib": model.memory.nbytes() / 2**20,
                          "rss_mib": rss_mib()}  # fmt: skip
    return out


def _fmt(v, digits=2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def table(title: str, rows: dict, public: dict, paper: tuple | None) -> list[str]:
    lines = [f"\n{title}\n", "| component | params M | public code params M | GFLOPs | public code "
             "GFLOPs |", "|---|---|---|---|---|"]  # fmt: skip
    names = {"backbone": "backbone", "pgn": "PGN (CFFM)", "pgn_linear": "  CFFM linear fuse part",
             "pgn_mining": "  CFFM mining (CFFA + CFM)", "crl": "CRL", "csa": "CSA",
             "csa_encoder": "  CSA encoder", "other": "interaction + upsampling",
             "total": "**total**"}  # fmt: skip
    for key, label in names.items():
        if key not in rows:
            continue
        p, g = rows[key]
        pp, pg = public.get(key, (None, None))
        lines.append(f"| {label} | {_fmt(p, 3)} | {_fmt(pp, 3)} | {_fmt(g)} | {_fmt(pg)} |")
    if paper:
        p, g = rows["total"]
        lines.append(f"\npaper (Table 4): {paper[0]} M, {paper[1]} GFLOPs; ours / paper: params "
                     f"{p / paper[0]:.3f}x, GFLOPs {g / paper[1]:.3f}x")  # fmt: skip
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--skip-sizes", action="store_true", help="skip the sizes tables")
    p.add_argument("--skip-hrnet", action="store_true", help="skip the HRNet-W48 rows")
    p.add_argument("--timed-clips", type=int, default=3, help="timed clips (0: no timing)")
    p.add_argument("--memory-frames", type=int, nargs="*", default=[100, 1000],
                   help="checkpoints of the streaming memory run (none: skip it)")  # fmt: skip
    p.add_argument("--memory-size", type=int, default=64, help="frame size of the memory run")
    p.add_argument("--json", default="", help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results: dict = {"device": args.device, "threads": torch.get_num_threads()}
    lines: list[str] = []
    r2 = "configs/aen_cffm_res2net50.yaml"
    hr = "configs/aen_cffm_hrnet.yaml"
    if not args.skip_sizes:
        # (a) the CFFM row: PGN alone, CFFM as published, 6-frame window at 256x448
        model, _ = build("configs/cffm_res2net50.yaml", args.device, **{
            "MODEL.PGN_AEN.CLIP_LENGTH": 6, "INPUT.CLIP.LENGTH": 6,
            "MODEL.PGN_AEN.CFFM.TARGETS": "last", "MODEL.PGN_AEN.CFFM.NUM_REFERENCES": 5,
            "INPUT.SIZE_TEST": (256, 448)})  # fmt: skip
        rows = measure(model, 6, (256, 448), [])
        results["cffm_6x256x448"] = rows
        lines += table("(a) CFFM row: PGN alone (CFFM, TARGETS last, 5 references), Res2Net-50 "
                       "(res2net50d), one 6-frame window at 256x448", rows, PUBLIC["cffm"],
                       PAPER["cffm"])  # fmt: skip
        del model
        # the paper's AEN accounting (methods.md): the CFFM row + AEN on one 3-frame sub-clip
        # at 256x448 (the public code's fixed input; CRL grids = the maps' size there)
        model, _ = build(r2, args.device, **{
            "INPUT.SIZE_TEST": (256, 448),
            "MODEL.PGN_AEN.CRL.GRIDS": [[256 // k, 448 // k] for k in (4, 8, 16, 32)]})
        aen = measure(model, 3, (256, 448), [])
        results["aen_3x256x448"] = aen
        p_tot = rows["total"][0] + aen["crl"][0] + aen["csa"][0]
        g_tot = rows["total"][1] + aen["crl"][1] + aen["csa"][1]
        results["paper_accounting"] = {"params_m": p_tot, "gflops": g_tot}
        paper = PAPER["aen_cffm"]
        lines.append(
            f"\n(a') the paper's accounting of AEN + CFFM: (a) + CRL ({aen['crl'][0]:.3f} M, "
            f"{aen['crl'][1]:.2f} G) + CSA ({aen['csa'][0]:.3f} M, {aen['csa'][1]:.2f} G) of one "
            f"3-frame sub-clip at 256x448 = {p_tot:.2f} M, {g_tot:.2f} GFLOPs; paper {paper[0]} M "
            f"(public code CRL 3.2 M, CSA 9.0 M), {paper[1]} G (public code: 83.00 + CSA 9.19 + "
            f"CRL 1.29); ours / paper: params {p_tot / paper[0]:.3f}x, GFLOPs "
            f"{g_tot / paper[1]:.3f}x")  # fmt: skip
        del model
        # (b) AEN + CFFM, one 3-frame clip at 320x448
        for name, config, public in (("res2net50d", r2, PUBLIC["aen_cffm"]),
                                     ("hrnet_w48", hr, PUBLIC["hrnet"])):  # fmt: skip
            if name == "hrnet_w48" and args.skip_hrnet:
                continue
            model, _ = build(config, args.device, **{"INPUT.SIZE_TEST": (320, 448)})
            for state, entries in (("first clip", []),
                                   ("memory full", full_memory(model, 3, (320, 448)))):
                rows = measure(model, 3, (320, 448), entries)
                results[f"aen_cffm_{name}_{state.replace(' ', '_')}"] = rows
                lines += table(f"(b) AEN + CFFM, {name}, one 3-frame clip at 320x448, {state} "
                               f"({len(entries)} windows in memory)", rows, public,
                               PAPER["aen_cffm"] if name == "res2net50d" else None)  # fmt: skip
            del model
    if args.timed_clips:
        lines += ["\nCPU streaming speed, clips of 3 at 320x448, memory full "
                  f"({args.device}, {results['threads']} threads):\n",
                  "| model | ms/frame |", "|---|---|"]  # fmt: skip
        for name, config in (("AEN + CFFM res2net50d", r2), ("AEN + CFFM hrnet_w48", hr),
                             ("CFFM alone res2net50d", "configs/cffm_res2net50.yaml")):
            if "hrnet" in name and args.skip_hrnet:
                continue
            model, _ = build(config, args.device, **{"INPUT.SIZE_TEST": (320, 448)})
            ms = time_clips(model, (320, 448), args.timed_clips)
            results.setdefault("ms_per_frame", {})[name] = ms
            lines.append(f"| {name} | {ms:.0f} |")
            del model
    if args.memory_frames:
        mem = memory_run(r2, args.memory_size, args.memory_frames, args.device)
        results["memory_run"] = {"config": r2, "size": args.memory_size, "checkpoints": mem}
        lines += [f"\nStreaming memory (AEN + CFFM res2net50d, {args.memory_size}x"
                  f"{args.memory_size} frames, clips of 3):\n",
                  "| frames streamed | windows in memory | memory MiB | RSS MiB |",
                  "|---|---|---|---|"]  # fmt: skip
        for n, st in mem.items():
            lines.append(f"| {n} | {st['windows']} | {st['memory_mib']:.3f} | "
                         f"{st['rss_mib']:.0f} |")  # fmt: skip
    not_counted = sorted({op for v in results.values() if isinstance(v, dict)
                          for op in v.get("not_counted", [])})  # fmt: skip
    if not args.skip_sizes:
        lines.append(f"\nOps not counted by fvcore: {', '.join(not_counted) or 'none'}; "
                     "aten::scaled_dot_product_attention is counted by this script's handle.")
    print("\n".join(lines))
    if args.json:
        atomic_write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
