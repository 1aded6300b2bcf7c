#!/usr/bin/env python
"""Score saved predictions with the SUN-SEG toolbox protocol (same numbers, much faster).

  python tools/evaluate.py --gt-root datasets/SUN-SEG --pred-root output/predictions \\
      --model vps_d2 --workers 8 --json results.json --csv per_case.csv --plot curves.png

GT: ``<gt-root>/<split>/GT/<case>/<frame>.png``; predictions:
``<pred-root>/<model>/<split>/<case>/<same file name>`` (8-bit PNG, any size: resized to
the GT size with bilinear cv2.resize, as the toolbox does). ``--splits`` defaults to the
SUN-SEG test splits present under ``--gt-root`` that have a prediction folder (the others
are named in a warning and not scored). Per case the first and last GT frames
(SUN-SEG order) are dropped; cases run in parallel worker processes.

Prints the toolbox's table (3 decimals); ``--json`` writes {split: {metric: value}} at full
precision, ``--csv`` one row per case, ``--plot`` Dice / IoU / F-measure / E-measure
against the threshold for every split (matplotlib: labelled axes, a marker at each
maximum, the legend outside the curves) and, beside it (``<name>_pr<ext>``), the
precision-recall curves. Every output path is checked before anything
is computed. Exit status: 0, or 1 with a one-line message on bad input (missing predictions
are listed; ``--skip-missing`` skips them with a warning).

Several methods at once (``--model A B C``, a glob such as ``'sali*'``, or ``all`` = every
folder under ``--pred-root``; or ``--leaderboard FILE``): a leaderboard scored on the same
frames, each GT frame decoded once, with bootstrap confidence intervals over cases
(``--bootstrap N``, ``--seed``), Wilcoxon tests between every two methods and per-attribute
rows (:mod:`vps_d2.evaluation.leaderboard`); ``--leaderboard`` writes it as .md, .csv or
.tex (booktabs) by extension, several files in one run; ``--plot`` then draws every metric
against the threshold for all methods and, beside it (``<name>_pr<ext>``), the
precision-recall curves, with matplotlib. A method missing frames is named and stops the
run; ``--skip-missing`` scores it on the frames it has, marked incomplete in the table.

GT masks saved as 0/1 (maximum value 1) are scored as binary masks, with one warning per
split; ``--literal-gt`` reads them as the toolbox does (> 128: empty). Worker processes end
as soon as this process ends, also when it is killed.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import logging
import multiprocessing as mp
import os
import signal
import sys


def _interrupted_while_starting(*_):
    """Ctrl-C while the imports below run (torch takes seconds): one line, status 130."""
    print("Interrupted while starting: nothing was done", file=sys.stderr, flush=True)
    os._exit(130)


if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, _interrupted_while_starting)

import numpy as np
from tqdm import tqdm

from vps_d2.cli import run_command
from vps_d2.utils.cli_args import DefaultsHelpFormatter
from vps_d2.utils.lazy import lazy_import

# The evaluation loads after the flags are parsed: --help is quick.
_frame_order = lazy_import("vps_d2.data.frame_order")
_leaderboard = lazy_import("vps_d2.evaluation.leaderboard")
_metrics = lazy_import("vps_d2.evaluation.metrics")
_protocol = lazy_import("vps_d2.evaluation.protocol")
_file_io = lazy_import("vps_d2.utils.file_io")
_logger = lazy_import("vps_d2.utils.logger")
_workers = lazy_import("vps_d2.utils.workers")
_curves = lazy_import("vps_d2.visualization.curves")

if signal.getsignal(signal.SIGINT) is _interrupted_while_starting:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # imports done: KeyboardInterrupt

logger = logging.getLogger("vps_d2.evaluate")
_MAX_LISTED = 20


class EvaluationError(Exception):
    """Bad input: printed as one message, exit status 1."""


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="SUN-SEG toolbox evaluation of saved predictions.",
        formatter_class=DefaultsHelpFormatter,
    )
    p.add_argument("--gt-root", required=True, help="SUN-SEG root: <root>/<split>/GT/<case>/")
    p.add_argument("--pred-root", required=True, help="<pred-root>/<model>/<split>/<case>/")
    p.add_argument(
        "--model",
        required=True,
        nargs="+",
        help="method folder name(s) under --pred-root; shell globs (quoted, e.g. 'sali*') and "
        "'all' (every folder) accepted; more than one method gives a leaderboard",
    )
    p.add_argument(
        "--leaderboard",
        nargs="+",
        default=None,
        metavar="FILE",
        help="write the leaderboard of the methods to FILE (.md, .csv, .tex: "
        "Markdown, CSV, LaTeX booktabs, by extension); several files in one run",
    )
    p.add_argument(
        "--bootstrap",
        type=int,
        default=1000,
        metavar="N",
        help="leaderboard: bootstrap resamples of the cases for the 95%% confidence intervals",
    )
    p.add_argument("--seed", type=int, default=0, help="leaderboard: bootstrap random seed")
    p.add_argument(
        "--splits",
        nargs="+",
        default=None,
        help="splits under --gt-root (default: those of the four SUN-SEG test splits, "
        "Test{Easy,Hard}Dataset/{Seen,Unseen}, that exist)",
    )
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes")
    p.add_argument("--json", default=None, help="write {split: {metric: value}} here")
    p.add_argument("--csv", default=None, help="write the per-case values here")
    p.add_argument(
        "--plot",
        default=None,
        help="figure of Dice, IoU, F-measure and E-measure vs threshold for every split "
        "(matplotlib: .png, .pdf, .svg; every method with a leaderboard), and <name>_pr<ext> "
        "the precision-recall curves",
    )
    p.add_argument(
        "--skip-missing",
        action="store_true",
        help="skip frames without a prediction (warning) instead of stopping; the table and "
        "--json then give each split's coverage (frames scored / frames in the split)",
    )
    p.add_argument(
        "--min-coverage",
        type=float,
        default=0.9,
        help="with --skip-missing: refuse to score a split whose coverage is below this "
        "fraction (0 scores whatever has a prediction)",
    )
    p.add_argument(
        "--pred-ext",
        default="png",
        help="extension of the prediction files (the GT file name with this extension)",
    )
    p.add_argument(
        "--literal-gt",
        action="store_true",
        help="read GT exactly as the SUN-SEG toolbox (gray > 128): masks saved as 0/1 count as "
        "empty (default: a mask whose maximum is 1 is read as 0/1, with a warning)",
    )
    p.add_argument("--digits", type=int, default=3, help="decimals in the printed table")
    return p


def _check_output_file(flag: str, path: str) -> str:
    """``path`` made absolute, after checking it can be written (its folder is created)."""
    path = os.path.abspath(os.path.expanduser(path))
    if os.path.isdir(path):
        raise EvaluationError(f"{flag} {path} is a folder; give a file name")
    folder = os.path.dirname(path)
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise EvaluationError(f"{flag} {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise EvaluationError(f"{flag} {path}: the folder {existing} is not writable")
    try:  # its folder created now: any OSError (read-only file system, ...) before computing
        _file_io.prepare_output_file(path, flag)
    except _file_io.OutputPathError as e:
        raise EvaluationError(str(e)) from e
    return path


def pr_plot_path(plot: str) -> str:
    """The precision-recall figure written beside the leaderboard's ``--plot`` figure."""
    stem, ext = os.path.splitext(plot)
    return f"{stem}_pr{ext or '.png'}"


