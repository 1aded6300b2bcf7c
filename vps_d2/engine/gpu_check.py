"""GPU readiness: every CUDA path of the engine checked, and the papers' speeds measured, in
one command (``python tools/gpu_check.py``) that fits a short GPU lease.

**Checks** (``section "check"``), for each method's sample config (every ``*_sample.yaml``
shipped whose META_ARCHITECTURE is registered: the tool imports the methods, this module
never does), on a tiny synthetic dataset, through the same ``tools/train_net.py`` entry
point a user runs (passed in as ``train_cli``):

* ``train fp32`` / ``train fp16`` / ``train bf16``: a few iterations (``SOLVER.AMP``); the
  run must exit 0 (a NaN/Inf loss stops it), every logged loss must be finite, and each of
  the model's optimizers (``optimizer_groups()``: Diff-VPS's generator and discriminator)
  must have changed at least one of its parameters between the first checkpoint and the
  final one, all of them finite;
* ``resume``: ``--resume`` of the fp32 run to a later SOLVER.MAX_ITER (the final
  checkpoint must carry the new last iteration);
* ``eval-only``: ``--eval-only MODEL.WEIGHTS <the fp32 run's model_final.pth>`` on the
  sample test splits, results.json written with finite numbers;
* ``stream``: a randomly initialised model and its copy on the device stream the same
  :data:`STREAM_FRAMES` frames; every output (``prob``, ``class_scores``, ``box``) must match
  the CPU's within :data:`STREAM_ATOL` (all but :data:`STREAM_MAX_OUTSIDE` of the values;
  fp32, TF32 off for the comparison);
* ``ddp``: ``--num-gpus 2`` (NCCL through Lightning Fabric), only when two GPUs are visible.

**Speed** (``section "speed"``), at each paper's resolution and clip length
(:data:`PAPER_SETTINGS`), random init (nothing is read or downloaded), frames already on
the device: streaming inference frames/s after a warm-up that fills the models' memories,
for eager fp32, channels_last + AMP fp16, and torch.compile of the backbone (on top of
channels_last + AMP; the heads' data-dependent memory code stays eager); ONNX Runtime
(the step exported by :mod:`vps_d2.modeling.export`, CUDA provider on a GPU, CPU provider
with ``--device cpu``; its runner is registered by ``import vps_d2.deploy``); training
iterations/s (fp32 and AMP fp16, at the config's SOLVER.IMS_PER_BATCH on one GPU) with peak
GPU memory
(``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``).

**Time**: a :class:`TimeGuard` holds the budget (default :data:`DEFAULT_BUDGET_S`); before
each row it compares the row's estimated cost (:data:`ESTIMATE_S`) with the time left and
skips the row with the reason when it does not fit, so every row is filled or says why not.
Cheap checks run first, torch.compile last. How the sizes were chosen is in
docs/benchmarks.md (GPU section): an estimate from fvcore FLOP counts and CPU timings, not
a measurement.

Results: :class:`Report`, printed as Markdown tables by the tool and written (atomically,
after every row) as JSON. ``device="cpu"`` with ``smoke=True`` runs the whole sequence on
the CPU at tiny sizes (torch.compile with the "eager" backend), which is how its code paths
are tested without a GPU.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import glob
import io
import json
import logging
import math
import os
import platform
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from vps_d2.config import add_vps_config, get_cfg
from vps_d2.model_zoo import list_configs
from vps_d2.modeling import META_ARCH_REGISTRY, build_model, resolve_clip_config
from vps_d2.solver.train_step import build_train_step
from vps_d2.synthetic import make_sample_dataset
from vps_d2.utils.benchmark import markdown_table, synchronize, synthetic_frames
from vps_d2.utils.file_io import atomic_write_json

from .launch import make_fabric
from .trainer import run_train_step, setup_optimization

__all__ = [
    "DEFAULT_BUDGET_S",
    "ESTIMATE_S",
    "PAPER_SETTINGS",
    "STREAM_ATOL",
    "STREAM_MAX_OUTSIDE",
    "CheckPlan",
    "Report",
    "Row",
    "SpeedSetting",
    "TimeGuard",
    "compare_outputs",
    "discover_sample_configs",
    "make_plan",
    "run_gpu_check",
    "synthetic_train_batch",
]

logger = logging.getLogger(__name__)

#: Seconds the whole check may take by default: 7.5 minutes, so that with the process
#: start-up and the sample dataset it ends within 8 minutes.
DEFAULT_BUDGET_S = 450.0
#: Largest |CPU - GPU| difference allowed between streamed outputs (probabilities in [0, 1],
#: softmax class scores, normalised boxes), fp32 with TF32 off. Float32 kernels differ in
#: summation order only (~1e-6 relative); 2e-3 leaves room for the few-step DDIM chain of
#: Diff-VPS and SALI's deformable sampling while catching any real difference (a wrong
#: device, dtype or random stream gives differences of 1e-1 and more).
STREAM_ATOL = 2e-3
#: Fraction of the output values allowed beyond STREAM_ATOL: hard decisions (Diff-VPS
#: re-embeds the mask thresholded at 0.5 between DDIM steps; memory top-k choices) can flip
#: where a value is within float error of the threshold, which changes that pixel's
#: neighbourhood only. 1e-3 (one value in a thousand) allows such flips, not a wrong model.
STREAM_MAX_OUTSIDE = 1e-3
#: Frames streamed by the CPU-vs-GPU comparison (the issue's 40; fills every sample memory).
STREAM_FRAMES = 40
#: Estimated seconds of one row of each kind on one modern GPU (upper estimates: each check
#: runs a sample model of < 1 M parameters for a few iterations, so its cost is start-up:
#: building the model and the loaders, CUDA context and cuDNN autotuning; speed rows:
#: building a paper-sized model plus ~100 frames or ~15 iterations; torch.compile: Inductor
#: compiling a ResNet-50/PVT-sized backbone, typically 30-60 s on 16 cores).
ESTIMATE_S = {
    "train": 12.0,
    "resume": 8.0,
    "eval-only": 10.0,
    "stream": 8.0,
    "ddp": 45.0,
    "infer": 10.0,
    "train-speed": 20.0,
    "compile": 60.0,
    "onnx": 30.0,
}


@dataclass(frozen=True)
class SpeedSetting:
    """One paper's setting measured by the speed table.

    Attributes:
        label: what is measured (model, resolution, clip).
        config: a shipped config file name (vps_d2.model_zoo); it is built with random init.
        paper: the paper's figure to compare with ("" none published for this setting).
        opts: extra KEY VALUE overrides (strings).
    """

    label: str
    config: str
    paper: str = ""
    opts: tuple[str, ...] = ()


#: The papers' settings (config files named as strings: the engine imports no method; a
#: setting whose config is not shipped or whose model is not registered is reported as
#: skipped). Each runs at its config's INPUT.SIZE_TEST and test clip length.
PAPER_SETTINGS: tuple[SpeedSetting, ...] = (
    SpeedSetting("SALI pvt_v2_b2, 352x352", "sali_pvtv2_b2.yaml"),
    SpeedSetting(
        "PGN+AEN (AEN+CFFM) Res2Net-50, 320x448, clips of 3",
        "pgn_aen_res2net50.yaml",
        "39 FPS (RTX 3090Ti)",
    ),
    SpeedSetting(
        "PGN+AEN CFFM only, Res2Net-50, 320x448",
        "pgn_aen_cffm_only_res2net50.yaml",
        "45 FPS (RTX 3090Ti)",
    ),
    SpeedSetting(
        "Diff-VPS pvt_v2_b3, 224x224, 3 DDIM steps",
        "diff_vps_pvtv2_b3.yaml",
        "",
        ("MODEL.DIFF_VPS.DIFFUSION.SAMPLE_STEPS", "3", "MODEL.DIFF_VPS.DISCRIMINATOR.WEIGHTS", ""),
    ),
    SpeedSetting("frame_baseline Res2Net-50, 352x352", "frame_baseline_res2net50.yaml"),
)

#: Overrides giving a randomly initialised model (nothing read from disk).
RANDOM_INIT_OPTS = ("MODEL.BACKBONE.PRETRAINED", "False", "MODEL.BACKBONE.WEIGHTS", "")


# --------------------------------------------------------------------------- plan
@dataclass
class CheckPlan:
    """What one run of the check does, and at which size (:func:`make_plan`).

    Attributes:
        device: "cuda" or "cpu".
        smoke: tiny sizes (the CPU test of the whole sequence).
        num_gpus: CUDA devices visible (0 on the CPU).
        train_iters: iterations of each training check (checkpoints every 2).
        resume_iters: SOLVER.MAX_ITER of the ``--resume`` run.
        stream_frames: frames of the CPU-vs-device comparison.
        precisions: training checks: name -> SOLVER.AMP opts; the reason instead of the opts
            when it cannot run here.
        ddp: the reason it is skipped, "" when it runs.
        infer_warmup / infer_frames: streamed frames before / during the timing.
        train_warmup / train_timed: iterations before / during the timing.
        train_batch: per-GPU batch of the training speed rows (0: the config's
            SOLVER.IMS_PER_BATCH).
        compile_backend: torch.compile backend ("inductor" on the GPU; "eager" in the smoke
            run: the same tracing, no code generation).
        settings: the speed rows' settings (sample configs in the smoke run).
        budget_s: the time budget.
    """

    device: str
    smoke: bool
    num_gpus: int
    train_iters: int
    resume_iters: int
    stream_frames: int
    precisions: dict[str, list[str] | str]
    ddp: str
    infer_warmup: int
    infer_frames: int
    train_warmup: int
    train_timed: int
    train_batch: int
    compile_backend: str
    settings: tuple[SpeedSetting, ...]
    budget_s: float


def make_plan(
    device: str,
    *,
    smoke: bool = False,
    num_gpus: int | None = None,
    bf16_supported: bool | None = None,
    budget_s: float = DEFAULT_BUDGET_S,
    sample_configs: Sequence[str] = (),
) -> CheckPlan:
    """The plan for ``device`` ("cuda"/"cpu"): full sizes on a GPU, tiny ones with ``smoke``.

    ``num_gpus`` / ``bf16_supported`` default to what torch reports (given in tests).
    ``sample_configs``: the sample configs, used as the speed settings of a smoke run.
    """
    if device not in ("cuda", "cpu"):
        raise ValueError(f"gpu_check: --device must be cuda or cpu, got {device!r}")
    cuda = device == "cuda"
    if num_gpus is None:
        num_gpus = torch.cuda.device_count() if cuda else 0
    if bf16_supported is None:
        bf16_supported = bool(cuda and torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    amp = ["SOLVER.AMP.ENABLED", "True", "SOLVER.AMP.PRECISION"]
    precisions: dict[str, list[str] | str] = {
        "fp32": ["SOLVER.AMP.ENABLED", "False"],
        "fp16": [*amp, "float16"],
        "bf16": [*amp, "bfloat16"],
    }
    if not cuda:
        precisions["fp16"] = "the CPU has no float16 autocast (Fabric uses bfloat16 there)"
    elif not bf16_supported:
        precisions["bf16"] = "this GPU does not support bfloat16 (Ampere or newer do)"
    if not cuda:
        ddp = "NCCL DDP needs CUDA"
    elif num_gpus < 2:
        ddp = f"needs 2 GPUs, {num_gpus} visible"
    else:
        ddp = ""
    if smoke:
        settings = tuple(
            SpeedSetting(f"{os.path.basename(c)} (sample size)", os.path.basename(c))
            for c in sample_configs
        )
    else:
        settings = PAPER_SETTINGS
    return CheckPlan(
        device=device,
        smoke=smoke,
        num_gpus=num_gpus,
        train_iters=4 if smoke else 8,
        resume_iters=6 if smoke else 10,
        stream_frames=6 if smoke else STREAM_FRAMES,
        precisions=precisions,
        ddp=ddp,
        infer_warmup=2 if smoke else 40,
        infer_frames=5 if smoke else 100,
        train_warmup=1 if smoke else 3,
        train_timed=1 if smoke else 12,
        train_batch=2 if smoke else 0,
        compile_backend="eager" if smoke else "inductor",
        settings=settings,
        budget_s=float(budget_s),
    )


# --------------------------------------------------------------------------- results
@dataclass
class Row:
    """One line of the report: a check or a speed measurement.

    ``status``: "ok", "failed" or "skipped"; ``note`` says why (and details); ``values``
    the measured figures (fps, ms_per_frame, it_s, peak_mib, batch, ...).
    """

    section: str
    subject: str
    name: str
    status: str
    note: str = ""
    seconds: float = 0.0
    values: dict = field(default_factory=dict)


class Report:
    """Rows in order, written atomically to ``json_path`` after each one."""

    def __init__(self, json_path: str = "", meta: dict | None = None) -> None:
        self.json_path = json_path
        self.meta = dict(meta or {})
        self.rows: list[Row] = []

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        logger.info("%s | %s | %s: %s %s", row.section, row.subject, row.name, row.status, row.note)
        self.write()
        return row

    def as_dict(self) -> dict:
        return {"meta": self.meta, "rows": [asdict(r) for r in self.rows]}

    def write(self) -> None:
        if self.json_path:
            atomic_write_json(self.json_path, _json_safe(self.as_dict()))

    @property
    def failed(self) -> list[Row]:
        return [r for r in self.rows if r.status == "failed"]

    def check_table(self) -> list[str]:
        rows = [
            (r.subject, r.name, r.status, f"{r.seconds:.1f}", r.note)
            for r in self.rows
            if r.section == "check"
        ]
        return markdown_table(["config", "check", "status", "s", "note"], rows, fmt=None)

    def speed_table(self) -> list[str]:
        rows = []
        for r in self.rows:
            if r.section != "speed":
                continue
            v = r.values
            if "fps" in v:
                value = f"{v['fps']:.1f} FPS ({v['ms_per_frame']:.2f} ms/frame)"
            elif "it_s" in v:
                value = f"{v['it_s']:.2f} it/s (batch {v['batch']})"
            else:
                value = r.status
            peak = f"{v['peak_mib']:.0f}" if v.get("peak_mib") is not None else "-"
            paper = v.get("paper", "")
            rows.append((r.subject, r.name, value, peak, paper or "-", r.note))
        header = ["setting", "measure", "result", "peak MiB", "paper", "note"]
        return markdown_table(header, rows, fmt=None)


def _json_safe(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj


class TimeGuard:
    """The check's time budget: :meth:`reason_to_skip` says why a row must be skipped.

    ``clock``: a monotonic clock in seconds (given in tests).
    """

    def __init__(self, budget_s: float, clock: Callable[[], float] = time.perf_counter) -> None:
        self.budget_s = float(budget_s)
        self.clock = clock
        self.start = clock()

    @property
    def elapsed(self) -> float:
        return self.clock() - self.start

    @property
    def left(self) -> float:
        return self.budget_s - self.elapsed

    def reason_to_skip(self, kind: str) -> str:
        """ "" when a row of ``kind`` (a key of :data:`ESTIMATE_S`) fits in the time left,
        else the reason, naming the time left and the estimate."""
        need = ESTIMATE_S[kind]
        if need <= self.left:
            return ""
        return (
            f"time budget: {max(self.left, 0):.0f} s left of {self.budget_s:.0f} s, this row "
            f"needs ~{need:.0f} s (estimate); rerun with a larger --budget-s or fewer --methods"
        )


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[-1] if text else ''}"[:300]


# --------------------------------------------------------------------------- configs
def discover_sample_configs(methods: Sequence[str] = ()) -> list[str]:
    """Paths of the shipped ``*_sample.yaml`` whose META_ARCHITECTURE is registered, sorted;
    ``methods``: keep those whose file stem starts with one of them or whose
    META_ARCHITECTURE is one of them (KeyError naming what matched nothing)."""
    found = []
    for name, path in list_configs().items():
        if not name.endswith("_sample.yaml"):
            continue
        arch = _load_cfg(path).MODEL.META_ARCHITECTURE
        if arch in META_ARCH_REGISTRY:
            found.append((name, arch, path))
    if methods:
        wanted = list(methods)
        keep = [(n, a, p) for n, a, p in found if any(n.startswith(m) or a == m for m in wanted)]
        unknown = [m for m in wanted if not any(n.startswith(m) or a == m for n, a, _ in found)]
        if unknown:
            names = ", ".join(n[: -len("_sample.yaml")] for n, _, _ in found)
            raise KeyError(f"--methods {unknown}: no sample config matches (known: {names})")
        found = keep
    return [p for _, _, p in found]


def _load_cfg(path: str, opts: Sequence[str] = ()):
    cfg = add_vps_config(get_cfg())
    cfg.merge_from_file(path)
    cfg.merge_from_list(list(opts))
    return cfg


def _resolved_cfg(path: str, opts: Sequence[str] = ()):
    cfg = resolve_clip_config(_load_cfg(path, opts))
    cfg.freeze()
    return cfg


def _disc_masks(t: int, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    masks = np.zeros((t, h, w), np.float32)
    cy, cx, r = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w, min(h, w) * 0.2
    for k in range(t):
        masks[k] = ((yy - cy - k) ** 2 + (xx - cx - k) ** 2) <= r * r
    return masks


def synthetic_train_batch(cfg, batch: int, seed: int = 0) -> list[dict]:
    """``batch`` training clips as the training mapper gives them (INPUT.CLIP.LENGTH frames at
    INPUT.SIZE_TRAIN, a disc-shaped polyp brighter than the background): "image" uint8
    (T, 3, H, W), "sem_seg" float (T, H, W), "class_id", "boxes" (T, 4), "box_valid" (T,)."""
    rng = np.random.default_rng(seed)
    t, (h, w) = int(cfg.INPUT.CLIP.LENGTH), tuple(cfg.INPUT.SIZE_TRAIN)
    out = []
    for _ in range(batch):
        masks = _disc_masks(t, h, w, rng)
        image = rng.integers(0, 90, size=(t, 3, h, w)) + 140 * masks[:, None]
        boxes = np.zeros((t, 4), np.float32)
        for k in range(t):
            ys, xs = np.nonzero(masks[k])
            boxes[k] = [
                (xs.min() + xs.max() + 1) / 2 / w,
                (ys.min() + ys.max() + 1) / 2 / h,
                (xs.max() - xs.min() + 1) / w,
                (ys.max() - ys.min() + 1) / h,
            ]
        out.append(
            {
                "image": torch.from_numpy(image.astype(np.uint8)),
                "sem_seg": torch.from_numpy(masks),
                "class_id": 0,
                "boxes": torch.from_numpy(boxes),
                "box_valid": torch.ones(t, dtype=torch.bool),
                "video_id": "synthetic",
            }
        )
    return out


# --------------------------------------------------------------------------- checks
TrainCli = Callable[[list[str]], int]


def _remove_log_handlers() -> None:
    """Detach the handlers a run's ``setup_logger`` added (they point at its console file)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_vps_d2", False):
            root.removeHandler(h)
            h.close()


