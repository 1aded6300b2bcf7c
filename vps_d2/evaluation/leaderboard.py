"""A leaderboard of many methods' saved predictions, scored with one protocol.

Every method is scored on the same splits, cases and frames with the SUN-SEG toolbox
protocol (:mod:`.protocol`); each GT frame is decoded once per run, whatever the number of
methods (:func:`score_case_task`). On top of the per-split values the leaderboard gives:

* max and mean Dice (and IoU) as two columns each, never one "Dice";
* per-attribute rows: pathological class, shape (Paris), size and location of each case,
  from the dataset's own ``<split>/Classification/cases.csv`` (or
  ``<root>/Classification/cases.csv``) when it has one, else, for the SUN-SEG test splits,
  the 285-case table shipped with vps_d2
  (:func:`vps_d2.data.datasets.sun_seg.sun_seg_cases`); each row with its cases and frames;
* bootstrap confidence intervals over cases (:func:`bootstrap_ci`, through
  ``scipy.stats.bootstrap``): seeded, the same resampled cases for every method (paired);
* a Wilcoxon signed-rank test over cases between every two methods
  (``scipy.stats.wilcoxon``) with its p-value, the Holm-adjusted p-value over the pairs of
  one split and metric, and the number of cases each method wins;
* coverage: a method missing predictions is named with its missing frames
  (:class:`MissingPredictionsError`), or, when the caller accepts it, scored on the frames
  it has, marked incomplete and kept out of the "best" marks and of the tests on the cases
  it lacks, never silently scored lower.

Per-case values: scalars (S-measure, weighted F, MAE) are a case's frame mean, exactly the
numbers averaged into the split value; ``mean*`` values are the mean over thresholds of the
case's curve, so their case mean is the split value too; ``max*`` values of one case are
the maximum of that case's own curve (the split's ``max*`` is the maximum of the
case-averaged curve, which no per-case number averages to). The bootstrap resamples the
case curves and recomputes the split's own statistic, ``max*`` included.

Output (:func:`write_leaderboard`): Markdown (``.md``), CSV (``.csv``, one tidy table) and
LaTeX with booktabs (``.tex``), chosen by the file extension and written atomically.
"""

from __future__ import annotations

import csv
import fnmatch
import inspect
import io
import logging
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from vps_d2.data.datasets.sun_seg import (
    CASE_TABLE_FILE,
    case_key,
    parse_case_table,
    sun_seg_cases,
)
from vps_d2.data.frame_order import case_sort_key
from vps_d2.utils.file_io import atomic_write_bytes

from .metrics import CURVE_KEYS, PR_KEYS, SCALAR_KEYS, frame_metrics
from .protocol import (
    METRIC_KEYS,
    SUN_SEG_TEST_SPLITS,
    CaseAccumulator,
    average_cases,
    list_gt_cases,
    match_prediction,
    read_gray,
    read_gt,
    summarize,
    toolbox_frames,
)

__all__ = [
    "ATTRIBUTES",
    "ATTRIBUTE_KEYS",
    "CI_KEYS",
    "LEADERBOARD_FORMATS",
    "LOWER_IS_BETTER",
    "METRIC_LABELS",
    "TABLE_KEYS",
    "TEST_KEYS",
    "FramePlan",
    "Leaderboard",
    "MethodCaseAccumulator",
    "MissingPredictionsError",
    "PairTest",
    "bootstrap_ci",
    "build_leaderboard",
    "case_attributes",
    "collect_frames",
    "format_csv",
    "format_latex",
    "format_markdown",
    "format_per_case_csv",
    "holm",
    "paired_test",
    "resolve_methods",
    "score_case_task",
    "size_group",
    "write_leaderboard",
]

logger = logging.getLogger(__name__)

#: Columns of the main table, in order (max and mean Dice/IoU kept apart).
TABLE_KEYS = (
    "Smeasure",
    "meanEm",
    "wFmeasure",
    "MAE",
    "maxDice",
    "meanDice",
    "maxIoU",
    "meanIoU",
)
#: Metrics given a bootstrap confidence interval.
CI_KEYS = ("Smeasure", "meanEm", "wFmeasure", "maxDice", "meanDice")
#: Metrics of the paired tests between methods.
TEST_KEYS = ("Smeasure", "maxDice", "meanDice")
#: Metrics of the per-attribute rows.
ATTRIBUTE_KEYS = ("Smeasure", "maxDice", "meanDice")
LOWER_IS_BETTER = frozenset({"MAE"})
METRIC_LABELS = {
    "Smeasure": "S-measure",
    "meanEm": "mean E-measure",
    "maxEm": "max E-measure",
    "wFmeasure": "weighted F",
    "MAE": "MAE",
    "meanFm": "mean F-measure",
    "maxFm": "max F-measure",
    "maxDice": "max Dice",
    "meanDice": "mean Dice",
    "maxIoU": "max IoU",
    "meanIoU": "mean IoU",
    "meanSen": "mean Sen",
    "maxSen": "max Sen",
}
#: (case-table column, name shown) of the per-attribute breakdown.
ATTRIBUTES = (
    ("class_name", "pathology"),
    ("shape", "shape"),
    ("size", "size"),
    ("location", "location"),
)
LEADERBOARD_FORMATS = (".md", ".csv", ".tex")
_LOCATIONS = {
    "C": "C (cecum)",
    "A": "A (ascending colon)",
    "T": "T (transverse colon)",
    "D": "D (descending colon)",
    "S": "S (sigmoid colon)",
    "R": "R (rectum)",
}
_SHAPES = {
    "Ip": "Ip (pedunculated)",
    "Isp": "Isp (semipedunculated)",
    "Is": "Is (sessile)",
    "IIa": "IIa (slightly elevated)",
}
_MAX_LISTED = 5  # missing files named per method