def check_outputs(args, leaderboard: bool = False) -> None:
    """Validate --json, --csv, --plot and --leaderboard before any computation (raises
    EvaluationError). ``leaderboard``: the several-method run. Both draw --plot with
    matplotlib, the precision-recall figure beside it (:func:`pr_plot_path`)."""
    seen: dict[str, str] = {}
    outputs = [("--json", args.json), ("--csv", args.csv), ("--plot", args.plot)]
    if args.plot:
        outputs.append(("--plot (precision-recall)", pr_plot_path(args.plot)))
    outputs += [("--leaderboard", f) for f in (getattr(args, "leaderboard", None) or ())]
    for flag, path in outputs:
        if not path:
            continue
        full = _check_output_file(flag, path)
        if full in seen:
            raise EvaluationError(f"{seen[full]} and {flag} name the same file {full}")
        seen[full] = flag
        if flag == "--leaderboard" and os.path.splitext(path)[1].lower() not in (
            _leaderboard.LEADERBOARD_FORMATS
        ):
            raise EvaluationError(
                f"--leaderboard {path}: unknown extension; use one of "
                f"{', '.join(_leaderboard.LEADERBOARD_FORMATS)}"
            )
    if args.plot:
        ext = os.path.splitext(args.plot)[1].lower().lstrip(".") or "png"
        if ext not in _curves.figure_formats():
            shown = ext if leaderboard else f".{ext}"
            raise EvaluationError(
                f"--plot {args.plot}: matplotlib cannot write {shown!r} files; use one of "
                f"{', '.join(sorted(_curves.figure_formats()))}"
            )