def _run_cli(train_cli: TrainCli, argv: list[str], console: str) -> tuple[int, str]:
    """``train_cli(argv)`` with its output in the file ``console``; (exit code, last error
    line)."""
    os.makedirs(os.path.dirname(console), exist_ok=True)
    with open(console, "w", encoding="utf-8") as f:
        buf = io.StringIO()
        try:
            with contextlib.redirect_stdout(f), contextlib.redirect_stderr(_Tee(f, buf)):
                rc = train_cli(argv)
        except SystemExit as e:  # argparse
            rc = e.code if isinstance(e.code, int) else 1
        except Exception as e:  # noqa: BLE001 - reported as the row's failure
            f.write(traceback.format_exc())
            rc, buf = 1, io.StringIO(_one_line(e))
        finally:
            _remove_log_handlers()
            # The run's trainer sits in reference cycles; collecting it now stops its loader
            # workers, forked holders of the OUTPUT_DIR lock the next run (--resume) takes.
            gc.collect()
    errors = [x for x in buf.getvalue().splitlines() if x.strip()]
    return int(rc or 0), (errors[-1][:300] if errors else "")


class _Tee(io.TextIOBase):
    def __init__(self, *streams) -> None:
        self.streams = streams

    def write(self, s: str) -> int:
        for st in self.streams:
            st.write(s)
        return len(s)

    def flush(self) -> None:
        for st in self.streams:
            st.flush()


