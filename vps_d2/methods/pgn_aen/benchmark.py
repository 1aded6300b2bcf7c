"""Benchmark PGN+AEN: sizes per component vs the paper's Table 4, CPU speed, streaming memory.

    python -m vps_d2.methods.pgn_aen.benchmark --threads 2          # everything, CPU
    python -m vps_d2.methods.pgn_aen.benchmark --skip-hrnet --timed-clips 0 --memory-frames
    python -m vps_d2.methods.pgn_aen.benchmark --quick              # smoke run, sample config

All models are randomly initialised (nothing is downloaded); configs are found by name with
``vps_d2.model_zoo.get_config_file``. Printed (Markdown):

1. parameters and GFLOPs per component (backbone, PGN = CFFM [its mining separately], CRL,
   CSA [its encoder separately], the rest = interaction + upsampling) for
   (a) the CFFM row of Table 4: the PGN alone (pgn_aen_cffm_only_res2net50.yaml, CFFM as
       published: TARGETS "last", the other five frames as references) on a 6-frame window
       at 256x448, Res2Net-50 (res2net50d); the paper gives 26.49 M / 82.98 G, which
       methods.md reproduces with the public code's backbone + full CFFM there;
   (b) AEN+CFFM on one 3-frame clip at 320x448 (pgn_aen_res2net50.yaml): the first clip of
       a video (empty memory) and a clip with a full memory; paper 33.81 M / 93.48 G;
   (c) the same with HRNet-W48 (pgn_aen_hrnet.yaml);
   next to the public code's measured sizes (../shared/reference/methods.md) and the ratios
   ours / paper. GFLOPs are fvcore's FlopCountAnalysis counts through
   ``vps_d2.utils.benchmark.count_flops`` (one multiply-add = one flop, fvcore's
   convention, as the paper's figures are; aten::scaled_dot_product_attention counted as
   Lq x Lk x (d + dv) per head); element-wise ops fvcore does not count are not counted;
2. CPU ms per frame streaming at 320x448 (``forward_clip`` on consecutive 3-frame clips,
   memory full: the steady state; median of --timed-clips clips after MEMORY_LENGTH warm-up
   clips that fill the memory, divided by 3), on --threads torch threads (0: default);
3. streaming memory after 100 and 1,000 frames (--memory-frames) at --memory-size (smaller
   than 320x448 so that the CPU run stays short): windows in the clip memory, its bytes,
   the process RSS (/proc/self/statm).

--quick runs pgn_aen_sample.yaml (small CNN) at its INPUT.SIZE_TEST (96x128) instead: its
sizes table (first clip and memory full), 1 timed clip, a memory run of 6 frames at 96x128.
"""

from __future__ import annotations

import argparse
import sys

import torch
import torch.nn as nn

import vps_d2.methods.pgn_aen  # noqa: F401  (registers MODEL.PGN_AEN)
from vps_d2.config import add_vps_config, get_cfg
from vps_d2.model_zoo import get_config_file
from vps_d2.modeling import build_model
from vps_d2.utils.benchmark import (
    add_common_arguments,
    add_memory_arguments,
    count_flops,
    markdown_table,
    params_m,
    parse_benchmark_args,
    streaming_memory,
    synthetic_frames,
    time_callable,
    write_json,
)

R2 = "pgn_aen_res2net50.yaml"
HR = "pgn_aen_hrnet.yaml"
CFFM = "pgn_aen_cffm_only_res2net50.yaml"
SAMPLE = "pgn_aen_sample.yaml"
QUICK = {"skip_hrnet": True, "timed_clips": 1, "memory_frames": [6], "memory_size": 0}

# Paper, Table 4 (Res2Net-50): params M, GFLOPs.
PAPER = {"cffm": (26.49, 82.98), "aen_cffm": (33.81, 93.48)}
# Public code, measured (methods.md section 1): params M / GFLOPs per component.
PUBLIC = {
    "cffm": {"backbone": (23.669, None), "pgn": (2.827, None), "total": (26.496, 83.00)},
    "aen_cffm": {
        "backbone": (23.669, 38.7),
        "pgn": (None, 16.1),
        "pgn_linear": (None, 10.4),
        "crl": (3.8, 1.6),
        "csa": (9.0, 11.7 + 2.7),
        "csa_encoder": (None, 11.7),
        "total": (None, 93.48),
    },
    "hrnet": {"backbone": (65.3, 3 * 47.4)},
}


def load_cfg(config: str, device: str, **overrides):
    """Config of the shipped file ``config`` (a file name) without pretrained weights;
    ``overrides``: dotted keys -> values."""
    cfg = get_cfg()
    add_vps_config(cfg)
    cfg.merge_from_file(get_config_file(config))
    cfg.MODEL.BACKBONE.PRETRAINED, cfg.MODEL.BACKBONE.WEIGHTS = False, ""
    cfg.MODEL.DEVICE = device
    opts = []
    for k, v in overrides.items():
        opts += [k, v]
    cfg.merge_from_list(opts)
    return cfg