def _listing(paths: list[str]) -> str:
    shown = "\n  ".join(paths[:_MAX_LISTED])
    more = f"\n  ... and {len(paths) - _MAX_LISTED} more" if len(paths) > _MAX_LISTED else ""
    return f"  {shown}{more}"


def collect_tasks(args) -> tuple[list[str], list[tuple[str, str, list[tuple[str, str]]]]]:
    """(splits, [(split, case, [(gt_path, pred_path), ...]), ...]) after the toolbox's drop."""
    if not os.path.isdir(args.gt_root):
        raise EvaluationError(f"--gt-root {args.gt_root} is not a folder")
    model_dir = os.path.join(args.pred_root, args.model)
    if not os.path.isdir(model_dir):
        raise EvaluationError(f"Prediction folder {model_dir} (--pred-root/--model) not found")
    if args.splits:
        splits = list(args.splits)
    else:
        splits = [
            s
            for s in _protocol.SUN_SEG_TEST_SPLITS
            if os.path.isdir(os.path.join(args.gt_root, s, "GT"))
        ]
        if not splits:
            raise EvaluationError(
                f"No SUN-SEG test split (<split>/GT) under {args.gt_root}; expected some of "
                f"{', '.join(_protocol.SUN_SEG_TEST_SPLITS)} or pass --splits"
            )
        # The default splits: those with predictions are scored, the others named.
        without = [s for s in splits if not os.path.isdir(os.path.join(model_dir, s))]
        if len(without) == len(splits):
            raise EvaluationError(
                f"No split has predictions in {model_dir}: expected <split>/<case>/ folders "
                f"for some of {', '.join(splits)}"
            )
        if without:
            splits = [s for s in splits if s not in without]
            logger.warning(
                "Not scored: %d split(s) without predictions in %s: %s (scoring %s)",
                len(without),
                model_dir,
                ", ".join(without),
                ", ".join(splits),
            )
    tasks, missing = [], []
    ext = args.pred_ext.lstrip(".")
    for split in splits:
        gt_dir = os.path.join(args.gt_root, split, "GT")
        if not os.path.isdir(gt_dir):
            raise EvaluationError(f"Split {split!r}: GT folder {gt_dir} not found")
        cases = _protocol.list_gt_cases(gt_dir)
        if not cases:
            raise EvaluationError(f"Split {split!r}: no case folder in {gt_dir}")
        for case, gt_paths in cases.items():
            frames = []
            for g in _protocol.toolbox_frames(gt_paths, case):  # SUN-SEG order, first/last dropped
                stem = os.path.splitext(os.path.basename(g))[0]
                pred = os.path.join(model_dir, split, case, f"{stem}.{ext}")
                if os.path.isfile(pred):
                    frames.append((g, pred))
                else:
                    missing.append(pred)
            if len(gt_paths) < 3:
                logger.warning(
                    "%s/%s has %d GT frame(s): none left after dropping the first and the "
                    "last; skipped",
                    split,
                    case,
                    len(gt_paths),
                )
            elif frames:
                tasks.append((split, case, frames))
    if missing:
        hint = other_extensions_hint(missing, ext)
        if not args.skip_missing:
            raise EvaluationError(
                f"{len(missing)} prediction file(s) missing{hint} (use --skip-missing to skip "
                "them):\n" + _listing(missing)
            )
        logger.warning(
            "Skipping %d frame(s) without a prediction%s:\n%s",
            len(missing),
            hint,
            _listing(missing),
        )
    if not tasks:
        raise EvaluationError("Nothing to evaluate: no frame has a prediction")
    return splits, tasks


def other_extensions_hint(missing: list[str], ext: str) -> str:
    """``"; 87 .jpg files found: --pred-ext jpg?"`` when files named like the missing
    predictions exist with another extension ("" when none)."""
    wanted = {}
    for path in missing:
        folder, name = os.path.split(path)
        wanted.setdefault(folder, set()).add(os.path.splitext(name)[0])
    found: dict[str, int] = {}
    for folder, stems in wanted.items():
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            stem, other = os.path.splitext(name)
            if stem in stems and other and other[1:] != ext:
                found[other] = found.get(other, 0) + 1
    if not found:
        return ""
    parts = [f"{n} {e} files found: --pred-ext {e[1:]}?" for e, n in sorted(found.items())]
    return "; " + "; ".join(parts)