def _finite_losses(output_dir: str) -> tuple[int, list[str]]:
    """(number of logged loss values, names of the non-finite ones) in metrics.json."""
    path = os.path.join(output_dir, "metrics.json")
    n, bad = 0, []
    if not os.path.isfile(path):
        return 0, []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            rec = json.loads(line)
            for k, v in rec.items():
                if "loss" in k and isinstance(v, int | float | str):
                    n += 1
                    if not math.isfinite(float(v)):
                        bad.append(f"{k}@{rec.get('iteration')}")
    return n, bad


def _group_changes(cfg, first: str, last: str) -> dict[str, tuple[int, int, bool]]:
    """Per optimizer group of the model: (parameters changed between the checkpoints
    ``first`` and ``last``, parameters in the group, all finite in ``last``)."""
    cpu_cfg = cfg.clone()
    cpu_cfg.defrost()
    cpu_cfg.MODEL.DEVICE = "cpu"
    model = build_model(cpu_cfg)
    names = {id(p): n for n, p in model.named_parameters()}
    a = torch.load(first, map_location="cpu", weights_only=False)["model"]
    b = torch.load(last, map_location="cpu", weights_only=False)["model"]
    out = {}
    for group, params in model.optimizer_groups().items():
        keys = [names[id(p)] for p in params]
        changed = sum(not torch.equal(a[k], b[k]) for k in keys)
        finite = all(torch.isfinite(b[k]).all() for k in keys)
        out[group] = (changed, len(keys), bool(finite))
    return out