class MissingPredictionsError(ValueError):
    """Some methods lack predictions of scored frames; the message names each method."""


# ------------------------------------------------------------------------------ methods
def resolve_methods(pred_root: str, patterns: Sequence[str]) -> list[str]:
    """Method folder names under ``pred_root`` from names, shell globs or ``"all"``.

    ``"all"`` is every non-hidden folder of ``pred_root`` (sorted); a glob (``*``, ``?``,
    ``[``) the folders it matches (sorted); a plain name must be a folder. Order follows
    ``patterns``, duplicates dropped.

    Raises:
        FileNotFoundError: ``pred_root`` is not a folder.
        ValueError: a name or glob that matches no folder (the folders are listed).
    """
    if not os.path.isdir(pred_root):
        raise FileNotFoundError(f"--pred-root {pred_root} is not a folder")
    folders = sorted(
        d
        for d in os.listdir(pred_root)
        if not d.startswith(".") and os.path.isdir(os.path.join(pred_root, d))
    )
    out: list[str] = []
    for pat in patterns:
        if pat == "all":
            found = folders
        elif any(c in pat for c in "*?["):
            found = [d for d in folders if fnmatch.fnmatchcase(d, pat)]
        else:
            found = [pat] if os.path.isdir(os.path.join(pred_root, pat)) else []
        if not found:
            have = ", ".join(folders) if folders else "none"
            raise ValueError(
                f"--model {pat!r} matches no method folder under {pred_root} (folders: {have})"
            )
        out += [d for d in found if d not in out]
    return out


# ------------------------------------------------------------------------------- frames
@dataclass
class FramePlan:
    """What a leaderboard scores: the toolbox's frames of every case and each method's files.

    Attributes:
        methods: method folder names.
        splits: the scored splits.
        tasks: ``[(split, case, [(gt_path, {method: pred_path}), ...]), ...]``, one per
            case with frames left after the first/last drop; a method without the file of
            a frame is absent from that frame's dict.
        expected: ``{split: {case: number of GT frames scored}}``.
        missing: ``{method: [missing prediction paths]}`` (methods with none are absent).
    """

    methods: list[str]
    splits: list[str]
    tasks: list
    expected: dict[str, dict[str, int]]
    missing: dict[str, list[str]] = field(default_factory=dict)

    def missing_message(self) -> str:
        """One paragraph naming each method with missing frames, its count and examples."""
        total = sum(sum(c.values()) for c in self.expected.values())
        lines = []
        for m, paths in self.missing.items():
            per_split: dict[str, int] = {}
            for split, _case, frames in self.tasks:
                n = sum(1 for _, preds in frames if m not in preds)
                if n:
                    per_split[split] = per_split.get(split, 0) + n
            where = ", ".join(f"{s}: {n}" for s, n in per_split.items())
            shown = ", ".join(paths[:_MAX_LISTED])
            more = f" and {len(paths) - _MAX_LISTED} more" if len(paths) > _MAX_LISTED else ""
            lines.append(
                f"  {m}: {len(paths)} of {total} frame(s) missing ({where}), e.g. {shown}{more}"
            )
        return "\n".join(lines)


def _default_splits(gt_root: str) -> list[str]:
    splits = [s for s in SUN_SEG_TEST_SPLITS if os.path.isdir(os.path.join(gt_root, s, "GT"))]
    if not splits:
        raise ValueError(
            f"No SUN-SEG test split (<split>/GT) under {gt_root}; expected some of "
            f"{', '.join(SUN_SEG_TEST_SPLITS)} or pass --splits"
        )
    return splits


def collect_frames(
    gt_root: str, pred_root: str, methods: Sequence[str], splits: Sequence[str] | None = None
) -> FramePlan:
    """The frames every method is scored on (the toolbox's: SUN-SEG order, first and last
    of each case dropped), each method's prediction files and the missing ones.

    Args:
        gt_root: ``<gt_root>/<split>/GT/<case>/<frame>.png``.
        pred_root: ``<pred_root>/<method>/<split>/<case>/<GT file name>``.
        methods: folder names under ``pred_root`` (:func:`resolve_methods`).
        splits: default: the SUN-SEG test splits that exist under ``gt_root``.
    """
    if not os.path.isdir(gt_root):
        raise FileNotFoundError(f"--gt-root {gt_root} is not a folder")
    if not methods:
        raise ValueError("No method to score")
    splits = list(splits) if splits else _default_splits(gt_root)
    tasks, expected, missing = [], {}, {}
    for split in splits:
        gt_dir = os.path.join(gt_root, split, "GT")
        if not os.path.isdir(gt_dir):
            raise FileNotFoundError(f"Split {split!r}: GT folder {gt_dir} not found")
        cases = list_gt_cases(gt_dir)
        if not cases:
            raise ValueError(f"Split {split!r}: no case folder in {gt_dir}")
        for case, gt_paths in cases.items():
            gts = toolbox_frames(gt_paths, case)
            if not gts:
                logger.warning(
                    "%s/%s has %d GT frame(s): none left after dropping the first and the "
                    "last; skipped",
                    split,
                    case,
                    len(gt_paths),
                )
                continue
            frames = []
            for g in gts:
                preds = {}
                for m in methods:
                    p = os.path.join(pred_root, m, split, case, os.path.basename(g))
                    if os.path.isfile(p):
                        preds[m] = p
                    else:
                        missing.setdefault(m, []).append(p)
                frames.append((g, preds))
            tasks.append((split, case, frames))
            expected.setdefault(split, {})[case] = len(frames)
    if not tasks:
        raise ValueError(f"Nothing to evaluate: no case with scored frames in {', '.join(splits)}")
    return FramePlan(list(methods), splits, tasks, expected, missing)


