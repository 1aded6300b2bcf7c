"""Shared helpers of the method benchmarks (``python -m vps_d2.methods.<method>.benchmark``).

What every benchmark measures the same way:

* parameters: :func:`count_parameters` / :func:`params_m` (``numel`` summed over modules);
* FLOPs: :func:`count_flops`, fvcore's ``FlopCountAnalysis`` with two extra op handles,
  :func:`sdpa_flop_jit` (``aten::scaled_dot_product_attention``) and
  :func:`deform_conv2d_flop_jit` (``torchvision::deform_conv2d``). fvcore's convention is
  kept throughout: one fused multiply-add counts as **one** flop (an ``nn.Linear(8, 4)`` on
  a (2, 8) input is 2 x 8 x 4 = 64 flops), element-wise ops it has no handle for are not
  counted;
* wall-clock time: :func:`time_callable` (warm-up calls, then timed repeats; median and
  other statistics in milliseconds; CUDA synchronised around each call);
* process memory: :func:`rss_mib` (current resident set, ``/proc/self/statm``) and
  :func:`peak_rss_mib` (``resource.getrusage``), both in MiB;
* streaming memory: :func:`synthetic_frames` (deterministic uint8 frames) and
  :func:`streaming_memory` (a probe and the RSS after given numbers of streamed frames);
* output: :func:`markdown_table` (rows and ratio columns), :func:`ratio_cell` and
  :func:`write_json` (atomic).

This module is part of the bottom layer: it imports torch, fvcore (lazily) and the standard
library, nothing from the methods, the engine or the evaluation.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from vps_d2.utils.file_io import atomic_write_json

__all__ = [
    "FlopCount",
    "TimingStats",
    "count_flops",
    "count_parameters",
    "deform_conv2d_flop_jit",
    "markdown_table",
    "params_m",
    "peak_rss_mib",
    "ratio_cell",
    "rss_mib",
    "sdpa_flop_jit",
    "streaming_memory",
    "synchronize",
    "synthetic_frames",
    "time_callable",
    "write_json",
]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- parameters


def count_parameters(*modules: nn.Module | None, trainable_only: bool = False) -> int:
    """Number of parameter elements (``numel`` summed) of ``modules``; ``None`` counts 0.

    A parameter shared by several of the given modules is counted once.
    """
    seen: set[int] = set()
    n = 0
    for m in modules:
        if m is None:
            continue
        for p in m.parameters():
            if id(p) in seen or (trainable_only and not p.requires_grad):
                continue
            seen.add(id(p))
            n += p.numel()
    return n


def params_m(*modules: nn.Module | None) -> float:
    """:func:`count_parameters` in millions."""
    return count_parameters(*modules) / 1e6


# --------------------------------------------------------------------------- FLOPs


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def sdpa_flop_jit(inputs: list, outputs: list) -> int:
    """fvcore handle for ``aten::scaled_dot_product_attention``.

    q (..., Lq, d), k (..., Lk, d), v (..., Lk, dv): ``Lq * Lk * d`` multiply-adds for the
    scores plus ``Lq * Lk * dv`` for the weighted sum, per batch element and head (the
    softmax and the scaling are not counted).
    """
    from fvcore.nn.jit_handles import get_shape

    q, k, v = (get_shape(inputs[i]) for i in range(3))
    return _numel(q[:-2]) * q[-2] * k[-2] * (q[-1] + v[-1])


def deform_conv2d_flop_jit(inputs: list, outputs: list) -> int:
    """fvcore handle for ``torchvision::deform_conv2d``: the convolution's multiply-adds.

    weight (Cout, Cin / groups, kh, kw), output (N, Cout, H, W): ``N * Cout * H * W *
    Cin / groups * kh * kw`` (the bilinear sampling of the offsets is not counted).
    """
    from fvcore.nn.jit_handles import get_shape

    weight = get_shape(inputs[1])
    out = get_shape(outputs[0])
    return _numel(out) * weight[1] * weight[2] * weight[3]


#: Op handles :func:`count_flops` registers on top of fvcore's defaults.
EXTRA_FLOP_HANDLES: dict[str, Callable] = {
    "aten::scaled_dot_product_attention": sdpa_flop_jit,
    "torchvision::deform_conv2d": deform_conv2d_flop_jit,
}


class _CallableModule(nn.Module):
    """Wraps a callable so that fvcore can trace it; ``owner`` (the module whose parameters
    the callable uses) is registered as a child so that per-module counts keep its names
    under ``owner.``."""

    def __init__(self, fn: Callable, owner: nn.Module | None = None) -> None:
        super().__init__()
        self.fn = fn
        self.owner = owner

    def forward(self, *args):
        return self.fn(*args)


@dataclass
class FlopCount:
    """Result of :func:`count_flops`.

    Attributes:
        total: flops of the whole call (one multiply-add = one flop).
        by_module: flops per submodule name ("" is the whole call; names are relative to
            the traced module, a wrapped callable's ``owner`` appears as ``owner.*``).
        not_counted: sorted names of the ops fvcore met and could not count.
    """

    total: int
    by_module: dict[str, int] = field(default_factory=dict)
    not_counted: list[str] = field(default_factory=list)

    @property
    def gflops(self) -> float:
        """``total`` / 1e9."""
        return self.total / 1e9

    def module_gflops(self, name: str, prefix: str = "") -> float:
        """GFLOPs of submodule ``prefix + name`` (0.0 if it was not called)."""
        return self.by_module.get(prefix + name, 0) / 1e9


def count_flops(
    fn: nn.Module | Callable,
    inputs: torch.Tensor | tuple,
    *,
    owner: nn.Module | None = None,
    handles: dict[str, Callable] | None = None,
) -> FlopCount:
    """fvcore flop count of ``fn(*inputs)`` under ``torch.no_grad``.

    Args:
        fn: a module, or any callable (wrapped in a module; give ``owner`` to keep the
            names of its submodules in ``by_module``).
        inputs: a tensor or a tuple of tensors, the positional arguments of ``fn``.
        handles: op handles to register besides fvcore's defaults; default
            :data:`EXTRA_FLOP_HANDLES` (attention and deformable convolution).

    Returns:
        :class:`FlopCount` (fvcore's convention: one fused multiply-add = one flop).
        fvcore's warnings about unsupported ops and uncalled modules are silenced; the ops
        are listed in ``not_counted`` and logged at DEBUG level.
    """
    from fvcore.nn import FlopCountAnalysis

    module = fn if isinstance(fn, nn.Module) else _CallableModule(fn, owner)
    with torch.no_grad():
        fca = FlopCountAnalysis(module, inputs)
        for op, handle in (EXTRA_FLOP_HANDLES if handles is None else handles).items():
            fca.set_op_handle(op, handle)
        fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        total = fca.total()
        by_module = dict(fca.by_module())
        skipped = sorted(fca.unsupported_ops())
    if skipped:
        logger.debug("ops not counted by fvcore: %s", ", ".join(skipped))
    return FlopCount(int(total), by_module, skipped)


# --------------------------------------------------------------------------- timing


def synchronize(device: torch.device | str | None) -> None:
    """``torch.cuda.synchronize`` when ``device`` is a CUDA device; nothing otherwise."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class TimingStats:
    """Wall-clock times of the timed calls of :func:`time_callable`.

    Attributes:
        times_s: seconds of each timed call (warm-up calls excluded), in call order.
        warmup: number of untimed warm-up calls made first.
    """

    times_s: list[float]
    warmup: int = 0

    @property
    def repeats(self) -> int:
        return len(self.times_s)

    @property
    def median_ms(self) -> float:
        return 1000 * statistics.median(self.times_s)

    @property
    def mean_ms(self) -> float:
        return 1000 * statistics.fmean(self.times_s)

    @property
    def min_ms(self) -> float:
        return 1000 * min(self.times_s)

    @property
    def max_ms(self) -> float:
        return 1000 * max(self.times_s)

    @property
    def stdev_ms(self) -> float:
        """Sample standard deviation (0.0 with one timed call)."""
        return 1000 * statistics.stdev(self.times_s) if len(self.times_s) > 1 else 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {
            "median_ms": self.median_ms,
            "mean_ms": self.mean_ms,
            "min_ms": self.min_ms,
            "max_ms": self.max_ms,
            "stdev_ms": self.stdev_ms,
            "repeats": self.repeats,
            "warmup": self.warmup,
        }


def time_callable(
    fn: Callable,
    repeats: int,
    *,
    warmup: int = 1,
    setup: Callable[[int], tuple] | None = None,
    device: torch.device | str | None = None,
) -> TimingStats:
    """Call ``fn`` ``warmup + repeats`` times; time the last ``repeats`` calls.

    Args:
        fn: the callable; called as ``fn(*setup(i))`` when ``setup`` is given, else ``fn()``.
        repeats: timed calls (>= 1).
        warmup: untimed calls made first (caches, lazy initialisation, filling a memory).
        setup: ``i -> args`` run before call ``i`` (0-based over all calls), not timed.
        device: CUDA device to synchronise before and after each call (None / CPU: none).

    Returns:
        :class:`TimingStats` (``time.perf_counter`` seconds per timed call).
    """
    if repeats < 1:
        raise ValueError(f"time_callable: repeats must be >= 1, got {repeats}")
    times = []
    for i in range(warmup + repeats):
        args = setup(i) if setup is not None else ()
        synchronize(device)
        t0 = time.perf_counter()
        fn(*args)
        synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    stats = TimingStats(times, warmup)
    logger.debug("timed %d calls (+%d warm-up): median %.2f ms", repeats, warmup, stats.median_ms)
    return stats


# --------------------------------------------------------------------------- memory


def peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB (``ru_maxrss``: KiB on Linux, bytes on
    macOS)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def rss_mib() -> float:
    """Current resident set size of this process in MiB (``/proc/self/statm``); the peak
    (:func:`peak_rss_mib`) where ``/proc`` is not available."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return peak_rss_mib()


def synthetic_frames(
    num_frames: int,
    height: int,
    width: int,
    *,
    video_id: str = "long",
    seed: int = 0,
) -> Iterator[dict]:
    """``num_frames`` deterministic test frames of one video, as the models' ``step`` takes.

    One random uint8 image (3, height, width) drawn from ``seed``, rolled by ``t % 11``
    pixels along the width at frame ``t`` (cheap, and not constant). Each frame:
    ``{"image", "height", "width", "video_id", "frame_index"}``.
    """
    g = torch.Generator().manual_seed(seed)
    base = torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=g)
    for t in range(num_frames):
        yield {
            "image": torch.roll(base, t % 11, 2),
            "height": height,
            "width": width,
            "video_id": video_id,
            "frame_index": t,
        }


def streaming_memory(
    steps: Iterable[Any],
    checkpoints: Iterable[int],
    probe: Callable[[], dict] | None = None,
) -> dict[int, dict]:
    """Memory after given numbers of streamed frames.

    Args:
        steps: an iterable that streams one frame per item (e.g. ``map(model.step, frames)``
            or ``model.stream(frames)``); consumed up to ``max(checkpoints)`` items.
        checkpoints: frame counts (1-based) at which to measure.
        probe: returns the method's own figures (frames in its memory, their MiB, ...).

    Returns:
        ``{n: {**probe(), "rss_mib": rss_mib()}}`` for each checkpoint ``n`` reached.
    """
    wanted = set(checkpoints)
    last = max(wanted, default=0)
    out: dict[int, dict] = {}
    if not last:
        return out
    for t, _ in enumerate(steps):
        if t + 1 in wanted:
            out[t + 1] = {**(probe() if probe is not None else {}), "rss_mib": rss_mib()}
            logger.debug("after %d frames: %s", t + 1, out[t + 1])
        if t + 1 >= last:
            break
    return out


# --------------------------------------------------------------------------- output

CellFormat = str | Callable[[Any], str] | None


def _format_cell(value: Any, fmt: CellFormat, missing: str) -> str:
    if value is None:
        return missing
    if isinstance(value, str):
        return value
    if fmt is None:
        return str(value)
    if callable(fmt):
        return fmt(value)
    return fmt.format(value)


def ratio_cell(num: float | None, den: float | None, fmt: str = "{:.3f}", missing: str = "") -> str:
    """``fmt.format(num / den)``, or ``missing`` if either is None or ``den`` is 0."""
    if num is None or not den or isinstance(num, str) or isinstance(den, str):
        return missing
    return fmt.format(num / den)


def markdown_table(
    header: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    fmt: CellFormat | Sequence[CellFormat] = "{:.2f}",
    ratios: Sequence[tuple[str, int, int]] = (),
    ratio_fmt: str = "{:.3f}",
    missing: str = "",
) -> list[str]:
    """Lines of a Markdown table (header, ``|---|`` separator, one line per row).

    Args:
        header: the column titles of the given cells (ratio columns are appended).
        rows: sequences of cells, one per column of ``header``. A cell is a str (printed
            as it is), None (printed ``missing``) or a value formatted with ``fmt``.
        fmt: one format for every non-str cell, or one per column; a format is a
            ``str.format`` pattern, a callable ``value -> str`` or None (``str``).
        ratios: ``(title, numerator column, denominator column)``: a column appended per
            entry, ``ratio_fmt`` of the row's numerator / denominator cells (``missing``
            when one is not a number or the denominator is 0).
        missing: the text of missing cells.
    """
    header = list(header)
    n = len(header)
    fmts = list(fmt) if isinstance(fmt, list | tuple) else [fmt] * n
    if len(fmts) != n:
        raise ValueError(f"markdown_table: {len(fmts)} formats for {n} columns")
    lines = [
        "| " + " | ".join(header + [r[0] for r in ratios]) + " |",
        "|" + "---|" * (n + len(ratios)),
    ]
    for row in rows:
        row = list(row)
        if len(row) != n:
            raise ValueError(f"markdown_table: row {row!r} has {len(row)} cells, not {n}")
        cells = [_format_cell(v, f, missing) for v, f in zip(row, fmts)]
        cells += [ratio_cell(row[i], row[j], ratio_fmt, missing) for _, i, j in ratios]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def write_json(path: str, results: Any) -> None:
    """Write ``results`` as JSON (indent 2) atomically to ``path`` and log where."""
    atomic_write_json(path, results)
    logger.info("benchmark figures written to %s", path)


# ------------------------------------------------------------------ command line
def add_common_arguments(parser: argparse.ArgumentParser, quick_help: str) -> None:
    """The flags every benchmark script shares: --device, --threads, --json, --quick."""
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--json", default="", help="also write the figures to this JSON file")
    parser.add_argument("--quick", action="store_true", help=quick_help)


def add_memory_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of a streaming-memory run: --memory-frames, --memory-size."""
    parser.add_argument(
        "--memory-frames",
        type=int,
        nargs="*",
        default=[100, 1000],
        help="checkpoints of the streaming memory run (none: skip it)",
    )
    parser.add_argument(
        "--memory-size",
        type=int,
        default=64,
        help="frame size of the memory run (0: the config's INPUT.SIZE_TEST)",
    )


def parse_benchmark_args(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None, quick: dict[str, Any]
) -> argparse.Namespace:
    """Parse ``argv``; with --quick, ``quick`` gives the defaults (explicit flags still win).

    Sets torch's CPU threads to --threads when it is not 0.
    """
    args, _ = parser.parse_known_args(argv)
    if args.quick:
        parser.set_defaults(**quick)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    return args