def split_coverage(args, splits: list[str], tasks) -> dict[str, tuple[int, int]]:
    """``{split: (frames scored, frames in the split)}``, frames counted after the toolbox's
    drop of each case's first and last frame."""
    scored = {s: 0 for s in splits}
    for split, _, frames in tasks:
        scored[split] += len(frames)
    out = {}
    for split in splits:
        cases = _protocol.list_gt_cases(os.path.join(args.gt_root, split, "GT"))
        total = sum(len(_protocol.toolbox_frames(paths, case)) for case, paths in cases.items())
        out[split] = (scored[split], total)
    return out


def check_coverage(coverage: dict[str, tuple[int, int]], min_coverage: float) -> None:
    """EvaluationError naming every split scored on fewer than ``min_coverage`` of its frames."""
    low = [
        f"{split}: {n} of {total} frames ({n / total:.1%})"
        for split, (n, total) in coverage.items()
        if total and n / total < min_coverage
    ]
    if low:
        raise EvaluationError(
            f"Too few frames have a prediction to give comparable numbers ({'; '.join(low)}; "
            f"--min-coverage {min_coverage:g}): add the missing predictions, or lower "
            "--min-coverage to score the frames that have one"
        )


def run_tasks(
    tasks, workers: int, literal: bool = False, fn=None
) -> dict[str, dict[str, _protocol.CaseAccumulator]]:
    """{split: {case: CaseAccumulator}}, cases in worker processes when workers > 1.

    ``fn(task, literal) -> (split, case, result)`` scores one task (``task[2]``: its
    frames): :func:`evaluate_case_task` (one model, the default), or
    :func:`vps_d2.evaluation.leaderboard.score_case_task` ({method: accumulator}).

    Workers end with this process (:func:`vps_d2.utils.workers.init_worker`), also when it
    is killed with SIGKILL, instead of finishing (or blocking after) their case.
    """
    fn = fn or _protocol.evaluate_case_task
    out: dict[str, dict[str, _protocol.CaseAccumulator]] = {}
    bar = tqdm(
        total=sum(len(t[2]) for t in tasks),
        unit="frame",
        desc="evaluate",
        leave=False,
        disable=None,
    )
    try:
        if workers <= 1 or len(tasks) == 1:
            for task in tasks:
                split, case, acc = fn(task, literal)
                out.setdefault(split, {})[case] = acc
                bar.update(len(task[2]))
        else:
            # largest cases first: better load balance
            order = sorted(tasks, key=lambda t: -len(t[2]))
            # Workers fork from a fresh single-threaded server (never from this process,
            # whose threads could hold locks), with the package imported once there.
            ctx = mp.get_context("forkserver")
            preload = ["vps_d2.evaluation.protocol", "vps_d2.evaluation.leaderboard"]
            ctx.set_forkserver_preload([*preload, "vps_d2.utils.workers"])
            with cf.ProcessPoolExecutor(
                max_workers=workers, mp_context=ctx, initializer=_workers.init_worker, initargs=(1,)
            ) as ex:
                futures = {ex.submit(fn, t, literal): t for t in order}
                for fut in cf.as_completed(futures):
                    split, case, acc = fut.result()
                    out.setdefault(split, {})[case] = acc
                    bar.update(len(futures[fut][2]))
    finally:
        bar.close()
    return out


# ---------------------------------------------------------------------------------- plot
def write_plot(path: str, curves: dict[str, dict[str, np.ndarray]], model: str = "") -> None:
    """The threshold curves of every split (Dice, IoU, F-measure, E-measure against the
    threshold, a marker at each maximum, labelled axes, the legend outside the curves) to
    ``path``, and the precision-recall curves to :func:`pr_plot_path` (matplotlib, as for a
    leaderboard)."""
    per_split = {split: {model or "model": c} for split, c in curves.items()}
    _curves.save_figure(_curves.threshold_curves_figure(per_split), path)
    _curves.save_figure(_curves.precision_recall_figure(per_split), pr_plot_path(path))


# ---------------------------------------------------------------------------------- main
def _is_pattern(name: str) -> bool:
    return name == "all" or any(c in name for c in "*?[")


def methods_of(args) -> list[str]:
    """--model resolved: one plain name is kept as given (checked when read); names, globs
    and 'all' (:func:`vps_d2.evaluation.leaderboard.resolve_methods`) otherwise."""
    if len(args.model) == 1 and not _is_pattern(args.model[0]):
        return list(args.model)
    if not os.path.isdir(args.gt_root):
        raise EvaluationError(f"--gt-root {args.gt_root} is not a folder")
    return _leaderboard.resolve_methods(args.pred_root, args.model)