# -------------------------------------------------------------------------------- scoring
class MethodCaseAccumulator(CaseAccumulator):
    """:class:`~vps_d2.evaluation.protocol.CaseAccumulator` that also sums the precision and
    recall curves (:data:`~vps_d2.evaluation.metrics.PR_KEYS`, float64 (2, 256))."""

    def __init__(self) -> None:
        super().__init__()
        self.pr = np.zeros((len(PR_KEYS), 256))

    def add(self, m: Mapping[str, object]) -> None:
        super().add(m)
        self.pr += np.stack([m[k] for k in PR_KEYS])

    def merge(self, other: CaseAccumulator) -> None:
        super().merge(other)
        self.pr += getattr(other, "pr", 0.0)

    def state(self) -> dict:
        return {**super().state(), "pr": self.pr.copy()}

    @classmethod
    def from_state(cls, state: Mapping) -> MethodCaseAccumulator:
        acc = super().from_state(state)
        acc.pr = np.asarray(state["pr"], dtype=np.float64).copy()
        return acc

    def mean(self) -> dict:
        out = super().mean()
        out.update({k: c for k, c in zip(PR_KEYS, self.pr / self.n)})
        return out


def score_case_task(task, literal: bool = False):
    """``(split, case, frames)`` of a :class:`FramePlan` -> ``(split, case, {method:
    MethodCaseAccumulator})``: each GT frame read once, every method's prediction scored
    against it. Picklable, for worker processes. ``literal``: see
    :func:`vps_d2.evaluation.protocol.read_gt`."""
    split, case, frames = task
    accs: dict[str, MethodCaseAccumulator] = {}
    for gt_path, preds in frames:
        gt, zero_one = read_gt(gt_path, literal)
        for method, pred_path in preds.items():
            pred = match_prediction(read_gray(pred_path), gt.shape)
            acc = accs.setdefault(method, MethodCaseAccumulator())
            acc.add(frame_metrics(pred, gt, precision_recall=True))
            if zero_one:
                acc.note_zero_one(gt_path)
    return split, case, accs


# ---------------------------------------------------------------------------- statistics
def _rng_kwargs(seed: int) -> dict:
    """``rng=`` (SciPy >= 1.15) or ``random_state=``: the same seeded Generator either way."""
    name = "rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state"
    return {name: np.random.default_rng(seed)}


def _reducer(key: str) -> Callable[[np.ndarray], np.ndarray]:
    if key.startswith("max"):
        return lambda c: c.max(axis=-1)
    return lambda c: c.mean(axis=-1)


