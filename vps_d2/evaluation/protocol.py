"""The SUN-SEG toolbox protocol: reading frames, per-case accumulation, per-split results.

Reading (as the toolbox): GT and prediction are read as 8-bit grayscale; the prediction is
resized to the GT size with ``cv2.resize`` (bilinear, default flags) when the shapes
differ; GT is ``> 128``. Per case, the GT frames are sorted in SUN-SEG order
(:func:`vps_d2.data.frame_order.sort_frames`) and the first and last are dropped. Scalar
metrics are averaged over a case's frames, curves per threshold; a split's value is the
unweighted mean over its cases (curves per threshold), and ``max*`` / ``mean*`` are taken
over that averaged curve. Result keys are the toolbox's (:data:`METRIC_KEYS`), plus
``meanSpeCorrected`` / ``maxSpeCorrected`` (Specificity without the toolbox's
"0 whenever TP == 0" flaw).

Deviations:

* a case left without frames (two GT frames or fewer) is skipped with a warning instead of
  turning the split into NaN;
* 0/1 ground truth: a GT file whose maximum gray value is 1 (masks saved as 0/1, a quirk of
  some releases) is read as a binary mask, foreground = 1; the toolbox's ``> 128`` would
  read it as empty and score every metric of such frames as if the polyp were absent.
  0/255 masks (anti-aliased or not) read exactly as in the toolbox. Each evaluation path
  counts these files in :class:`CaseAccumulator` and logs ONE warning per dataset/split
  (:func:`warn_zero_one_gt`) naming it and a few files. ``literal=True`` (config
  ``TEST.VPS.LITERAL_GT``, ``tools/evaluate.py --literal-gt``) reads every GT file as the
  toolbox does (``> 128``), 0/1 masks included (they are still counted and reported);
* unreadable files (missing, empty, truncated JPEG/PNG) raise
  :class:`~vps_d2.data.io.DataReadError` / ``FileNotFoundError`` naming the file, where
  ``cv2.imread`` would return None or a partly decoded image.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence

import cv2
import numpy as np

from vps_d2.data.frame_order import case_sort_key, sort_frames
from vps_d2.data.io import DataReadError, read_image_bytes
from vps_d2.utils.file_io import atomic_write_bytes

from .metrics import CURVE_KEYS, SCALAR_KEYS, frame_metrics

__all__ = [
    "METRIC_KEYS",
    "SUN_SEG_TEST_SPLITS",
    "CaseAccumulator",
    "aggregate_cases",
    "average_cases",
    "case_metrics",
    "evaluate_case",
    "evaluate_case_task",
    "format_results_table",
    "format_value",
    "format_vps_results",
    "is_zero_one_gt",
    "list_gt_cases",
    "load_frame",
    "match_prediction",
    "read_gray",
    "read_gt",
    "summarize",
    "toolbox_frames",
    "warn_zero_one_gt",
    "write_results_csv",
    "write_results_json",
]

logger = logging.getLogger(__name__)

SUN_SEG_TEST_SPLITS = (
    "TestEasyDataset/Seen",
    "TestEasyDataset/Unseen",
    "TestHardDataset/Seen",
    "TestHardDataset/Unseen",
)
# Result keys, in the toolbox's names (+ the corrected Specificity), in print order.
METRIC_KEYS = (
    "Smeasure",
    "wFmeasure",
    "MAE",
    "adpEm",
    "meanEm",
    "maxEm",
    "adpFm",
    "meanFm",
    "maxFm",
    "meanSen",
    "maxSen",
    "meanSpe",
    "maxSpe",
    "meanDice",
    "maxDice",
    "meanIoU",
    "maxIoU",
    "meanSpeCorrected",
    "maxSpeCorrected",
)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


# ------------------------------------------------------------------------------ reading
def read_gray(path: str) -> np.ndarray:
    """uint8 (H, W) as ``cv2.imread(path, cv2.IMREAD_GRAYSCALE)`` reads it.

    The file is checked first (:func:`vps_d2.data.io.read_image_bytes`: missing, empty or
    truncated files raise an error naming the file) and decoded with ``cv2.imdecode`` and the
    same flag, which gives ``cv2.imread``'s pixels.
    """
    data = read_image_bytes(path)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    if img is None or img.size == 0:
        raise DataReadError(
            f"Cannot decode image file {path}: corrupt or not an image ({len(data)} bytes)"
        )
    return img  # H, W


def is_zero_one_gt(gray: np.ndarray) -> bool:
    """True for a GT image (uint8 (H, W)) saved as 0/1: its maximum is 1."""
    return gray.size > 0 and int(gray.max()) == 1


def read_gt(path: str, literal: bool = False) -> tuple[np.ndarray, bool]:
    """``(bool (H, W) GT, zero_one)`` of the GT file ``path``; the one GT reading.

    ``gray > 128`` as the toolbox, except a 0/1 mask (``zero_one``: maximum 1), read as
    ``gray == 1`` unless ``literal`` (the toolbox's reading: empty). See the module doc.
    """
    gray = read_gray(path)
    zero_one = is_zero_one_gt(gray)
    if zero_one and not literal:
        return gray == 1, True
    return gray > 128, zero_one


def match_prediction(pred: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """uint8 (H, W) prediction resized to ``shape`` = (H, W) with bilinear cv2.resize if needed."""
    if pred.shape != tuple(shape):
        pred = cv2.resize(pred, (int(shape[1]), int(shape[0])))
    return pred


def load_frame(
    gt_path: str, pred_path: str, literal: bool = False
) -> tuple[np.ndarray, np.ndarray, bool]:
    """(pred uint8 (H, W) at the GT size, gt bool (H, W), zero_one) of one frame."""
    gt, zero_one = read_gt(gt_path, literal)
    pred = match_prediction(read_gray(pred_path), gt.shape)
    return pred, gt, zero_one


def toolbox_frames(gt_paths: Iterable[str], case: str) -> list[str]:
    """The GT frames the toolbox scores: SUN-SEG order, first and last dropped."""
    return sort_frames(list(gt_paths), case)[1:-1]


def list_gt_cases(gt_dir: str) -> dict[str, list[str]]:
    """``gt_dir/<case>/<image>`` -> {case: [GT paths]} (cases in SUN-SEG order, hidden skipped)."""
    if not os.path.isdir(gt_dir):
        raise FileNotFoundError(f"GT folder not found: {gt_dir}")
    cases: dict[str, list[str]] = {}
    for case in sorted(os.listdir(gt_dir), key=case_sort_key):
        d = os.path.join(gt_dir, case)
        if case.startswith(".") or not os.path.isdir(d):
            continue
        files = [
            os.path.join(d, f)
            for f in os.listdir(d)
            if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)
        ]
        cases[case] = sort_frames(files, case)
    return cases


# ------------------------------------------------------------------------- accumulation
#: How many 0/1 GT file names a CaseAccumulator keeps as examples for the warning.
ZERO_ONE_EXAMPLES = 3


class CaseAccumulator:
    """Sums of the per-frame metrics of one case: 5 scalars and 7 curves of 256 values.

    Also counts the scored GT files that were 0/1 masks (``zero_one``, with up to
    :data:`ZERO_ONE_EXAMPLES` of their paths in ``zero_one_files``) for
    :func:`warn_zero_one_gt`. Memory is constant in the number of frames. ``state()`` /
    ``from_state()`` give a picklable form for gathering across processes; ``merge`` adds
    another's sums.
    """

    def __init__(self) -> None:
        self.n = 0
        self.scalars = np.zeros(len(SCALAR_KEYS))
        self.curves = np.zeros((len(CURVE_KEYS), 256))
        self.zero_one = 0
        self.zero_one_files: list[str] = []

    def note_zero_one(self, gt_path: str) -> None:
        """Record that the GT file ``gt_path`` of a scored frame is a 0/1 mask."""
        self.zero_one += 1
        if len(self.zero_one_files) < ZERO_ONE_EXAMPLES:
            self.zero_one_files.append(gt_path)

    def add(self, m: Mapping[str, object]) -> None:
        """Add one frame's :func:`~vps_d2.evaluation.metrics.frame_metrics` output."""
        self.scalars += [m[k] for k in SCALAR_KEYS]
        self.curves += np.stack([m[k] for k in CURVE_KEYS])
        self.n += 1

    def merge(self, other: CaseAccumulator) -> None:
        self.n += other.n
        self.scalars += other.scalars
        self.curves += other.curves
        self.zero_one += other.zero_one
        room = ZERO_ONE_EXAMPLES - len(self.zero_one_files)
        self.zero_one_files += other.zero_one_files[: max(room, 0)]

    def state(self) -> dict:
        return {
            "n": self.n,
            "scalars": self.scalars.copy(),
            "curves": self.curves.copy(),
            "zero_one": self.zero_one,
            "zero_one_files": list(self.zero_one_files),
        }

    @classmethod
    def from_state(cls, state: Mapping) -> CaseAccumulator:
        acc = cls()
        acc.n = int(state["n"])
        acc.scalars = np.asarray(state["scalars"], dtype=np.float64).copy()
        acc.curves = np.asarray(state["curves"], dtype=np.float64).copy()
        acc.zero_one = int(state.get("zero_one", 0))
        acc.zero_one_files = list(state.get("zero_one_files", ()))
        return acc

    def mean(self) -> dict:
        """Per-case means: scalars (float) and curves float64 (256,)."""
        if self.n == 0:
            raise ValueError("CaseAccumulator.mean(): no frame was added")
        out: dict = {k: float(v) for k, v in zip(SCALAR_KEYS, self.scalars / self.n)}
        out.update({k: c for k, c in zip(CURVE_KEYS, self.curves / self.n)})
        return out


def summarize(mean: Mapping) -> dict[str, float]:
    """Scalars + 256-point curves (per-frame keys) -> {metric: value} (mean*/max* of curves)."""
    out = {k: float(mean[k]) for k in SCALAR_KEYS}
    for k in CURVE_KEYS:
        out["mean" + k] = float(np.mean(mean[k]))
        out["max" + k] = float(np.max(mean[k]))
    return {k: out[k] for k in METRIC_KEYS}


def case_metrics(acc: CaseAccumulator) -> dict[str, float]:
    """One case's values under the result keys (its own curve's mean/max)."""
    return summarize(acc.mean())


def average_cases(cases: Mapping[str, CaseAccumulator]) -> dict | None:
    """Unweighted mean over cases of the per-case means (curves per threshold).

    Returns scalars (float) and curves float64 (256,) under the per-frame keys, or None
    when no case has a frame. Cases without frames are skipped with a warning.
    """
    means = []
    for case in sorted(cases, key=case_sort_key):
        acc = cases[case]
        if acc.n == 0:
            logger.warning("Case %s has no scored frame (first and last dropped); skipped", case)
            continue
        means.append(acc.mean())
    if not means:
        return None
    avg: dict = {k: float(np.mean([m[k] for m in means])) for k in SCALAR_KEYS}
    avg.update({k: np.mean(np.stack([m[k] for m in means]), axis=0) for k in CURVE_KEYS})
    return avg


def aggregate_cases(cases: Mapping[str, CaseAccumulator]) -> dict[str, float]:
    """Split result {metric: value}: mean over cases, then max*/mean* of the averaged curve.

    Empty ({}) when no case has a scored frame.
    """
    avg = average_cases(cases)
    return {} if avg is None else summarize(avg)


def evaluate_case(frames: Sequence[tuple[str, str]], literal: bool = False) -> CaseAccumulator:
    """Accumulate the metrics of ``frames`` = [(gt_path, pred_path), ...] of one case.

    ``literal``: read 0/1 GT masks as the toolbox does (see :func:`read_gt`).
    """
    acc = CaseAccumulator()
    for gt_path, pred_path in frames:
        pred, gt, zero_one = load_frame(gt_path, pred_path, literal)
        acc.add(frame_metrics(pred, gt))
        if zero_one:
            acc.note_zero_one(gt_path)
    return acc


def evaluate_case_task(task: tuple[str, str, Sequence[tuple[str, str]]], literal: bool = False):
    """``(split, case, frames)`` -> ``(split, case, CaseAccumulator)``; picklable for workers."""
    split, case, frames = task
    return split, case, evaluate_case(frames, literal)


def warn_zero_one_gt(
    name: str, cases: Mapping[str, CaseAccumulator], *, literal: bool, literal_option: str
) -> str | None:
    """Log ONE warning when scored GT files of the dataset/split ``name`` are 0/1 masks.

    ``literal_option`` names the switch for the toolbox's literal reading in the caller's
    terms (``"TEST.VPS.LITERAL_GT True"``, ``"--literal-gt"``). Returns the message (None
    when there is no 0/1 mask).
    """
    total = sum(acc.n for acc in cases.values())
    count = sum(acc.zero_one for acc in cases.values())
    if count == 0:
        return None
    examples = [f for c in sorted(cases, key=case_sort_key) for f in cases[c].zero_one_files]
    examples = examples[:ZERO_ONE_EXAMPLES]
    n_cases = sum(1 for acc in cases.values() if acc.zero_one)
    head = (
        f"{name}: {count} of {total} scored GT mask(s) in {n_cases} case(s) are 0/1 masks "
        f"(maximum value 1), e.g. {', '.join(examples)}"
    )
    if literal:
        msg = (
            f"{head}. With {literal_option} they are read as the SUN-SEG toolbox reads them "
            "(> 128), i.e. as EMPTY masks."
        )
    else:
        msg = (
            f"{head}. Scored as binary masks (foreground = 1); the SUN-SEG toolbox reads GT as "
            f"> 128 and would score them as empty (its reading: {literal_option})."
        )
    logger.warning(msg)
    return msg


# ------------------------------------------------------------------------------ output
def write_results_json(path: str, results: Mapping[str, Mapping[str, float]]) -> None:
    """{split: {metric: value}} at full precision."""
    text = json.dumps({s: dict(r) for s, r in results.items()}, indent=2)
    atomic_write_bytes(path, (text + "\n").encode())


def write_results_csv(path: str, rows: Iterable[tuple[str, str, int, Mapping[str, float]]]) -> None:
    """Per-case CSV: split, case, frames, then one column per metric (full precision)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["split", "case", "frames", *METRIC_KEYS])
    for split, case, n, vals in rows:
        w.writerow([split, case, n, *(repr(float(vals[k])) for k in METRIC_KEYS)])
    atomic_write_bytes(path, buf.getvalue().encode())


def format_value(key: str, value, digits: int = 3) -> str:
    """``value`` with ``digits`` decimals, or as an integer when it is a count (an int, or a
    ``num_*`` metric such as num_frames holding a whole number): "96", not "96.000"."""
    value = float(value)
    is_count = key.startswith("num_") or key.split("/")[-1].startswith("num_")
    if is_count and value.is_integer():
        return str(int(value))
    return f"{value:.{digits}f}"


def format_results_table(
    results: Mapping[str, Mapping[str, float]], digits: int = 3, keys: Sequence[str] = METRIC_KEYS
) -> str:
    """Plain-text table, one row per split, one column per metric, ``digits`` decimals."""
    names = list(results)
    first = max([len("split")] + [len(n) for n in names])
    cols = [max(len(k), digits + 3) for k in keys]
    lines = ["  ".join(["split".ljust(first)] + [k.rjust(c) for k, c in zip(keys, cols)])]
    for n in names:
        vals = [format_value(k, results[n][k], digits) if k in results[n] else "-" for k in keys]
        lines.append("  ".join([n.ljust(first)] + [v.rjust(c) for v, c in zip(vals, cols)]))
    return "\n".join(lines)


def format_vps_results(results: Mapping[str, Mapping[str, float]], digits: int = 3) -> str:
    """Markdown: for each split, a bold title and a one-row table of its metrics."""
    parts = []
    for split, res in results.items():
        if not isinstance(res, Mapping) or not res:
            continue
        keys = [k for k in METRIC_KEYS if k in res] + [k for k in res if k not in METRIC_KEYS]
        parts.append(
            f"**{split}**\n\n| {' | '.join(keys)} |\n|{'|'.join(['---'] * len(keys))}|\n"
            f"| {' | '.join(format_value(k, res[k], digits) for k in keys)} |"
        )
    return "\n\n".join(parts)
