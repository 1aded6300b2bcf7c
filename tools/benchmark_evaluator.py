#!/usr/bin/env python
"""Speed and agreement of the SUN-SEG metrics: project vs per-threshold reference vs pysodmetrics.

  python tools/benchmark_evaluator.py --frames 3
  python tools/benchmark_evaluator.py --frames 5 --height 1008 --width 1158 --maps realistic random

On one CPU core (OMP/BLAS/OpenCV threads set to 1), for the same frames (default 1158x1008,
the documented SUN-SEG example size), times the full per-frame metric set of

- ``project``: :func:`vps_d2.evaluation.metrics.frame_metrics` (histograms / searchsorted),
- ``reference``: :func:`vps_d2.evaluation.reference.reference_frame_metrics`, the
  straightforward per-threshold implementation of the toolbox's formulas,
- ``pysodmetrics``: S/E/F/weighted-F/MAE and its FmeasureV2 Dice/IoU/Sen/Spe handlers, one
  instance per frame (its Dice/IoU/Sen/Spe use the E/F threshold scheme, not the toolbox's),

each including the input normalisation. Prints frames/s, the speed ratios, and the largest
absolute difference to the reference of every metric over all frames and thresholds.

Maps: ``realistic`` = a polyp-shaped GT and a sigmoid-like prediction (soft edges about
15 px wide, a false positive blob, background exactly 0 as an 8-bit sigmoid output is),
``random`` = uniform 8-bit noise over the whole frame (worst case for the weighted
F-measure: every background pixel needs its distance to the GT).
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import signal
import sys  # noqa: E402
import time  # noqa: E402


def _interrupted_while_starting(*_):
    """Ctrl-C while the imports below run (torch takes seconds): one line, status 130."""
    print("Interrupted while starting: nothing was done", file=sys.stderr, flush=True)
    os._exit(130)


if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, _interrupted_while_starting)

import cv2  # noqa: E402
import numpy as np  # noqa: E402

try:
    import vps_d2  # noqa: F401
except ImportError:  # running from a source checkout without installing the package
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from vps_d2.evaluation import metrics as M  # noqa: E402
from vps_d2.evaluation import reference as R  # noqa: E402

if signal.getsignal(signal.SIGINT) is _interrupted_while_starting:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # imports done: KeyboardInterrupt

KEYS = M.SCALAR_KEYS + M.CURVE_KEYS


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=3, help="frames per map kind")
    p.add_argument("--height", type=int, default=1008)
    p.add_argument("--width", type=int, default=1158)
    p.add_argument(
        "--maps", nargs="+", default=["realistic", "random"], choices=["realistic", "random"]
    )
    p.add_argument("--repeat", type=int, default=3, help="timed passes of the project code")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-pysod", action="store_true", help="skip pysodmetrics")
    return p


def make_frame(kind: str, h: int, w: int, rng: np.random.Generator):
    """(pred uint8 (h, w), gt uint8 (h, w) 0/255)."""
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
    ay, ax = rng.uniform(0.08, 0.25) * h, rng.uniform(0.08, 0.25) * w
    ang = np.arctan2(yy - cy, xx - cx)
    wobble = 1 + 0.08 * np.sin(3 * ang + rng.uniform(0, 6)) + 0.05 * np.cos(5 * ang)
    r = np.sqrt(((yy - cy) / ay) ** 2 + ((xx - cx) / ax) ** 2) / wobble
    gt = np.where(r < 1, 255, 0).astype(np.uint8)
    if kind == "random":
        return rng.integers(0, 256, (h, w), dtype=np.uint8), gt
    # sigmoid of a logit falling with the distance (pixels) to a shifted copy of the polyp:
    # 8-bit value 0 from about 15 px outside it, as a trained model's output
    r2 = np.sqrt(((yy - cy - 0.1 * ay) / ay) ** 2 + ((xx - cx + 0.1 * ax) / ax) ** 2) / wobble
    logit = -(r2 - 1) * (ay + ax) / 5 + np.sin(xx / 37 + yy / 53)
    fy, fx = rng.uniform(0.1, 0.9) * h, rng.uniform(0.1, 0.9) * w  # a false positive blob
    logit = np.maximum(logit, 5 - np.hypot(yy - fy, xx - fx) / 3)
    prob = 1 / (1 + np.exp(-logit))
    return M.quantize_probability(prob), gt


def pysod_metrics(pred: np.ndarray, gt: np.ndarray) -> dict:
    import py_sod_metrics as psm

    em, fm, wfm, mae, sm = (
        psm.Emeasure(),
        psm.Fmeasure(),
        psm.WeightedFmeasure(),
        psm.MAE(),
        psm.Smeasure(),
    )
    handlers = {
        "Dice": psm.DICEHandler(with_dynamic=True, with_adaptive=False),
        "IoU": psm.IOUHandler(with_dynamic=True, with_adaptive=False),
        "Sen": psm.SensitivityHandler(with_dynamic=True, with_adaptive=False),
        "Spe": psm.SpecificityHandler(with_dynamic=True, with_adaptive=False),
    }
    v2 = psm.FmeasureV2(metric_handlers=handlers)
    for obj in (em, fm, wfm, mae, sm, v2):
        obj.step(pred, gt)
    e, f, d = em.get_results()["em"], fm.get_results()["fm"], v2.get_results()
    out = {
        "Smeasure": sm.get_results()["sm"],
        "wFmeasure": wfm.get_results()["wfm"],
        "MAE": mae.get_results()["mae"],
        "adpEm": e["adp"],
        "adpFm": f["adp"],
        "Em": e["curve"],
        "Fm": f["curve"],
    }
    out.update({k: np.asarray(d[k]["dynamic"]) for k in handlers})
    return out


def timed(fn, frames, repeat: int = 1):
    outs = [fn(p, g) for p, g in frames[:1]]  # warm-up
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        outs = [fn(p, g) for p, g in frames]
        best = min(best, (time.perf_counter() - start) / len(frames))
    return best, outs


def max_diff(a: list[dict], b: list[dict], key: str) -> float:
    d = 0.0
    for x, y in zip(a, b):
        if key not in x or key not in y:
            return float("nan")
        u, v = np.asarray(x[key], np.float64), np.asarray(y[key], np.float64)
        ok = ~(np.isnan(u) & np.isnan(v))
        d = max(d, float(np.max(np.abs(u[ok] - v[ok]), initial=0.0)))
    return d


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    cv2.setNumThreads(1)
    rng = np.random.default_rng(args.seed)
    impls = {
        "project": lambda p, g: M.frame_metrics(p, g > 128),
        "reference": R.reference_frame_metrics,
    }
    if not args.no_pysod:
        try:
            import py_sod_metrics  # noqa: F401

            impls["pysodmetrics"] = pysod_metrics
        except ImportError:
            print("pysodmetrics not installed: skipped (pip install pysodmetrics)")
    print(f"{args.frames} frame(s) of {args.width}x{args.height} per map kind, one core\n")
    worst_ratio = float("inf")
    for kind in args.maps:
        frames = [make_frame(kind, args.height, args.width, rng) for _ in range(args.frames)]
        res = {}
        for name, fn in impls.items():
            res[name] = timed(fn, frames, args.repeat if name == "project" else 1)
        t_ref = res["reference"][0]
        print(f"== {kind} maps")
        print(f"{'implementation':<14} {'s/frame':>9} {'frames/s':>9} {'time / project':>15}")
        for name, (t, _) in res.items():
            ratio = t / res["project"][0]
            print(f"{name:<14} {t:>9.4f} {1 / t:>9.2f} {ratio:>16.1f}x")
        worst_ratio = min(worst_ratio, t_ref / res["project"][0])
        print(f"\n{'metric':<14} {'|project - reference|':>22} {'|pysod - reference|':>20}")
        ref_out = res["reference"][1]
        worst = 0.0
        for key in KEYS:
            d = max_diff(res["project"][1], ref_out, key)
            worst = max(worst, d)
            dp = max_diff(res["pysodmetrics"][1], ref_out, key) if "pysodmetrics" in res else None
            dp_s = "-" if dp is None or np.isnan(dp) else f"{dp:.3e}"
            print(f"{key:<14} {d:>22.3e} {dp_s:>20}")
        print(f"largest |project - reference|: {worst:.3e}\n")
    print(f"smallest speed-up over the reference: {worst_ratio:.1f}x")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # wherever main() did not catch it: one line, status 130
        print("Interrupted", file=sys.stderr)
        sys.exit(130)