def bootstrap_ci(
    values: np.ndarray,
    *,
    curve: bool = False,
    reduce: str = "mean",
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    method: str = "percentile",
) -> tuple[float, float]:
    """Bootstrap confidence interval over cases of a split statistic.

    Args:
        values: float (n_cases,) per-case values (the statistic is their mean), or with
            ``curve`` float (n_cases, T) per-case curves (the statistic is ``reduce``,
            "max" or "mean", of the case-averaged curve, e.g. maxDice).
        n_resamples, seed, confidence, method: of ``scipy.stats.bootstrap``; the case
            indices are resampled, so two calls with the same seed and number of cases draw
            the same resampled cases (a paired bootstrap across methods).

    Returns:
        (low, high); (nan, nan) with fewer than two cases.
    """
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[0]
    if n < 2:
        return math.nan, math.nan
    reducer = _reducer("max" if reduce == "max" else "mean")

    def statistic(idx, axis=-1):
        idx = np.asarray(idx)
        if not curve:
            return values[idx].mean(axis=-1)
        return reducer(values[idx].mean(axis=-2))

    res = stats.bootstrap(
        (np.arange(n),),
        statistic,
        n_resamples=n_resamples,
        vectorized=True,
        confidence_level=confidence,
        method=method,
        batch=max(1, min(n_resamples, 2_000_000 // max(values.size, 1))),
        **_rng_kwargs(seed),
    )
    ci = res.confidence_interval
    return float(ci.low), float(ci.high)


@dataclass
class PairTest:
    """Wilcoxon signed-rank test over the cases of one split, method ``a`` vs ``b``.

    ``wins_a`` / ``wins_b``: cases where that method is better (lower for MAE), ``ties``
    equal; ``mean_diff`` = mean of (a - b) over the ``n`` cases; ``p_holm``: Holm-adjusted
    over the pairs of the same split and metric.
    """

    split: str
    metric: str
    a: str
    b: str
    n: int
    mean_diff: float
    wins_a: int
    wins_b: int
    ties: int
    p: float
    p_holm: float = math.nan

    def significant(self, alpha: float = 0.05) -> bool:
        return bool(self.p_holm < alpha)


def paired_test(a: Sequence[float], b: Sequence[float], *, lower_is_better: bool = False):
    """(p, wins_a, wins_b, ties, mean_diff) of a two-sided Wilcoxon signed-rank test.

    ``scipy.stats.wilcoxon`` (zero differences dropped, exact distribution for small
    samples without ties); p = 1 when every difference is 0; nan with no case.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    d = a - b
    better = d < 0 if lower_is_better else d > 0
    worse = d > 0 if lower_is_better else d < 0
    wins_a, wins_b = int(better.sum()), int(worse.sum())
    ties = int(d.size - wins_a - wins_b)
    if d.size == 0:
        return math.nan, 0, 0, 0, math.nan
    if wins_a + wins_b == 0:
        return 1.0, 0, 0, ties, 0.0
    p = float(stats.wilcoxon(a, b, zero_method="wilcox", alternative="two-sided").pvalue)
    return p, wins_a, wins_b, ties, float(d.mean())


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (same order; nan stays nan and is not counted)."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = ok.size
    running = 0.0
    for rank, i in enumerate(ok[np.argsort(p[ok], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


# --------------------------------------------------------------------------- attributes
def size_group(size: str) -> str:
    """Clinical size class of a case-table size (``6mm``, ``15mm-`` = 15 mm or more):
    diminutive (<= 5 mm), small (6-9 mm), large (>= 10 mm); other text is kept as is."""
    m = re.match(r"^\s*(\d+(?:\.\d+)?)\s*mm\s*(-|\+)?\s*$", size or "", re.IGNORECASE)
    if m is None:
        return size.strip() if size else ""
    mm = float(m.group(1))
    if mm <= 5:
        return "<= 5 mm (diminutive)"
    if mm < 10:
        return "6-9 mm (small)"
    return ">= 10 mm (large)"


def _attribute_value(column: str, raw: str) -> str:
    raw = (raw or "").strip()
    if not raw:
        return ""
    if column == "class_name":
        return raw.replace("_", " ")
    if column == "size":
        return size_group(raw)
    if column == "location":
        return _LOCATIONS.get(raw.upper(), raw)
    if column == "shape":
        return _SHAPES.get(raw, raw)
    return raw


def _dataset_case_table(gt_root: str, split: str) -> tuple[list[dict], str] | None:
    for folder in (os.path.join(gt_root, split), gt_root):
        path = os.path.join(folder, "Classification", CASE_TABLE_FILE)
        if os.path.isfile(path):
            with open(path, encoding="utf-8-sig") as f:
                return parse_case_table(f.read(), path), path
    return None


def case_attributes(
    gt_root: str, cases: Mapping[str, Iterable[str]]
) -> tuple[dict[tuple[str, str], dict[str, str]], list[str]]:
    """``({(split, case): {column: group}}, [sources])`` of the cases to break down.

    Per split: the dataset's ``cases.csv`` (``<split>/Classification/`` first, then
    ``<root>/Classification/``) if there is one, with whichever of the :data:`ATTRIBUTES`
    columns it has; else, for a SUN-SEG test split of a dataset none of whose splits has
    its own table (the real SUN-SEG release has none), the packaged SUN-SEG case table,
    matched by case number (:func:`~vps_d2.data.datasets.sun_seg.case_key`). Values are
    grouped for display (:func:`size_group`, location and shape names).
    """
    packaged = {case_key(r["case"]): r for r in sun_seg_cases()}
    own = {split: _dataset_case_table(gt_root, split) for split in cases}
    any_own = any(v is not None for v in own.values())
    out: dict[tuple[str, str], dict[str, str]] = {}
    sources: list[str] = []
    for split, names in cases.items():
        found = own[split]
        if found is not None:
            rows, source = found
            table = {case_key(r["case"]): r for r in rows}
        elif split in SUN_SEG_TEST_SPLITS and not any_own:
            table, source = packaged, "the SUN-SEG case table shipped with vps_d2"
        else:
            continue
        if source not in sources:
            sources.append(source)
        for case in names:
            row = table.get(case_key(case))
            if row is None:
                continue
            vals = {c: _attribute_value(c, row.get(c, "")) for c, _ in ATTRIBUTES}
            out[(split, case)] = {c: v for c, v in vals.items() if v}
    return out, sources


# --------------------------------------------------------------------------- leaderboard
@dataclass
class Leaderboard:
    """Every number of a leaderboard (see the module doc); formatted by :func:`format_markdown`,
    :func:`format_csv` and :func:`format_latex`.

    Attributes:
        methods, splits: in order.
        results: ``{method: {split: {metric: value}}}`` (the toolbox's keys, all of them).
        ci: ``{method: {split: {metric: (low, high)}}}`` for :data:`CI_KEYS`.
        frames: ``{method: {split: (scored, expected)}}`` frames.
        cases: ``{split: number of scored cases}``.
        incomplete: methods with missing frames (scored on the frames they have).
        tests: the :class:`PairTest` of every split, metric and pair.
        attributes: ``[(column, group, cases, frames, {method: {metric: value}})]``, all
            scored splits pooled, each case weighing the same.
        attribute_sources: where the case attributes came from.
        curves: ``{split: {method: {key: float64 (256,)}}}`` (CURVE_KEYS + PR_KEYS), for
            plots (:mod:`vps_d2.visualization.curves`).
        settings: bootstrap and test settings, as shown.
        per_case: ``{method: {split: {case: {metric: value}}}}``.
        case_frames: ``{method: {split: {case: scored frames}}}``.
        missing: ``{method: [missing prediction paths]}``.
    """

    methods: list[str]
    splits: list[str]
    results: dict
    ci: dict
    frames: dict
    cases: dict
    incomplete: list[str]
    tests: list[PairTest]
    attributes: list
    attribute_sources: list[str]
    curves: dict
    settings: dict
    per_case: dict
    case_frames: dict = field(default_factory=dict)
    missing: dict = field(default_factory=dict)

    def best(self, split: str, key: str) -> float | None:
        """Best value of ``key`` in ``split`` among complete methods (None if none)."""
        vals = [
            self.results[m][split][key]
            for m in self.methods
            if m not in self.incomplete and split in self.results[m]
        ]
        vals = [v for v in vals if not math.isnan(v)]
        if not vals:
            return None
        return min(vals) if key in LOWER_IS_BETTER else max(vals)


def _split_average(accs: Mapping[str, MethodCaseAccumulator]) -> tuple[dict, dict] | None:
    """(summary {metric: value}, curves {key: (256,)}) of one method on one split."""
    scored = {c: a for c, a in accs.items() if a.n > 0}
    avg = average_cases(scored)
    if avg is None:
        return None
    curves = {k: np.asarray(avg[k]) for k in CURVE_KEYS}
    means = [scored[c].mean() for c in sorted(scored, key=case_sort_key)]
    curves.update({k: np.mean(np.stack([m[k] for m in means]), axis=0) for k in PR_KEYS})
    return summarize(avg), curves


def _per_case_arrays(accs: Sequence[MethodCaseAccumulator]) -> tuple[np.ndarray, np.ndarray]:
    """Per-case scalar means (n, len(SCALAR_KEYS)) and curves (n, len(CURVE_KEYS), 256)."""
    means = [a.mean() for a in accs]
    scal = np.array([[m[k] for k in SCALAR_KEYS] for m in means], dtype=np.float64)
    curv = np.array([[m[k] for k in CURVE_KEYS] for m in means], dtype=np.float64)
    return scal.reshape(len(means), len(SCALAR_KEYS)), curv.reshape(len(means), -1, 256)


def _ci_of(key: str, scal: np.ndarray, curv: np.ndarray, **kw) -> tuple[float, float]:
    if key in SCALAR_KEYS:
        return bootstrap_ci(scal[:, SCALAR_KEYS.index(key)], **kw)
    for prefix in ("max", "mean"):
        if key.startswith(prefix) and key[len(prefix) :] in CURVE_KEYS:
            c = curv[:, CURVE_KEYS.index(key[len(prefix) :])]
            return bootstrap_ci(c, curve=True, reduce=prefix, **kw)
    raise KeyError(f"No bootstrap for metric {key!r}")


def build_leaderboard(
    plan: FramePlan,
    per_case: Mapping[str, Mapping[str, Mapping[str, MethodCaseAccumulator]]],
    *,
    gt_root: str | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    ci_method: str = "percentile",
    allow_missing: bool = False,
    alpha: float = 0.05,
) -> Leaderboard:
    """The leaderboard of ``plan``'s methods from their per-case accumulators.

    Args:
        plan: from :func:`collect_frames`.
        per_case: ``{split: {case: {method: MethodCaseAccumulator}}}`` (the outputs of
            :func:`score_case_task` on ``plan.tasks``).
        gt_root: where to look for the dataset's ``cases.csv`` (per-attribute rows).
        n_resamples, seed, confidence, ci_method: the bootstrap (:func:`bootstrap_ci`).
        allow_missing: score methods with missing frames on the frames they have (marked
            incomplete); otherwise raise :class:`MissingPredictionsError` naming them.
        alpha: significance level of the Holm-adjusted paired tests.
    """
    if plan.missing and not allow_missing:
        raise MissingPredictionsError(
            "Prediction files missing; every method must have every scored frame "
            "(--skip-missing scores them on the frames they have, marked incomplete):\n"
            + plan.missing_message()
        )
    methods, splits = plan.methods, [s for s in plan.splits if s in plan.expected]
    incomplete = [m for m in methods if m in plan.missing]
    if incomplete:
        logger.warning(
            "Scored on the frames they have, marked incomplete and left out of the best marks:\n%s",
            plan.missing_message(),
        )
    kw = dict(n_resamples=n_resamples, seed=seed, confidence=confidence, method=ci_method)
    results: dict = {m: {} for m in methods}
    ci: dict = {m: {} for m in methods}
    frames: dict = {m: {} for m in methods}
    curves: dict = {}
    cases_per_split: dict = {}
    case_vals: dict = {m: {} for m in methods}  # {m: {split: {case: {metric: value}}}}
    complete_case: dict = {m: {} for m in methods}  # {m: {split: set(cases)}}
    case_frames: dict = {m: {} for m in methods}  # {m: {split: {case: scored frames}}}
    for split in splits:
        expected = plan.expected[split]
        order = sorted(expected, key=case_sort_key)
        cases_per_split[split] = len(order)
        split_cases = per_case.get(split, {})
        for m in methods:
            accs = {c: split_cases.get(c, {}).get(m) for c in order}
            accs = {c: a for c, a in accs.items() if a is not None and a.n > 0}
            frames[m][split] = (sum(a.n for a in accs.values()), sum(expected.values()))
            complete_case[m][split] = {c for c, a in accs.items() if a.n == expected[c]}
            avg = _split_average(accs)
            if avg is None:
                logger.warning("%s: no scored frame in %s", m, split)
                continue
            results[m][split], curves.setdefault(split, {})[m] = avg
            case_vals[m][split] = {c: summarize(a.mean()) for c, a in accs.items()}
            case_frames[m][split] = {c: a.n for c, a in accs.items()}
            scal, curv = _per_case_arrays([accs[c] for c in order if c in accs])
            ci[m][split] = {k: _ci_of(k, scal, curv, **kw) for k in CI_KEYS}
    tests = _pair_tests(methods, splits, case_vals, complete_case)
    attributes, sources = _attribute_rows(plan, per_case, methods, gt_root)
    settings = {
        "bootstrap": f"{ci_method} bootstrap over cases, {n_resamples} resamples, seed {seed}, "
        f"{confidence:.0%} confidence, the same resampled cases for every method",
        "test": "two-sided Wilcoxon signed-rank over cases (scipy.stats.wilcoxon); p Holm-"
        f"adjusted over the pairs of one split and metric; significant: p (Holm) < {alpha:g}",
        "alpha": alpha,
    }
    return Leaderboard(
        methods=list(methods),
        splits=splits,
        results=results,
        ci=ci,
        frames=frames,
        cases=cases_per_split,
        incomplete=incomplete,
        tests=tests,
        attributes=attributes,
        attribute_sources=sources,
        curves=curves,
        settings=settings,
        per_case=case_vals,
        case_frames=case_frames,
        missing={m: list(p) for m, p in plan.missing.items()},
    )


def _pair_tests(methods, splits, case_vals, complete_case) -> list[PairTest]:
    tests: list[PairTest] = []
    for split in splits:
        for key in TEST_KEYS:
            group = []
            for i, a in enumerate(methods):
                for b in methods[i + 1 :]:
                    va, vb = case_vals[a].get(split, {}), case_vals[b].get(split, {})
                    common = sorted(
                        complete_case[a][split] & complete_case[b][split], key=case_sort_key
                    )
                    xa = [va[c][key] for c in common]
                    xb = [vb[c][key] for c in common]
                    p, wa, wb, ties, diff = paired_test(
                        xa, xb, lower_is_better=key in LOWER_IS_BETTER
                    )
                    group.append(PairTest(split, key, a, b, len(common), diff, wa, wb, ties, p))
            for t, adj in zip(group, holm([t.p for t in group])):
                t.p_holm = adj
            tests += group
    return tests


def _attribute_rows(plan, per_case, methods, gt_root):
    cases = {s: list(c) for s, c in plan.expected.items()}
    if gt_root is None:
        return [], []
    attrs, sources = case_attributes(gt_root, cases)
    rows = []
    for column, _ in ATTRIBUTES:
        groups: dict[str, list[tuple[str, str]]] = {}
        for (split, case), a in attrs.items():
            if column in a:
                groups.setdefault(a[column], []).append((split, case))
        for group in sorted(groups, key=_group_order(column)):
            members = groups[group]
            n_frames = sum(plan.expected[s][c] for s, c in members)
            vals = {}
            for m in methods:
                accs = {
                    f"{s}/{c}": per_case.get(s, {}).get(c, {}).get(m)
                    for s, c in members
                    if per_case.get(s, {}).get(c, {}).get(m) is not None
                }
                avg = _split_average({k: a for k, a in accs.items() if a.n > 0})
                if avg is not None:
                    vals[m] = {k: avg[0][k] for k in ATTRIBUTE_KEYS}
            rows.append((column, group, len(members), n_frames, vals))
    return rows, sources


def _group_order(column: str):
    if column == "size":
        rank = {"<= 5 mm (diminutive)": 0, "6-9 mm (small)": 1, ">= 10 mm (large)": 2}
        return lambda g: (rank.get(g, 3), g)
    if column == "location":
        order = list(_LOCATIONS.values())
        return lambda g: (order.index(g) if g in order else len(order), g)
    return lambda g: g


# ------------------------------------------------------------------------------- formats
def _fmt(v: float | None, digits: int) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{digits}f}"


def _fmt_p(p: float) -> str:
    if math.isnan(p):
        return "-"
    return f"{p:.2g}" if p < 0.001 else f"{p:.3f}"


def _frames_cell(lb: Leaderboard, m: str, split: str) -> str:
    got, exp = lb.frames[m].get(split, (0, 0))
    return f"{got}" if got == exp else f"{got}/{exp} (incomplete)"


def _tables(lb: Leaderboard, digits: int):
    """The leaderboard as (title, header, rows, bold) tables; bold: set of (row, col)."""
    out = []
    for split in lb.splits:
        header = ["Method", "Frames"] + [METRIC_LABELS[k] for k in TABLE_KEYS]
        rows, bold = [], set()
        for r, m in enumerate(lb.methods):
            res = lb.results[m].get(split)
            row = [m, _frames_cell(lb, m, split)]
            for c, k in enumerate(TABLE_KEYS):
                v = None if res is None else res[k]
                row.append(_fmt(v, digits))
                best = lb.best(split, k)
                if v is not None and m not in lb.incomplete and best is not None:
                    if round(v, digits) == round(best, digits):
                        bold.add((r, c + 2))
            rows.append(row)
        out.append((f"{split} ({lb.cases[split]} cases)", header, rows, bold))
    for split in lb.splits:
        header = ["Method"] + [f"{METRIC_LABELS[k]} [95% CI]" for k in CI_KEYS]
        rows = []
        for m in lb.methods:
            res, ci = lb.results[m].get(split), lb.ci[m].get(split)
            row = [m]
            for k in CI_KEYS:
                if res is None:
                    row.append("-")
                    continue
                lo, hi = ci[k]
                row.append(f"{_fmt(res[k], digits)} [{_fmt(lo, digits)}, {_fmt(hi, digits)}]")
            rows.append(row)
        out.append((f"{split}: confidence intervals", header, rows, set()))
    if len(lb.methods) > 1:
        for split in lb.splits:
            header = ["Metric", "A", "B", "Cases", "Mean A-B", "Wins A", "Wins B", "Ties"]
            header += ["p", "p (Holm)", "Significant"]
            rows = []
            for t in (t for t in lb.tests if t.split == split):
                sig = "yes" if t.significant(lb.settings.get("alpha", 0.05)) else "no"
                rows.append(
                    [
                        METRIC_LABELS[t.metric],
                        t.a,
                        t.b,
                        str(t.n),
                        "-" if math.isnan(t.mean_diff) else f"{t.mean_diff:+.{digits}f}",
                        str(t.wins_a),
                        str(t.wins_b),
                        str(t.ties),
                        _fmt_p(t.p),
                        _fmt_p(t.p_holm),
                        sig,
                    ]
                )
            out.append((f"{split}: paired tests", header, rows, set()))
    for column, name in ATTRIBUTES:
        rows_of = [r for r in lb.attributes if r[0] == column]
        if not rows_of:
            continue
        header = [name.capitalize(), "Cases", "Frames"]
        header += [f"{METRIC_LABELS[k]}: {m}" for k in ATTRIBUTE_KEYS for m in lb.methods]
        rows, bold = [], set()
        for r, (_, group, n_cases, n_frames, vals) in enumerate(rows_of):
            row = [group, str(n_cases), str(n_frames)]
            for ki, k in enumerate(ATTRIBUTE_KEYS):
                have = {m: vals[m][k] for m in lb.methods if m in vals and m not in lb.incomplete}
                best = max(have.values()) if have else None
                for mi, m in enumerate(lb.methods):
                    v = vals.get(m, {}).get(k)
                    row.append(_fmt(v, digits))
                    if best is not None and m in have and round(v, digits) == round(best, digits):
                        bold.add((r, 3 + ki * len(lb.methods) + mi))
            rows.append(row)
        out.append((f"By {name} (all scored splits pooled)", header, rows, bold))
    return out


def _notes(lb: Leaderboard) -> list[str]:
    notes = [
        "max Dice / max IoU: the maximum over the 256 thresholds of the case-averaged curve; "
        "mean Dice / mean IoU: its mean over the thresholds (SUN-SEG toolbox protocol).",
        "Bold: the best of each column among methods with every frame.",
        "Confidence intervals: " + lb.settings["bootstrap"] + ".",
        "Paired tests: " + lb.settings["test"] + "; per-case max Dice is the maximum of the "
        "case's own curve; only cases every frame of which both methods have are compared.",
    ]
    if lb.attribute_sources:
        notes.append("Case attributes: " + "; ".join(lb.attribute_sources) + ".")
    for m in lb.incomplete:
        miss = len(lb.missing.get(m, []))
        notes.append(
            f"INCOMPLETE: {m} lacks {miss} prediction file(s); it is scored on the frames it "
            "has, not ranked, and tested only on the cases it has completely."
        )
    return notes


def format_markdown(lb: Leaderboard, digits: int = 3) -> str:
    """The leaderboard as Markdown: one table per split, CIs, paired tests, attributes."""

    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    parts = ["# Leaderboard", "", f"Methods: {', '.join(lb.methods)}.", ""]
    for title, header, rows, bold in _tables(lb, digits):
        parts += [f"## {title}", ""]
        parts.append("| " + " | ".join(esc(h) for h in header) + " |")
        parts.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
        for r, row in enumerate(rows):
            cells = [f"**{c}**" if (r, i) in bold else esc(c) for i, c in enumerate(row)]
            parts.append("| " + " | ".join(cells) + " |")
        parts.append("")
    parts += ["## Notes", ""] + [f"- {n}" for n in _notes(lb)]
    return "\n".join(parts) + "\n"


_TEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<=": r"$\leq$",
    ">=": r"$\geq$",
}


def _tex(s: str) -> str:
    return re.sub(r"<=|>=|[\\&%$#_{}~^]", lambda m: _TEX_ESCAPES[m.group(0)], s)


def format_latex(lb: Leaderboard, digits: int = 3) -> str:
    """The leaderboard as LaTeX tables (booktabs: ``\\usepackage{booktabs}``), best bold."""
    parts = [
        "% vps_d2 leaderboard; needs \\usepackage{booktabs} and \\usepackage{graphicx}",
        f"% Methods: {', '.join(lb.methods)}",
    ]
    parts += [f"% {n}" for n in _notes(lb)]
    for title, header, rows, bold in _tables(lb, digits):
        spec = "l" + "r" * (len(header) - 1)
        parts += [
            "",
            "\\begin{table}[t]",
            "\\centering",
            f"\\caption{{{_tex(title)}}}",
            "\\resizebox{\\linewidth}{!}{%",
            f"\\begin{{tabular}}{{{spec}}}",
            "\\toprule",
            " & ".join(_tex(h) for h in header) + " \\\\",
            "\\midrule",
        ]
        for r, row in enumerate(rows):
            cells = [
                f"\\textbf{{{_tex(c)}}}" if (r, i) in bold else _tex(c) for i, c in enumerate(row)
            ]
            parts.append(" & ".join(cells) + " \\\\")
        parts += ["\\bottomrule", "\\end{tabular}}", "\\end{table}"]
    return "\n".join(parts) + "\n"


CSV_COLUMNS = (
    "section",
    "split",
    "attribute",
    "group",
    "method",
    "other_method",
    "metric",
    "value",
    "ci_low",
    "ci_high",
    "best",
    "cases",
    "frames",
    "frames_expected",
    "mean_diff",
    "wins",
    "losses",
    "ties",
    "p_value",
    "p_holm",
)


def format_csv(lb: Leaderboard) -> str:
    """One tidy CSV (full precision): ``section`` = score | attribute | pairwise | missing;
    see :data:`CSV_COLUMNS`. Score rows have every toolbox metric, with a CI for
    :data:`CI_KEYS` and ``best`` (1/0) for the table's columns."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, restval="", lineterminator="\n")
    w.writeheader()
    for split in lb.splits:
        for m in lb.methods:
            res = lb.results[m].get(split)
            if res is None:
                continue
            got, exp = lb.frames[m][split]
            for k in METRIC_KEYS:
                row = dict(section="score", split=split, method=m, metric=k, value=repr(res[k]))
                row.update(cases=lb.cases[split], frames=got, frames_expected=exp)
                if k in CI_KEYS:
                    row["ci_low"], row["ci_high"] = (repr(v) for v in lb.ci[m][split][k])
                if k in TABLE_KEYS:
                    best = lb.best(split, k)
                    is_best = m not in lb.incomplete and best is not None and res[k] == best
                    row["best"] = int(is_best)
                w.writerow(row)
    for column, group, n_cases, n_frames, vals in lb.attributes:
        for m in lb.methods:
            for k, v in vals.get(m, {}).items():
                w.writerow(
                    dict(
                        section="attribute",
                        split="all",
                        attribute=column,
                        group=group,
                        method=m,
                        metric=k,
                        value=repr(v),
                        cases=n_cases,
                        frames=n_frames,
                    )
                )
    for t in lb.tests:
        w.writerow(
            dict(
                section="pairwise",
                split=t.split,
                method=t.a,
                other_method=t.b,
                metric=t.metric,
                cases=t.n,
                mean_diff=repr(t.mean_diff),
                wins=t.wins_a,
                losses=t.wins_b,
                ties=t.ties,
                p_value=repr(t.p),
                p_holm=repr(t.p_holm),
            )
        )
    for m in lb.incomplete:
        for split in lb.splits:
            got, exp = lb.frames[m][split]
            if got != exp:
                w.writerow(
                    dict(section="missing", split=split, method=m, frames=got, frames_expected=exp)
                )
    return buf.getvalue()


def format_per_case_csv(lb: Leaderboard) -> str:
    """Per-case CSV of every method (full precision): method, split, case, scored frames,
    then one column per toolbox metric (:data:`~vps_d2.evaluation.protocol.METRIC_KEYS`)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["method", "split", "case", "frames", *METRIC_KEYS])
    for m in lb.methods:
        for split in lb.splits:
            vals = lb.per_case[m].get(split, {})
            for case in sorted(vals, key=case_sort_key):
                n = lb.case_frames[m][split][case]
                w.writerow([m, split, case, n, *(repr(float(vals[case][k])) for k in METRIC_KEYS)])
    return buf.getvalue()


_FORMATTERS: dict[str, Callable[..., str]] = {
    ".md": format_markdown,
    ".csv": format_csv,
    ".tex": format_latex,
}


def write_leaderboard(lb: Leaderboard, path: str, digits: int = 3) -> None:
    """Write ``lb`` to ``path`` atomically, in the format of its extension (.md .csv .tex)."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in _FORMATTERS:
        raise ValueError(
            f"Leaderboard file {path}: unknown extension {ext or '(none)'!r}; use one of "
            f"{', '.join(LEADERBOARD_FORMATS)}"
        )
    text = format_csv(lb) if ext == ".csv" else _FORMATTERS[ext](lb, digits)
    atomic_write_bytes(path, text.encode("utf-8"))