def _checkpoint_iteration(path: str) -> int | None:
    data = torch.load(path, map_location="cpu", weights_only=False)
    it = data.get("iteration", (data.get("trainer") or {}).get("iteration"))
    return None if it is None else int(it)


def _numbers(obj) -> list[float]:
    if isinstance(obj, dict):
        return [x for v in obj.values() for x in _numbers(v)]
    if isinstance(obj, list | tuple):
        return [x for v in obj for x in _numbers(v)]
    if isinstance(obj, bool):
        return []
    if isinstance(obj, int | float):
        return [float(obj)]
    return []


def model_task(cfg) -> str:
    """The meta-architecture's ``task``: "segmentation", or "generation" (masks in, frames
    out: ArSDM), whose streamed frames need a mask and which has nothing to score."""
    return getattr(META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE), "task", "segmentation")


def frames_for_task(task: str, frames: list[dict]) -> list[dict]:
    """``frames`` as the model of ``task`` streams them: a generator's get a ``"sem_seg"``
    mask each (a disc of a quarter of the shorter side, moving one pixel per frame)."""
    if task != "generation":
        return frames
    out = []
    for f in frames:
        h, w = f["image"].shape[-2:]
        t = int(f.get("frame_index", 0))
        yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        r, cy, cx = min(h, w) / 4, h / 2, w / 3 + t % max(1, w // 3)
        out.append(dict(f, sem_seg=(((yy - cy) ** 2 + (xx - cx) ** 2) <= r * r).to(torch.uint8)))
    return out


#: Largest CPU-vs-device difference of a generator's uint8 frames counted as equal: one
#: level (float rounding of the two devices may flip the last bit before the 8-bit cast).
GENERATION_ATOL = 1.0


class _Checks:
    """The checks of one sample config (rows added to ``report``)."""

    def __init__(self, plan, report, guard, train_cli, out_dir, data_root, config) -> None:
        self.plan, self.report, self.guard = plan, report, guard
        self.train_cli = train_cli
        self.config = config
        self.name = os.path.basename(config)[: -len(".yaml")]
        self.dir = os.path.join(out_dir, self.name)
        self.common = [
            "MODEL.DEVICE",
            plan.device,
            "DATASETS.ROOT",
            data_root,
            "SOLVER.IMS_PER_BATCH",
            "2",
            "SOLVER.CHECKPOINT_PERIOD",
            "2",
            "TEST.EVAL_PERIOD",
            "0",
            "SEED",
            "0",
        ]

    def _row(self, name: str, kind: str, fn: Callable[[], tuple[str, str, dict]]) -> Row:
        skip = self.guard.reason_to_skip(kind)
        if skip:
            return self.report.add(Row("check", self.name, name, "skipped", skip))
        t0 = time.perf_counter()
        try:
            status, note, values = fn()
        except Exception as e:  # noqa: BLE001 - a failed check is a row, not the end
            logger.exception("gpu_check %s %s", self.name, name)
            status, note, values = "failed", _one_line(e), {}
        return self.report.add(
            Row("check", self.name, name, status, note, time.perf_counter() - t0, values)
        )

    def _train(self, tag: str, opts: list[str], flags=(), iters: int | None = None):
        out = os.path.join(self.dir, tag)
        argv = [
            "--config-file",
            self.config,
            *flags,
            *self.common,
            "SOLVER.MAX_ITER",
            str(iters or self.plan.train_iters),
            "DATASETS.TEST",
            "()",
            "OUTPUT_DIR",
            out,
            *opts,
        ]
        if "--resume" not in flags:
            argv.insert(2, "--overwrite")
        rc, err = _run_cli(self.train_cli, argv, os.path.join(out, f"console_{tag}.txt"))
        return out, rc, err

    def train(self, precision: str) -> Row:
        opts = self.plan.precisions[precision]
        if isinstance(opts, str):
            return self.report.add(Row("check", self.name, f"train {precision}", "skipped", opts))

        def run():
            out, rc, err = self._train(precision, list(opts))
            if rc != 0:
                return "failed", f"exit {rc}: {err}", {}
            n, bad = _finite_losses(out)
            if bad or n == 0:
                return "failed", f"non-finite losses {bad[:3]}" if bad else "no loss logged", {}
            first = os.path.join(out, "model_0000001.pth")
            last = os.path.join(out, "model_final.pth")
            cfg = _resolved_cfg(self.config, [*self.common, *opts])
            changes = _group_changes(cfg, first, last)
            notes, ok = [], True
            for group, (changed, total, finite) in changes.items():
                notes.append(f"{group}: {changed}/{total} params changed")
                if not changed or not finite:
                    ok = False
                    notes[-1] += " (NOT stepping)" if not changed else " (non-finite)"
            iters = self.plan.train_iters
            note = f"{iters} it, {n} finite loss values; " + ", ".join(notes)
            if not ok and precision == "fp16":
                note += " (fp16: did the GradScaler skip every step?)"
            return ("ok" if ok else "failed"), note, {"groups": changes}

        return self._row(f"train {precision}", "train", run)

    def resume(self) -> Row:
        def run():
            fp32 = os.path.join(self.dir, "fp32", "model_final.pth")
            if not os.path.isfile(fp32):
                return "skipped", "the fp32 training check left no model_final.pth", {}
            before = _checkpoint_iteration(fp32)
            out, rc, err = self._train(
                "fp32", list(self.plan.precisions["fp32"]), ("--resume",), self.plan.resume_iters
            )
            if rc != 0:
                return "failed", f"exit {rc}: {err}", {}
            after = _checkpoint_iteration(os.path.join(out, "model_final.pth"))
            want = self.plan.resume_iters - 1
            ok = after == want
            note = f"iteration {before} -> {after} (expected {want})"
            return ("ok" if ok else "failed"), note, {}

        return self._row("resume", "resume", run)

    def eval_only(self) -> Row:
        if model_task(_resolved_cfg(self.config, [])) == "generation":
            why = "a generator: no test split to score (vps-synthesize measures its frames)"
            return self.report.add(Row("check", self.name, "eval-only", "skipped", why))

        def run():
            weights = os.path.join(self.dir, "fp32", "model_final.pth")
            if not os.path.isfile(weights):
                return "skipped", "the fp32 training check left no model_final.pth", {}
            out = os.path.join(self.dir, "eval")
            argv = [
                "--config-file",
                self.config,
                "--eval-only",
                *self.common,
                "MODEL.WEIGHTS",
                weights,
                "OUTPUT_DIR",
                out,
            ]
            rc, err = _run_cli(self.train_cli, argv, os.path.join(out, "console.txt"))
            if rc != 0:
                return "failed", f"exit {rc}: {err}", {}
            path = os.path.join(out, "results.json")
            if not os.path.isfile(path):
                return "failed", "no results.json written", {}
            with open(path, encoding="utf-8") as f:
                nums = _numbers(json.load(f))
            bad = sum(not math.isfinite(x) for x in nums)
            if not nums:
                return "failed", "results.json holds no number", {}
            note = f"{len(nums)} numbers in results.json" + (f", {bad} not finite" if bad else "")
            return ("ok" if bad == 0 else "failed"), note, {}

        return self._row("eval-only", "eval-only", run)

    def stream(self) -> Row:
        def run():
            cfg = _resolved_cfg(self.config, ["MODEL.DEVICE", "cpu"])
            torch.manual_seed(0)
            ref = build_model(cfg).eval()
            dev = copy.deepcopy(ref).to(_device(self.plan.device))
            h, w = cfg.INPUT.SIZE_TEST
            # Frames of another size than SIZE_TEST: the resize path runs too.
            frames = list(synthetic_frames(self.plan.stream_frames, int(h) + 8, int(w) + 16))
            task = model_task(cfg)
            frames = frames_for_task(task, frames)
            with _no_tf32():
                a = [_to_cpu(o) for o in ref.stream(iter(frames))]
                b = [_to_cpu(o) for o in dev.stream(iter(frames))]
            if len(a) != len(frames) or len(b) != len(frames):
                return "failed", f"{len(a)} / {len(b)} outputs for {len(frames)} frames", {}
            atol = GENERATION_ATOL if task == "generation" else STREAM_ATOL
            ok, note, values = compare_outputs(a, b, atol=atol)
            return ("ok" if ok else "failed"), f"{len(frames)} frames, {note}", values

        return self._row("stream vs CPU", "stream", run)

    def ddp(self) -> Row:
        if self.plan.ddp:
            return self.report.add(Row("check", self.name, "ddp 2 GPUs", "skipped", self.plan.ddp))

        def run():
            out, rc, err = self._train("ddp", ["SOLVER.AMP.ENABLED", "False"], ("--num-gpus", "2"))
            if rc != 0:
                return "failed", f"exit {rc}: {err}", {}
            n, bad = _finite_losses(out)
            if bad or n == 0:
                return "failed", f"non-finite losses {bad[:3]}" if bad else "no loss logged", {}
            return "ok", f"2 processes (NCCL), {n} finite loss values", {}

        return self._row("ddp 2 GPUs", "ddp", run)


def compare_outputs(
    a: Sequence[dict],
    b: Sequence[dict],
    atol: float = STREAM_ATOL,
    max_outside: float = STREAM_MAX_OUTSIDE,
) -> tuple[bool, str, dict]:
    """Per-frame outputs ``a`` (the CPU's) and ``b`` (the device's), float64 tensors by key.

    Passes when every key of ``a`` is in ``b`` with its shape, every difference is finite,
    and per key at most ``max_outside`` of the values differ by more than ``atol``.
    Returns ``(ok, note, {key: {"max", "outside"}})`` (the largest difference and the
    fraction beyond ``atol``).
    """
    if len(a) != len(b):
        return False, f"{len(a)} CPU outputs but {len(b)} device outputs", {}
    worst: dict[str, float] = {}
    beyond: dict[str, int] = {}
    count: dict[str, int] = {}
    for t, (x, y) in enumerate(zip(a, b)):
        for k, v in x.items():
            if k not in y or tuple(y[k].shape) != tuple(v.shape):
                got = "missing" if k not in y else f"of shape {tuple(y[k].shape)}"
                return False, f"frame {t}: output {k!r} {got}, CPU {tuple(v.shape)}", {}
            d = (v - y[k]).abs()
            if not torch.isfinite(d).all():
                return False, f"frame {t}: output {k!r} not finite on one device", {}
            worst[k] = max(worst.get(k, 0.0), float(d.max()) if d.numel() else 0.0)
            beyond[k] = beyond.get(k, 0) + int((d > atol).sum())
            count[k] = count.get(k, 0) + d.numel()
    values = {k: {"max": worst[k], "outside": beyond[k] / max(count[k], 1)} for k in sorted(worst)}
    ok = all(v["outside"] <= max_outside for v in values.values())
    parts = [
        f"{k} {v['max']:.1e}" + (f" ({100 * v['outside']:.3f}% > tol)" if v["outside"] else "")
        for k, v in values.items()
    ]
    note = "max |cpu - device|: " + ", ".join(parts)
    note += f" (tolerance {atol}, at most {100 * max_outside:g}% beyond)"
    return ok, note, values


def _to_cpu(out: dict) -> dict[str, torch.Tensor]:
    return {
        k: torch.as_tensor(v).detach().to("cpu", torch.float64)
        for k, v in out.items()
        if isinstance(v, torch.Tensor | float | int) and not isinstance(v, bool)
    }


@contextlib.contextmanager
def _no_tf32():
    """fp32 matmuls and convolutions in full precision (TF32 off) inside the block."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _device(name: str) -> torch.device:
    if name == "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device(name)


# --------------------------------------------------------------------------- speed
def _free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mib(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


def _speed_cfg(plan: CheckPlan, setting: SpeedSetting, opts: Sequence[str] = ()):
    path = list_configs().get(setting.config)
    if path is None:
        raise FileNotFoundError(f"{setting.config} is not a shipped config")
    base = [*RANDOM_INIT_OPTS, "MODEL.WEIGHTS", ""]
    return _resolved_cfg(path, [*base, *setting.opts, "MODEL.DEVICE", plan.device, *opts])


def _autocast(device: torch.device, enabled: bool):
    if not enabled:
        return contextlib.nullcontext()
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype)


@dataclass(frozen=True)
class InferVariant:
    """One way of running inference: channels_last, autocast, torch.compile of the backbone,
    or an exported runtime (``runtime``; measured by a runner of :data:`RUNTIME_RUNNERS`)."""

    name: str
    kind: str = "infer"
    channels_last: bool = False
    amp: bool = False
    compile: bool = False
    runtime: str = ""


INFER_VARIANTS = (
    InferVariant("inference eager fp32"),
    InferVariant("inference channels_last + AMP fp16", channels_last=True, amp=True),
    InferVariant(
        "inference torch.compile (backbone) + channels_last + AMP fp16",
        "compile",
        channels_last=True,
        amp=True,
        compile=True,
    ),
    InferVariant("inference ONNX Runtime", "onnx", runtime="onnxruntime"),
)


def _onnx_unavailable() -> str:
    """Why the ONNX Runtime row cannot run while no runner is registered."""
    return "not available (its runner registers with `import vps_d2.deploy`)"


#: runtime name -> (reason it cannot run, "" if it can; the measuring function
#: ``runner(plan, setting, variant, cfg) -> row dict``, cfg the setting's config on
#: plan.device). The engine imports no runtime: ``import vps_d2.deploy`` registers the ONNX
#: Runtime runner (vps-gpu-check does).
RUNTIME_RUNNERS: dict[str, tuple[Callable[[], str], Callable | None]] = {
    "onnxruntime": (_onnx_unavailable, None),
}


def stream_fps(model, frames: list[dict], warmup: int, device: torch.device, amp: bool = False):
    """Stream ``frames`` through ``model``; frames/s of those after the first ``warmup``
    outputs (``warmup`` rounded up to whole calls of ``frames_per_call``)."""
    per_call = max(1, int(getattr(model, "frames_per_call", 1)))
    warmup = min(-(-warmup // per_call) * per_call, len(frames) - per_call)
    t0 = None
    n = 0
    with _autocast(device, amp):
        for n, _ in enumerate(model.stream(iter(frames)), start=1):
            if n == warmup:
                synchronize(device)
                t0 = time.perf_counter()
    synchronize(device)
    if n != len(frames) or t0 is None:
        raise RuntimeError(f"{n} outputs for {len(frames)} frames")
    seconds = time.perf_counter() - t0
    timed = len(frames) - warmup
    return timed / seconds, 1000 * seconds / timed, timed


def _measure_inference(plan: CheckPlan, setting: SpeedSetting, variant: InferVariant) -> dict:
    device = _device(plan.device)
    if variant.runtime:
        reason, runner = RUNTIME_RUNNERS[variant.runtime]
        why = reason()
        if why or runner is None:
            return {"status": "skipped", "note": why or "no runner"}
        return runner(plan, setting, variant, _speed_cfg(plan, setting))
    cfg = _speed_cfg(plan, setting)
    _free_memory(device)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    note = "bfloat16 autocast on the CPU" if variant.amp and device.type == "cpu" else ""
    if variant.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if variant.compile:
        backbone = getattr(model, "backbone", None)
        if backbone is None:
            return {"status": "skipped", "note": "the model has no .backbone to compile"}
        model.backbone = torch.compile(backbone, backend=plan.compile_backend)
        note = ", ".join(x for x in (note, f"backend {plan.compile_backend}") if x)
    h, w = (int(s) for s in cfg.INPUT.SIZE_TEST)
    n = plan.infer_warmup + plan.infer_frames
    frames = frames_for_task(model_task(cfg), list(synthetic_frames(n, h, w)))
    frames = [dict(f, image=f["image"].to(device)) for f in frames]
    t0 = time.perf_counter()
    fps, ms, timed = stream_fps(model, frames, plan.infer_warmup, device, variant.amp)
    values = {
        "fps": fps,
        "ms_per_frame": ms,
        "timed_frames": timed,
        "size": [h, w],
        "peak_mib": _peak_mib(device),
        "wall_s": time.perf_counter() - t0,
    }
    del model, frames
    _free_memory(device)
    return {"status": "ok", "note": note, "values": values}


def _measure_training(plan: CheckPlan, setting: SpeedSetting, amp: bool) -> dict:
    device = _device(plan.device)
    opts = ["SOLVER.AMP.ENABLED", str(amp), "SOLVER.AMP.PRECISION", "float16" if amp else ""]
    cfg = _speed_cfg(plan, setting, opts)
    batch = plan.train_batch or int(cfg.SOLVER.IMS_PER_BATCH)
    _free_memory(device)
    precision = ("16-mixed" if device.type == "cuda" else "bf16-mixed") if amp else "32-true"
    fabric = make_fabric(1, 1, device.type, precision)
    torch.manual_seed(0)
    model = build_model(cfg).train()
    wrapped, optim, _, _ = setup_optimization(cfg, model, fabric)
    step = build_train_step(cfg, model)
    data = synthetic_train_batch(cfg, batch)
    t0 = None
    total = plan.train_warmup + plan.train_timed
    for i in range(total):
        if i == plan.train_warmup:
            synchronize(device)
            t0 = time.perf_counter()
        losses = run_train_step(step, wrapped, data, optim, 0, i)
    synchronize(device)
    seconds = time.perf_counter() - t0
    bad = [k for d in losses.values() for k, v in d.items() if not torch.isfinite(v)]
    values = {
        "it_s": plan.train_timed / seconds,
        "batch": batch,
        "clip_length": int(cfg.INPUT.CLIP.LENGTH),
        "size": list(cfg.INPUT.SIZE_TRAIN),
        "precision": precision,
        "peak_mib": _peak_mib(device),
    }
    del model, wrapped, optim, step, data
    _free_memory(device)
    h, w = values["size"]
    note = f"{precision}, clips of {values['clip_length']} at {h}x{w}"
    if bad:
        return {"status": "failed", "note": f"{note}; non-finite losses {bad}", "values": values}
    return {"status": "ok", "note": note, "values": values}


def _speed_row(report, guard, setting, name, kind, fn) -> Row:
    values = {"paper": setting.paper} if "FPS" in setting.paper and "inference" in name else {}
    skip = guard.reason_to_skip(kind)
    if skip:
        return report.add(Row("speed", setting.label, name, "skipped", skip, 0.0, values))
    t0 = time.perf_counter()
    try:
        res = fn()
    except torch.cuda.OutOfMemoryError as e:
        res = {"status": "skipped", "note": f"out of GPU memory: {_one_line(e)[:160]}"}
    except Exception as e:  # noqa: BLE001 - the row says what failed
        logger.exception("gpu_check speed %s %s", setting.label, name)
        res = {"status": "failed", "note": _one_line(e)}
    finally:
        _free_memory(_device("cuda" if torch.cuda.is_available() else "cpu"))
    values.update(res.get("values", {}))
    seconds = time.perf_counter() - t0
    return report.add(
        Row("speed", setting.label, name, res["status"], res.get("note", ""), seconds, values)
    )


def _setting_unavailable(setting: SpeedSetting) -> str:
    path = list_configs().get(setting.config)
    if path is None:
        return f"{setting.config} is not shipped"
    arch = _load_cfg(path).MODEL.META_ARCHITECTURE
    if arch not in META_ARCH_REGISTRY:
        return f"{arch} is not registered (import vps_d2.methods first)"
    return ""


# --------------------------------------------------------------------------- main
def environment(plan: CheckPlan) -> dict:
    """What the figures were measured on."""
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "device": plan.device,
        "smoke": plan.smoke,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "budget_s": plan.budget_s,
        "stream_atol": STREAM_ATOL,
        "stream_max_outside": STREAM_MAX_OUTSIDE,
    }
    if plan.device == "cuda" and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        meta.update(
            gpu=props.name,
            gpu_count=torch.cuda.device_count(),
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            capability=f"{props.major}.{props.minor}",
            cudnn=torch.backends.cudnn.version(),
            cudnn_benchmark=True,
            tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
            tf32_cudnn=torch.backends.cudnn.allow_tf32,
        )
    return meta


def run_gpu_check(
    plan: CheckPlan,
    train_cli: TrainCli,
    out_dir: str,
    *,
    configs: Sequence[str],
    json_path: str = "",
    guard: TimeGuard | None = None,
    speed: bool = True,
    checks: bool = True,
) -> Report:
    """Run the checks on ``configs`` (sample configs) then the speed rows of ``plan``.

    Args:
        plan: :func:`make_plan`.
        train_cli: ``argv -> exit code``, tools/train_net.py's ``cli``.
        out_dir: the runs' folders, the synthetic dataset.
        json_path: the JSON report, rewritten after each row (default out_dir/gpu_check.json).
        guard: the time budget (default ``TimeGuard(plan.budget_s)``).
        speed / checks: run that section.
    """
    guard = guard or TimeGuard(plan.budget_s)
    os.makedirs(out_dir, exist_ok=True)
    report = Report(json_path or os.path.join(out_dir, "gpu_check.json"), environment(plan))
    report.meta["configs"] = [os.path.basename(c) for c in configs]
    device = _device(plan.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed sizes: autotune once, in the warm-up
    if checks and configs:
        data_root = os.path.join(out_dir, "datasets")
        if not glob.glob(os.path.join(data_root, "vps-sample", "*")):
            make_sample_dataset(
                os.path.join(data_root, "vps-sample"),
                seed=3,
                train_clips=4,
                test_clips=1,
                frames_min=8,
                frames_max=10,
                height=64,
                width=80,
                overwrite=True,
            )
        per_config = [
            _Checks(plan, report, guard, train_cli, os.path.join(out_dir, "runs"), data_root, c)
            for c in configs
        ]
        for c in per_config:
            for precision in ("fp32", "fp16", "bf16"):
                c.train(precision)
            c.resume()
            c.eval_only()
            c.stream()
        for c in per_config:  # the costly one last, after every single-GPU check
            c.ddp()
    if speed:
        settings = []
        for s in plan.settings:
            why = _setting_unavailable(s)
            if why:
                report.add(Row("speed", s.label, "all", "skipped", why))
            else:
                settings.append(s)
        cheap = [v for v in INFER_VARIANTS if v.kind == "infer"]
        for s in settings:
            for v in cheap:
                measure = lambda s=s, v=v: _measure_inference(plan, s, v)  # noqa: E731
                _speed_row(report, guard, s, v.name, v.kind, measure)
            for amp in (False, True):
                name = "training AMP fp16" if amp else "training fp32"
                _speed_row(
                    report,
                    guard,
                    s,
                    name,
                    "train-speed",
                    lambda s=s, amp=amp: _measure_training(plan, s, amp),
                )
        for v in INFER_VARIANTS:  # torch.compile and exported runtimes last (slowest)
            if v.kind == "infer":
                continue
            for s in settings:
                why = RUNTIME_RUNNERS[v.runtime][0]() if v.runtime else ""
                if why:
                    report.add(Row("speed", s.label, v.name, "skipped", why))
                    continue
                measure = lambda s=s, v=v: _measure_inference(plan, s, v)  # noqa: E731
                _speed_row(report, guard, s, v.name, v.kind, measure)
    report.meta["elapsed_s"] = round(guard.elapsed, 1)
    report.write()
    return report