def build(config: str, device: str, **overrides):
    """Model of :func:`load_cfg` with random init (seed 0), in eval mode, and its config."""
    cfg = load_cfg(config, device, **overrides)
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


def measure(model, t: int, size, entries) -> dict:
    """Parameters (M) and GFLOPs per component of one window of t frames at size."""
    x = torch.randn(1, t, 3, *size, device=model.device)
    flops = count_flops(_Window(model, entries), x)
    total = flops.gflops
    g = {
        k[len("model.") :] if k.startswith("model.") else k: v / 1e9
        for k, v in flops.by_module.items()
    }
    aen = model.aen
    out = {
        "backbone": (params_m(model.backbone), g.get("backbone", 0.0)),
        "pgn": (params_m(model.pgn), g.get("pgn", 0.0)),
    }
    mining = getattr(model.pgn, "mining", None)
    if mining is not None:
        out["pgn_mining"] = (params_m(mining), g.get("pgn.mining", 0.0))
        out["pgn_linear"] = (
            params_m(model.pgn) - params_m(mining),
            g.get("pgn", 0.0) - g.get("pgn.mining", 0.0),
        )
    if aen is not None:
        out["crl"] = (params_m(aen.crl), g.get("aen.crl", 0.0))
        if aen.csa is not None:
            out["csa"] = (params_m(aen.csa), g.get("aen.csa", 0.0))
            out["csa_encoder"] = (params_m(aen.csa.encoder), g.get("aen.csa.encoder", 0.0))
    parts = ("backbone", "pgn", "crl", "csa")
    out["other"] = (0.0, total - sum(out[k][1] for k in parts if k in out))
    out["total"] = (params_m(model), total)
    out["not_counted"] = flops.not_counted
    return out


def time_clips(model, size, n: int) -> float:
    """Median ms per frame of forward_clip in the steady state (memory full)."""
    t = model.clip_length
    model.reset()
    x = torch.randn(t, 3, *size, device=model.device)
    with torch.no_grad():
        stats = time_callable(
            lambda: model.forward_clip(x, model.memory, t),
            n,
            warmup=model.memory.maxlen,
            device=model.device,
        )
    model.reset()
    return stats.median_ms / t


def memory_run(config: str, size: int, checkpoints: list[int], device: str) -> dict:
    """Streaming memory of ``config`` at size x size (0: the config's INPUT.SIZE_TEST)."""
    model, _ = build(config, device, **({"INPUT.SIZE_TEST": (size, size)} if size else {}))
    h, w = model.test_size
    frames = synthetic_frames(max(checkpoints), h, w)
    probe = lambda: {"windows": len(model.memory), "memory_mib": model.memory.nbytes() / 2**20}
    return streaming_memory(model.stream(frames), checkpoints, probe)


def table(title: str, rows: dict, public: dict, paper: tuple | None) -> list[str]:
    names = {
        "backbone": "backbone",
        "pgn": "PGN (CFFM)",
        "pgn_linear": "  CFFM linear fuse part",
        "pgn_mining": "  CFFM mining (CFFA + CFM)",
        "crl": "CRL",
        "csa": "CSA",
        "csa_encoder": "  CSA encoder",
        "other": "interaction + upsampling",
        "total": "**total**",
    }
    cells = []
    for key, label in names.items():
        if key in rows:
            (p, g), (pp, pg) = rows[key], public.get(key, (None, None))
            cells.append([label, p, pp, g, pg])
    lines = [f"\n{title}\n"] + markdown_table(
        ["component", "params M", "public code params M", "GFLOPs", "public code GFLOPs"],
        cells,
        fmt=[None, "{:.3f}", "{:.3f}", "{:.2f}", "{:.2f}"],
        missing="-",
    )
    if paper:
        p, g = rows["total"]
        lines.append(
            f"\npaper (Table 4): {paper[0]} M, {paper[1]} GFLOPs; ours / paper: params "
            f"{p / paper[0]:.3f}x, GFLOPs {g / paper[1]:.3f}x"
        )
    return lines


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--skip-sizes", action="store_true", help="skip the sizes tables")
    p.add_argument("--skip-hrnet", action="store_true", help="skip the HRNet-W48 rows")
    p.add_argument("--timed-clips", type=int, default=3, help="timed clips (0: no timing)")
    add_memory_arguments(p)
    add_common_arguments(
        p, quick_help="smoke run: pgn_aen_sample.yaml at its size, 1 timed clip, 6 frames"
    )
    return parse_benchmark_args(p, argv, QUICK)