def evaluate_leaderboard(args, methods: list[str]):
    """Score every method on the same frames; write and return the Leaderboard."""
    check_outputs(args, leaderboard=True)
    plan = _leaderboard.collect_frames(args.gt_root, args.pred_root, methods, args.splits)
    if plan.missing and not args.skip_missing:  # before any scoring
        raise EvaluationError(
            "Prediction files missing; every method must have every scored frame "
            "(--skip-missing scores them on the frames they have, marked incomplete):\n"
            + plan.missing_message()
        )
    per_split = run_tasks(
        plan.tasks, args.workers, args.literal_gt, fn=_leaderboard.score_case_task
    )
    for split in plan.splits:
        gt_counts = {c: next(iter(a.values())) for c, a in per_split.get(split, {}).items() if a}
        _protocol.warn_zero_one_gt(
            split, gt_counts, literal=args.literal_gt, literal_option="--literal-gt"
        )
    lb = _leaderboard.build_leaderboard(
        plan,
        per_split,
        gt_root=args.gt_root,
        n_resamples=args.bootstrap,
        seed=args.seed,
        allow_missing=args.skip_missing,
    )
    for path in args.leaderboard or ():
        _leaderboard.write_leaderboard(lb, path, digits=args.digits)
    if args.json:
        _protocol.write_results_json(args.json, lb.results)
    if args.csv:
        _file_io.atomic_write_bytes(args.csv, _leaderboard.format_per_case_csv(lb).encode())
    if args.plot and lb.curves:
        _curves.save_figure(_curves.threshold_curves_figure(lb.curves), args.plot)
        _curves.save_figure(_curves.precision_recall_figure(lb.curves), pr_plot_path(args.plot))
    return lb


def evaluate(args):
    """One model: {split: {metric: value}}; several (or --leaderboard): a Leaderboard."""
    methods = methods_of(args)
    if len(methods) > 1 or args.leaderboard:
        if args.bootstrap < 1:
            raise EvaluationError(f"--bootstrap {args.bootstrap}: give at least 1 resample")
        return evaluate_leaderboard(args, methods)
    args = argparse.Namespace(**{**vars(args), "model": methods[0]})
    check_outputs(args)
    splits, tasks = collect_tasks(args)
    coverage = split_coverage(args, splits, tasks) if args.skip_missing else {}
    check_coverage(coverage, args.min_coverage)
    per_split = run_tasks(tasks, args.workers, args.literal_gt)
    results, curves, rows = {}, {}, []
    for split in splits:
        cases = per_split.get(split, {})
        avg = _protocol.average_cases(cases)
        if avg is None:
            logger.warning("Split %s: no case was scored", split)
            continue
        _protocol.warn_zero_one_gt(
            split, cases, literal=args.literal_gt, literal_option="--literal-gt"
        )
        results[split] = _protocol.summarize(avg)
        if split in coverage:  # --skip-missing: how much of the split the numbers cover
            n, total = coverage[split]
            results[split].update(
                coverage=n / total if total else 0.0, frames_scored=n, frames_total=total
            )
        curves[split] = avg
        for case in sorted(cases, key=_frame_order.case_sort_key):
            rows.append((split, case, cases[case].n, _protocol.case_metrics(cases[case])))
    if args.json:
        _protocol.write_results_json(args.json, results)
    if args.csv:
        _protocol.write_results_csv(args.csv, rows)
    if args.plot and curves:
        write_plot(args.plot, curves, args.model)
    return results


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    _logger.setup_logger(fmt="%(levelname)s: %(message)s", stream="stderr")
    try:
        results = evaluate(args)
    except OSError as e:  # a file in the way, read-only file system, ... (DataReadError too)
        print(
            f"error: {_file_io.describe_os_error(e) if e.strerror is not None else e}",
            file=sys.stderr,
        )
        return 1
    except (EvaluationError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if isinstance(results, _leaderboard.Leaderboard):
        print(_leaderboard.format_markdown(results, digits=args.digits), end="")
        for path in args.leaderboard or ():
            print(f"Leaderboard written to {path}")
        if args.plot:
            print(f"Plots written to {args.plot} and {pr_plot_path(args.plot)}")
        return 0
    print(f"Model: {args.model[0]}")
    keys = _protocol.METRIC_KEYS + (("coverage",) if args.skip_missing else ())
    print(_protocol.format_results_table(results, digits=args.digits, keys=keys))
    return 0


def console(argv=None) -> int:
    """The ``vps-evaluate`` command: :func:`main`, a Ctrl-C it did not catch as one line."""
    return run_command(main, argv)


if __name__ == "__main__":
    sys.exit(console())
