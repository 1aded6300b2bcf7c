"""Reliability, round 3 (issue 24) for the tools: Ctrl-C at any moment (imports included) is
one line and status 130, any OSError preparing an output is one line naming the path and
the OS's reason, ``tools/evaluate.py --skip-missing`` says how much of each split it scored
and refuses too little, predictions with another extension are named."""

from __future__ import annotations

import csv
import errno
import json
import os
import signal
import sys
import time

import cv2
import pytest
from test_demo import assets, demo  # noqa: F401  (fixtures: a video, frames, stub weights)
from test_engine import CONFIG
from test_evaluate_cli import _args, load_cli, tree  # noqa: F401  (tree: a fixture)
from train_net_runner import ROOT, start_tool

SPLIT = "TestEasyDataset/Unseen"  # case1_1: 11 GT frames, case2_3: 4, case3: 2 -> 11 scored


def _pred_dir(pred_root, case):
    return os.path.join(pred_root, "m", SPLIT, case)


# ------------------------------------------------------------------ Ctrl-C, any moment
def _in_torch_import(pid) -> bool:
    """Whether process ``pid`` has started loading torch's libraries (it is importing)."""
    try:
        return "torch/lib" in open(f"/proc/{pid}/maps").read()
    except OSError:
        return False


def _interrupt(cmd, delay, root):
    """Start ``cmd``; once it is loading torch (+ ``delay`` s), Ctrl-C; (status, stderr)."""
    p = start_tool(cmd, root)
    deadline = time.time() + 120
    while not _in_torch_import(p.pid) and p.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    time.sleep(delay)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    return p.returncode, err


@pytest.mark.slow
@pytest.mark.parametrize(
    "tool, delay",
    [
        ("train_net", 0.0),  # importing torch
        ("train_net", 1.0),  # later imports, or set-up
        ("evaluate", 0.0),
        ("demo", 0.0),
        ("make_sample_dataset", 0.0),
    ],
)
def test_ctrl_c_during_imports_is_one_line(tool, delay, tiny_sample_root, tmp_path):
    """Item 3: Ctrl-C while the tools were still importing gave a KeyboardInterrupt
    traceback from inside torch's import (later Ctrl-C was fine). The signal is sent as soon
    as the process has started loading torch's libraries (read from /proc/<pid>/maps)."""
    py = [sys.executable, os.path.join(ROOT, "tools", f"{tool}.py")]
    args = {
        "train_net": ["--config-file", CONFIG, "OUTPUT_DIR", str(tmp_path / "o")],
        "evaluate": ["--gt-root", str(tmp_path), "--pred-root", str(tmp_path), "--model", "m"],
        "demo": ["--config-file", CONFIG, "--input", str(tmp_path), "--output", "o.mp4"],
        "make_sample_dataset": ["--output", str(tmp_path / "ds")],
    }[tool]
    # evaluate loads torch only once its inputs pass the first checks (lazy imports)
    (tmp_path / "m").mkdir()
    code, err = _interrupt(py + args, delay, tiny_sample_root)
    assert code == 130, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    lines = [x for x in err.splitlines() if x.startswith("Interrupted")]
    assert len(lines) == 1, err[-3000:]


# ------------------------------------------------------------------ OSError: one line
def _read_only_below(monkeypatch, prefix):
    """os.makedirs raises what a read-only mount raises (EROFS) for paths under ``prefix``:
    tests run as root, whom chmod does not stop, and mounting needs privileges."""
    real = os.makedirs

    def makedirs(path, *a, **k):
        if os.path.abspath(path).startswith(str(prefix)):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
        return real(path, *a, **k)

    monkeypatch.setattr(os, "makedirs", makedirs)


def test_evaluate_output_on_read_only_mount_is_one_line(tree, tmp_path, capsys, monkeypatch):  # noqa: F811
    """Item 2 for tools/evaluate.py: refused before anything is computed."""
    gt_root, pred_root, _ = tree
    ro = tmp_path / "ro"
    _read_only_below(monkeypatch, ro)
    cli = load_cli()
    computed = []
    monkeypatch.setattr(cli, "run_tasks", lambda *a, **k: computed.append(1))
    target = ro / "sub" / "r.json"
    assert cli.main(_args(gt_root, pred_root, "--json", str(target))) == 1
    err = capsys.readouterr().err
    assert not computed and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert str(target) in err and "Read-only file system" in err