def main(argv=None) -> int:
    args = parse_args(argv)
    results: dict = {"device": args.device, "threads": torch.get_num_threads()}
    lines: list[str] = []
    r2, hr = (SAMPLE, SAMPLE) if args.quick else (R2, HR)
    clip_size = tuple(load_cfg(SAMPLE, args.device).INPUT.SIZE_TEST) if args.quick else (320, 448)
    hw = f"{clip_size[0]}x{clip_size[1]}"
    if not args.skip_sizes and not args.quick:
        # (a) the CFFM row: PGN alone, CFFM as published, 6-frame window at 256x448
        model, _ = build(
            CFFM,
            args.device,
            **{
                "MODEL.PGN_AEN.CLIP_LENGTH": 6,
                "INPUT.CLIP.LENGTH": 6,
                "MODEL.PGN_AEN.CFFM.TARGETS": "last",
                "MODEL.PGN_AEN.CFFM.NUM_REFERENCES": 5,
                "INPUT.SIZE_TEST": (256, 448),
            },
        )
        rows = measure(model, 6, (256, 448), [])
        results["cffm_6x256x448"] = rows
        lines += table(
            "(a) CFFM row: PGN alone (CFFM, TARGETS last, 5 references), Res2Net-50 "
            "(res2net50d), one 6-frame window at 256x448",
            rows,
            PUBLIC["cffm"],
            PAPER["cffm"],
        )
        del model
        # the paper's AEN accounting (methods.md): the CFFM row + AEN on one 3-frame sub-clip
        # at 256x448 (the public code's fixed input; CRL grids = the maps' size there)
        model, _ = build(
            r2,
            args.device,
            **{
                "INPUT.SIZE_TEST": (256, 448),
                "MODEL.PGN_AEN.CRL.GRIDS": [[256 // k, 448 // k] for k in (4, 8, 16, 32)],
            },
        )
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
            f"{g_tot / paper[1]:.3f}x"
        )
        del model
    if not args.skip_sizes:
        # (b) AEN + CFFM, one 3-frame clip at 320x448 (--quick: the sample model at its size)
        variants = (
            [("sample", SAMPLE, {})]
            if args.quick
            else [("res2net50d", r2, PUBLIC["aen_cffm"]), ("hrnet_w48", hr, PUBLIC["hrnet"])]
        )
        for name, config, public in variants:
            if name == "hrnet_w48" and args.skip_hrnet:
                continue
            model, _ = build(config, args.device, **{"INPUT.SIZE_TEST": clip_size})
            for state, entries in (
                ("first clip", []),
                ("memory full", full_memory(model, 3, clip_size)),
            ):
                rows = measure(model, 3, clip_size, entries)
                results[f"aen_cffm_{name}_{state.replace(' ', '_')}"] = rows
                lines += table(
                    f"(b) AEN + CFFM, {name}, one 3-frame clip at {hw}, {state} "
                    f"({len(entries)} windows in memory)",
                    rows,
                    public,
                    PAPER["aen_cffm"] if name == "res2net50d" else None,
                )
            del model
    if args.timed_clips:
        lines += [
            f"\nCPU streaming speed, clips of 3 at {hw}, memory full "
            f"({args.device}, {results['threads']} threads):\n"
        ]
        models = (
            [("AEN + CFFM sample", SAMPLE)]
            if args.quick
            else [
                ("AEN + CFFM res2net50d", r2),
                ("AEN + CFFM hrnet_w48", hr),
                ("CFFM alone res2net50d", CFFM),
            ]
        )
        speed = []
        for name, config in models:
            if "hrnet" in name and args.skip_hrnet:
                continue
            model, _ = build(config, args.device, **{"INPUT.SIZE_TEST": clip_size})
            ms = time_clips(model, clip_size, args.timed_clips)
            results.setdefault("ms_per_frame", {})[name] = ms
            speed.append([name, ms])
            del model
        lines += markdown_table(["model", "ms/frame"], speed, fmt=[None, "{:.0f}"])
    if args.memory_frames:
        mem = memory_run(r2, args.memory_size, args.memory_frames, args.device)
        results["memory_run"] = {"config": r2, "size": args.memory_size, "checkpoints": mem}
        msize = f"{args.memory_size}x{args.memory_size}" if args.memory_size else f"{hw}"
        lines += [
            f"\nStreaming memory (AEN + CFFM {'sample' if args.quick else 'res2net50d'}, "
            f"{msize} frames, clips of 3):\n"
        ]
        lines += markdown_table(
            ["frames streamed", "windows in memory", "memory MiB", "RSS MiB"],
            [[n, st["windows"], st["memory_mib"], st["rss_mib"]] for n, st in mem.items()],
            fmt=[None, None, "{:.3f}", "{:.0f}"],
        )
    not_counted = sorted(
        {op for v in results.values() if isinstance(v, dict) for op in v.get("not_counted", [])}
    )
    if not args.skip_sizes:
        lines.append(
            f"\nOps not counted by fvcore: {', '.join(not_counted) or 'none'}; "
            "aten::scaled_dot_product_attention is counted by the handle of "
            "vps_d2.utils.benchmark."
        )
    print("\n".join(lines))
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