def test_demo_output_on_read_only_mount_is_one_line(assets, demo, tmp_path, capsys, monkeypatch):  # noqa: F811
    """Item 2 for tools/demo.py: only PermissionError / NotADirectoryError were caught."""
    ro = tmp_path / "ro"
    _read_only_below(monkeypatch, ro)
    out = ro / "demo" / "out.mp4"
    rc = demo.main(
        ["--input", assets["frames"], "--output", str(out), "--opts", *assets["stub_opts"]]
    )
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    line = [x for x in err.splitlines() if x.startswith("Error")]
    assert len(line) == 1 and str(ro / "demo") in line[0] and "Read-only file system" in line[0]


# ------------------------------------------------------------------ --skip-missing coverage
def test_skip_missing_reports_coverage_and_refuses_too_little(tree, tmp_path, capsys):  # noqa: F811
    """Item 6: with 87 of 88 frames missing, --skip-missing printed a full-looking score with
    one warning line."""
    gt_root, pred_root, t = tree
    cli = load_cli()
    j, c = str(tmp_path / "r.json"), str(tmp_path / "r.csv")
    one_missing = os.path.join(
        _pred_dir(pred_root, "case1_1"), os.path.basename(t[SPLIT]["case1_1"][4])
    )
    os.remove(one_missing)
    base = _args(gt_root, pred_root, "--splits", SPLIT, "--skip-missing", "--json", j, "--csv", c)
    assert cli.main(base) == 0
    out = capsys.readouterr().out
    got = json.load(open(j))[SPLIT]
    assert (got["frames_scored"], got["frames_total"]) == (10, 11)
    assert got["coverage"] == 10 / 11
    header, row = out.splitlines()[1:3]
    assert header.split()[-1] == "coverage" and row.split()[-1] == f"{10 / 11:.3f}"
    # keep one frame of the split: refused, naming the split and its coverage
    for case, paths in t[SPLIT].items():
        for p in paths[1:-1]:
            pred = os.path.join(_pred_dir(pred_root, case), os.path.basename(p))
            if pred != os.path.join(_pred_dir(pred_root, "case2_3"), os.path.basename(paths[1])):
                if os.path.exists(pred):
                    os.remove(pred)
    os.remove(j)
    assert cli.main(base) == 1
    err = capsys.readouterr().err
    assert f"{SPLIT}: 1 of 11 frames (9.1%)" in err and "--min-coverage" in err
    assert not os.path.exists(j)  # nothing written
    # lowered on purpose: scored, and the coverage is next to the numbers
    assert cli.main([*base, "--min-coverage", "0"]) == 0
    got = json.load(open(j))[SPLIT]
    assert (got["frames_scored"], got["frames_total"]) == (1, 11)
    assert [r["frames"] for r in csv.DictReader(open(c))] == ["1"]


def test_predictions_with_another_extension_are_named(tree, tmp_path, capsys):  # noqa: F811
    """Item 6: predictions saved as .jpg were reported only as "N prediction file(s)
    missing"."""
    gt_root, pred_root, t = tree
    cli = load_cli()
    n = 0
    for case, paths in t[SPLIT].items():
        for p in paths:
            png = os.path.join(_pred_dir(pred_root, case), os.path.basename(p))
            cv2.imwrite(png[: -len(".png")] + ".jpg", cv2.imread(png, cv2.IMREAD_GRAYSCALE))
            os.remove(png)
            n += 1 if p in paths[1:-1] else 0
    assert cli.main(_args(gt_root, pred_root, "--splits", SPLIT)) == 1
    err = capsys.readouterr().err
    line = [x for x in err.splitlines() if x.startswith("error:")]
    assert len(line) == 1 and f"{n} .jpg files found: --pred-ext jpg?" in line[0]
    assert cli.main(_args(gt_root, pred_root, "--splits", SPLIT, "--pred-ext", "jpg")) == 0
