"""Reliability of the tools (tools/demo.py, tools/evaluate.py, tools/make_sample_dataset.py)
and of the readers they share with training (docs/reliability.md). Each test reproduces
a defect found by trying the tools with odd data, bad flags and kill -9 (issue 14: items 1,
2, 8, 12, 14, 15, 16, 19)."""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import torch
from test_demo import assets, demo  # noqa: F401  (fixtures: a video, frames, stub weights)
from test_engine import CONFIG, FAST
from test_evaluate_cli import STEM, load_cli, write_predictions
from train_net_runner import ROOT, TRAIN_NET, train_net_env

from vps_d2.checkpoint import VPSCheckpointer
from vps_d2.config import add_vps_config, get_cfg
from vps_d2.data import DatasetCatalog, MetadataCatalog
from vps_d2.data.io import DataReadError, ImageReadError, read_image, read_mask
from vps_d2.evaluation import VPSEvaluator, build_evaluator
from vps_d2.evaluation import reference as R
from vps_d2.evaluation.protocol import read_gray, read_gt
from vps_d2.modeling import build_model
from vps_d2.synthetic import make_sample_dataset

DEMO = os.path.join(ROOT, "tools", "demo.py")
EVALUATE = os.path.join(ROOT, "tools", "evaluate.py")
MAKE_SAMPLE = os.path.join(ROOT, "tools", "make_sample_dataset.py")
GT_HW = (30, 40)
# split -> case -> number of GT frames (SUN stems, "_image<i>": SUN order = numeric order)
BIN_LAYOUT = {
    "TestEasyDataset/Unseen": {"case1_1": 6, "case2": 4},
    "TestHardDataset/Seen": {"case5": 5},
}


def _sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _tree_state(folder) -> dict:
    """{relative path: sha256} of every file under ``folder`` (hidden ones included)."""
    out = {}
    for root, _, files in os.walk(folder):
        for f in files:
            p = os.path.join(root, f)
            out[os.path.relpath(p, folder)] = _sha(p)
    return out


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# ------------------------------------------------------------------------ 0/1 ground truth
def _binary_masks(seed=0) -> dict:
    """{split: {case: [bool (H, W) masks in SUN order]}}: discs, some frames empty."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: GT_HW[0], : GT_HW[1]]
    masks: dict = {}
    for split, cases in BIN_LAYOUT.items():
        for case, n in cases.items():
            ms = []
            for i in range(n):
                cy, cx, r = rng.uniform(6, 24), rng.uniform(6, 34), rng.uniform(3, 9)
                m = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
                ms.append(m if i != 2 else np.zeros_like(m))
            masks.setdefault(split, {})[case] = ms
    return masks


def _write_gt(root: str, masks: dict, value: int) -> dict:
    """The masks as PNGs with foreground ``value`` (255 or 1); {split: {case: [paths]}}."""
    tree: dict = {}
    for split, cases in masks.items():
        for case, ms in cases.items():
            d = os.path.join(root, split, "GT", case)
            os.makedirs(d, exist_ok=True)
            paths = []
            for i, m in enumerate(ms, start=1):
                p = os.path.join(d, STEM.format(i) + ".png")
                assert cv2.imwrite(p, m.astype(np.uint8) * value)
                paths.append(p)
            tree.setdefault(split, {})[case] = paths
    return tree


@pytest.fixture()
def gt_pair(tmp_path):
    """The same masks saved 0/255 and 0/1, and one set of predictions for both."""
    masks = _binary_masks()
    t255 = _write_gt(str(tmp_path / "gt255"), masks, 255)
    t01 = _write_gt(str(tmp_path / "gt01"), masks, 1)
    pred_root = str(tmp_path / "preds")
    write_predictions(pred_root, "m", t255, seed=4)
    return t255, t01, pred_root


def _reference(tree: dict, split: str, pred_dir: str) -> dict:
    """Independent toolbox reference on the files as stored (gray > 128 inside R)."""
    cases = {}
    for case, paths in tree[split].items():
        frames = []
        for p in paths[1:-1]:
            gt = cv2.imread(p, cv2.IMREAD_GRAYSCALE)
            pred = cv2.imread(os.path.join(pred_dir, case, os.path.basename(p)), 0)
            if pred.shape != gt.shape:
                pred = cv2.resize(pred, (gt.shape[1], gt.shape[0]))
            frames.append(R.reference_frame_metrics(pred, gt))
        cases[case] = frames
    return R.reference_split_metrics(cases)


def _register(name: str, tree: dict, split: str) -> list[dict]:
    """Register a dataset over ``tree[split]``, with gray frames written beside the GT."""
    records = []
    for case, gts in tree[split].items():
        stems = [os.path.splitext(os.path.basename(g))[0] for g in gts]
        for g in gts:
            frame = g.replace("/GT/", "/Frame/")[:-4] + ".jpg"
            os.makedirs(os.path.dirname(frame), exist_ok=True)
            cv2.imwrite(frame, np.full((*GT_HW, 3), 120, np.uint8))
        records.append(
            {
                "dataset_name": name,
                "split": split,
                "video_id": case,
                "length": len(gts),
                "file_names": [g.replace("/GT/", "/Frame/")[:-4] + ".jpg" for g in gts],
                "gt_file_names": list(gts),
                "frame_names": stems,
                "class_id": -1,
                "class_name": "",
                "boxes": [None] * len(gts),
            }
        )
    DatasetCatalog.register(name, lambda: records)
    return records


def _frames(records, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for rec in records:
        for i, (g, stem) in enumerate(zip(rec["gt_file_names"], rec["frame_names"])):
            m = cv2.imread(g, cv2.IMREAD_GRAYSCALE) > 0  # a prediction that overlaps the GT
            prob = np.clip(0.55 * m + 0.5 * rng.random(GT_HW) ** 2, 0, 1).astype(np.float32)
            frame = {
                "height": GT_HW[0],
                "width": GT_HW[1],
                "video_id": rec["video_id"],
                "frame_index": i,
                "video_length": rec["length"],
                "gt_file_name": g,
                "file_name": rec["file_names"][i],
                "frame_name": stem,
            }
            out.append((frame, {"prob": torch.from_numpy(prob)}))
    return out


def _run(ev, pairs):
    ev.reset()
    for f, o in pairs:
        ev.process([f], [o])
    return ev.evaluate()


def _zero_one_warnings(caplog) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "0/1 masks" in r.getMessage()
    ]


@pytest.fixture()
def registered(gt_pair):
    t255, t01, _ = gt_pair
    split = "TestEasyDataset/Unseen"
    names = ("_rel_gt255", "_rel_gt01")
    recs = [_register(n, t, split) for n, t in zip(names, (t255, t01))]
    try:
        yield t255, t01, split, names, recs
    finally:
        for n in names:
            DatasetCatalog.remove(n)
            MetadataCatalog.remove(n)


def test_zero_one_gt_scored_like_0_255_in_the_evaluator(registered, tmp_path, caplog):
    """Item 1: 0/1 GT used to be scored as empty (maxDice 0.89 -> 0.0, no warning)."""
    t255, t01, split, (n255, n01), (rec255, rec01) = registered
    pairs255 = _frames(rec255)
    pairs01 = [
        ({**f, "gt_file_name": g}, o)
        for (f, o), g in zip(pairs255, [g for r in rec01 for g in r["gt_file_names"]])
    ]
    # independent expectation: the toolbox on the 0/255 files, predictions saved as PNGs
    pred_dir = str(tmp_path / "p" / split)
    for f, o in pairs255:
        q = np.clip(np.rint(o["prob"].numpy().astype(np.float64) * 255), 0, 255).astype(np.uint8)
        os.makedirs(os.path.join(pred_dir, f["video_id"]), exist_ok=True)
        cv2.imwrite(os.path.join(pred_dir, f["video_id"], os.path.basename(f["gt_file_name"])), q)
    exp = _reference(t255, split, pred_dir)
    assert exp["maxDice"] > 0.3
    caplog.set_level(logging.WARNING)
    res255 = _run(VPSEvaluator(n255), pairs255)[n255]
    assert _zero_one_warnings(caplog) == []
    res01 = _run(VPSEvaluator(n01), pairs01)[n01]
    assert res01 == res255
    for k, v in exp.items():
        assert abs(res01[k] - v) <= 1e-12, k
    (msg,) = _zero_one_warnings(caplog)  # one warning for the dataset, not one per frame
    assert n01 in msg and os.path.basename(t01[split]["case1_1"][1]) in msg
    assert "TEST.VPS.LITERAL_GT" in msg
    # the toolbox's literal reading (> 128): 0/1 masks are empty
    caplog.clear()
    lit = _run(VPSEvaluator(n01, literal_gt=True), pairs01)[n01]
    exp_lit = _reference(t01, split, pred_dir)
    for k, v in exp_lit.items():
        assert abs(lit[k] - v) <= 1e-12, k
    assert lit["maxDice"] < res01["maxDice"] / 2
    (msg,) = _zero_one_warnings(caplog)
    assert "EMPTY" in msg
    # the config key reaches the evaluator
    cfg = add_vps_config(get_cfg())
    cfg.TEST.EVALUATORS = ["VPSEvaluator"]
    assert build_evaluator(cfg, n01, str(tmp_path)).literal_gt is False
    cfg.TEST.VPS.LITERAL_GT = True
    assert build_evaluator(cfg, n01, str(tmp_path)).literal_gt is True


@pytest.mark.parametrize("workers", ["1", "2"])
def test_zero_one_gt_scored_like_0_255_by_the_cli(gt_pair, tmp_path, caplog, workers):
    """Item 1 for tools/evaluate.py (also across worker processes): same numbers as the
    0/255 masks, one warning per split, --literal-gt gives the toolbox's numbers."""
    t255, t01, pred_root = gt_pair
    cli = load_cli()
    caplog.set_level(logging.WARNING)

    def run(gt_root, name, *extra):
        j = str(tmp_path / f"{name}.json")
        args = [
            "--gt-root",
            gt_root,
            "--pred-root",
            pred_root,
            "--model",
            "m",
            "--workers",
            workers,
            "--json",
            j,
            *extra,
        ]
        assert cli.main(args) == 0
        return json.load(open(j))

    r255 = run(str(tmp_path / "gt255"), "a")
    assert _zero_one_warnings(caplog) == []
    r01 = run(str(tmp_path / "gt01"), "b")
    assert r01 == r255
    msgs = _zero_one_warnings(caplog)
    assert len(msgs) == len(BIN_LAYOUT)  # one per split
    for split in BIN_LAYOUT:
        exp = _reference(t255, split, os.path.join(pred_root, "m", split))
        assert all(abs(r01[split][k] - v) <= 1e-12 for k, v in exp.items())
        (msg,) = [m for m in msgs if m.startswith(split)]
        assert os.path.basename(t01[split][next(iter(t01[split]))][1]) in msg
        assert "--literal-gt" in msg
    lit = run(str(tmp_path / "gt01"), "c", "--literal-gt")
    for split in BIN_LAYOUT:
        exp = _reference(t01, split, os.path.join(pred_root, "m", split))
        assert all(abs(lit[split][k] - v) <= 1e-12 for k, v in exp.items())
        assert lit[split]["maxDice"] < r01[split]["maxDice"] / 2


def test_read_gt_rule(tmp_path):
    """0/255 (anti-aliased) as the toolbox (> 128); maximum 1 -> 0/1; literal: > 128."""
    aa = np.array([[0, 100, 128, 129, 255]], np.uint8)
    one = np.array([[0, 1, 1, 0]], np.uint8)
    for arr, exp, exp_lit, z in ((aa, aa > 128, aa > 128, False), (one, one == 1, one > 128, True)):
        path = str(tmp_path / f"m{int(z)}.png")
        cv2.imwrite(path, arr)
        m, zero_one = read_gt(path)
        np.testing.assert_array_equal(m, exp)
        assert zero_one is z
        m, zero_one = read_gt(path, literal=True)
        np.testing.assert_array_equal(m, exp_lit)
        assert zero_one is z


# -------------------------------------------------------------- unreadable files, one line
def _truncate(path, keep=0.5):
    data = open(path, "rb").read()
    open(path, "wb").write(data[: int(len(data) * keep)])


def test_read_errors_are_one_type(tmp_path):
    """Item 8: every reader (frames, masks, the protocol's GT/prediction reading) raises
    DataReadError (a ValueError and an OSError) naming the file; cv2.imread used to decode
    a truncated JPEG partially without an error."""
    assert ImageReadError is DataReadError
    assert issubclass(DataReadError, ValueError) and issubclass(DataReadError, OSError)
    img = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    jpg, png, empty = tmp_path / "f.jpg", tmp_path / "m.png", tmp_path / "e.png"
    cv2.imwrite(str(jpg), img)
    cv2.imwrite(str(png), img[..., 0])
    _truncate(jpg)
    _truncate(png)
    empty.write_bytes(b"")
    for reader in (read_image, read_mask, read_gray, read_gt):
        for p in (jpg, png, empty):
            with pytest.raises(DataReadError, match=p.name):
                reader(str(p))


def _message_lines(stderr: str) -> list[str]:
    """The lines of ``stderr`` without progress-bar fragments (tqdm's "\r" updates)."""
    lines = [x.strip() for x in stderr.replace("\r", "\n").splitlines()]
    return [x for x in lines if x and not x.startswith(("evaluate:", "demo:", "train:"))]


def _one_line_about(stderr: str, name: str) -> str:
    lines = [x for x in _message_lines(stderr) if name in x]
    assert len(lines) == 1, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    return lines[0]


def _fast_weights(path: str) -> str:
    cfg = add_vps_config(get_cfg())
    cfg.merge_from_file(CONFIG)
    cfg.merge_from_list(FAST)
    VPSCheckpointer(build_model(cfg), path).save("model_final")
    return os.path.join(path, "model_final.pth")


@pytest.mark.parametrize("mode", ["train", "eval_only"])
def test_unreadable_file_is_one_line_from_train_net(tiny_sample_root, tmp_path, mode):
    """Item 8: a truncated JPEG frame (training) or a zero-byte PNG mask (--eval-only) read
    in a DataLoader worker gave the right message at the bottom of a ~40-line traceback."""
    root = str(tmp_path / "datasets")
    shutil.copytree(tiny_sample_root, root)
    opts = list(FAST) + [
        "DATALOADER.NUM_WORKERS",
        "1",
        "DATALOADER.NUM_WORKERS_TEST",
        "1",
        "OUTPUT_DIR",
        str(tmp_path / "out"),
    ]
    if mode == "train":
        bad = sorted(glob.glob(f"{root}/vps-sample/TrainDataset/Frame/*/*.jpg"))[5]
        _truncate(bad)
        flags, opts = [], opts + ["SOLVER.MAX_ITER", "400", "DATASETS.TEST", "()"]
    else:
        bad = sorted(glob.glob(f"{root}/vps-sample/TestEasyDataset/Unseen/GT/*/*.png"))[3]
        open(bad, "wb").close()
        flags = ["--eval-only"]
        opts += ["MODEL.WEIGHTS", _fast_weights(str(tmp_path / "w"))]
    cmd = [sys.executable, TRAIN_NET, "--config-file", CONFIG, *flags, *opts]
    p = subprocess.run(cmd, env=train_net_env(root), capture_output=True, text=True, timeout=600)
    assert p.returncode == 1, p.stderr[-3000:]
    line = _one_line_about(p.stderr, os.path.basename(bad))
    assert line.startswith("Error: ") and "DataReadError" in line
    assert ("Truncated JPEG" if mode == "train" else "empty (0 bytes)") in line


def test_unreadable_file_is_one_line_from_demo_and_evaluate(assets, demo, tmp_path, capsys):  # noqa: F811
    """Item 8 for tools/demo.py (a truncated frame) and tools/evaluate.py (truncated and
    empty GT masks, in this process and in worker processes)."""
    frames = tmp_path / "frames"
    shutil.copytree(assets["frames"], frames)
    bad = sorted(frames.glob("*.jpg"))[4]
    _truncate(bad)
    rc = demo.main(
        ["--input", str(frames), "--output", str(tmp_path / "o"), "--opts", *assets["stub_opts"]]
    )
    assert rc == 1
    assert "Truncated JPEG" in _one_line_about(capsys.readouterr().err, bad.name)
    masks = _binary_masks(1)
    tree = _write_gt(str(tmp_path / "gt"), masks, 255)
    write_predictions(str(tmp_path / "p"), "m", tree)
    cli = load_cli()
    split = "TestEasyDataset/Unseen"
    _truncate(tree[split]["case1_1"][2])
    open(tree[split]["case2"][1], "wb").close()
    for workers in ("1", "2"):
        args = [
            "--gt-root",
            str(tmp_path / "gt"),
            "--pred-root",
            str(tmp_path / "p"),
            "--model",
            "m",
            "--splits",
            split,
            "--workers",
            workers,
        ]
        assert cli.main(args) == 1
        err = capsys.readouterr().err
        assert "Traceback" not in err and len(_message_lines(err)) == 1, err
        assert "Truncated PNG" in err or "empty (0 bytes)" in err
        assert os.path.basename(tree[split]["case1_1"][2]) in err or (
            os.path.basename(tree[split]["case2"][1]) in err
        )


# ------------------------------------------------------------- evaluate.py output paths
@pytest.mark.parametrize("case", ["plot_ext", "json_under_file", "csv_is_folder", "same_file"])
def test_evaluate_checks_outputs_before_computing(gt_pair, tmp_path, capsys, monkeypatch, case):
    """Item 12: a bad --plot extension or --json under a regular file gave a traceback after
    the whole evaluation."""
    _, _, pred_root = gt_pair
    cli = load_cli()

    def computing(*a, **k):
        raise AssertionError("the evaluation ran before the outputs were checked")

    monkeypatch.setattr(cli, "collect_tasks", computing)
    monkeypatch.setattr(cli, "run_tasks", computing)
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "a_dir").mkdir()
    extra = {
        "plot_ext": ["--plot", str(tmp_path / "curves.xyz")],
        "json_under_file": ["--json", str(tmp_path / "a_file" / "r.json")],
        "csv_is_folder": ["--csv", str(tmp_path / "a_dir")],
        "same_file": ["--json", str(tmp_path / "r"), "--csv", str(tmp_path / "." / "r")],
    }[case]
    args = [
        "--gt-root",
        str(tmp_path / "gt255"),
        "--pred-root",
        pred_root,
        "--model",
        "m",
        "--workers",
        "1",
        *extra,
    ]
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert len(_message_lines(err)) == 1 and "Traceback" not in err, err
    assert {
        "plot_ext": "'.xyz'",
        "json_under_file": "a_file is a file",
        "csv_is_folder": "is a folder",
        "same_file": "same file",
    }[case] in err
    assert not os.path.exists(tmp_path / "r")


def test_evaluate_script_exits_one_line_on_bad_plot(gt_pair, tmp_path):
    """Item 12 through the script (no traceback, non-zero exit)."""
    _, _, pred_root = gt_pair
    cmd = [
        sys.executable,
        EVALUATE,
        "--gt-root",
        str(tmp_path / "gt255"),
        "--pred-root",
        pred_root,
        "--model",
        "m",
        "--workers",
        "1",
        "--plot",
        str(tmp_path / "c.x"),
    ]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 1
    # One line of ours (a library's own deprecation warning, e.g. old timm under new torch,
    # may precede it and is not our message).
    line = _one_line_about(p.stderr, "--plot")
    assert line.startswith("error: --plot") and "'.x'" in line, p.stderr


# ---------------------------------------------------------------- demo: outputs vs inputs
@pytest.fixture()
def no_reading(demo, monkeypatch):  # noqa: F811
    """Fail the test if the demo reads its input (VideoReader) before refusing."""

    def reader(*a, **k):
        raise AssertionError("the demo read its input before checking the outputs")

    monkeypatch.setattr("vps_d2.io.VideoReader", reader)
    return demo


def _demo_inputs(files: dict, tmp_path):
    """A copy of the frames, the GT folder and the video under tmp_path (cwd)."""
    shutil.copytree(files["frames"], tmp_path / "F")
    shutil.copytree(files["gt"], tmp_path / "G")
    shutil.copy(files["video"], tmp_path / "src.mp4")
    shutil.copy(files["video"], tmp_path / "clip.avi")
    os.symlink(tmp_path / "F", tmp_path / "F_link")
    os.symlink(tmp_path / "src.mp4", tmp_path / "link.mp4")


REFUSED = {
    "same_folder": (["--input", "F"], "F", "is the input folder"),
    "same_folder_relative": (["--input", "./F/"], "sub/../F", "is the input folder"),
    "inside": (["--input", "F"], "F/overlays", "is inside the input folder"),
    "contains": (["--input", "F"], ".", "contains the input folder"),
    "symlinked_folder": (["--input", "F_link"], "F", "is the input folder"),
    "glob": (["--input", "F/*.jpg"], "F", "is the input folder"),
    "file_list": (["--input", "<two frames of F>"], "F", "contains the input file"),
    "gt_folder": (["--input", "F", "--gt", "G"], "G", "is the input folder"),
    "same_video": (["--video-input", "src.mp4"], "src.mp4", "is the input file"),
    "symlinked_video": (["--video-input", "link.mp4"], "src.mp4", "is the input file"),
    "video_folder": (["--video-input", "src.mp4"], "./", "contains the input file"),
    "codec_fallback": (["--video-input", "clip.avi"], "clip.mp4", "is the input file"),
    "sheet_in_input": (
        ["--input", "F", "--contact-sheet", "F/sheet.png"],
        "out.mp4",
        "is inside the input folder",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_demo_refuses_to_write_over_its_input(
    assets,  # noqa: F811  (the fixture imported from test_demo)
    no_reading,
    tmp_path,
    monkeypatch,  # noqa: F811
    capsys,
    case,
):
    """Item 2: --input F --output F overwrote the source frames, --video-input src.mp4
    --output src.mp4 replaced the source video."""
    _demo_inputs(assets, tmp_path)
    monkeypatch.chdir(tmp_path)
    inputs, output, expect = REFUSED[case]
    if case == "file_list":
        inputs = ["--input", *sorted(glob.glob("F/*.jpg"))[:2]]
    before = _tree_state(tmp_path)
    rc = no_reading.main([*inputs, "--output", output, "--opts", *assets["stub_opts"]])
    err = capsys.readouterr().err
    assert rc == 1 and "Refusing to write" in err and expect in err, err
    assert _tree_state(tmp_path) == before  # nothing written, nothing replaced
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["F", "G", "src.mp4", "clip.avi", "F_link", "link.mp4"]
    )


def test_demo_next_to_its_input_is_fine(assets, demo, tmp_path, monkeypatch):  # noqa: F811
    """The refusal is not too broad: outputs beside the input are written."""
    _demo_inputs(assets, tmp_path)
    monkeypatch.chdir(tmp_path)
    before = _tree_state(tmp_path / "F")
    assert demo.main(["--input", "F", "--output", "F_out", "--opts", *assets["stub_opts"]]) == 0
    assert (
        demo.main(
            [
                "--video-input",
                "src.mp4",
                "--output",
                "src_out.mp4",
                "--max-frames",
                "3",
                "--opts",
                *assets["stub_opts"],
            ]
        )
        == 0
    )
    assert _tree_state(tmp_path / "F") == before
    assert len(glob.glob("F_out/*.jpg")) == len(glob.glob("F/*.jpg"))
    assert os.path.getsize("src_out.mp4") > 0


# ------------------------------------------------------------- demo: unsupported --output
@pytest.mark.parametrize("output", ["out.xyz", "out.gif", "sub/clip.mpeg4"])
def test_demo_refuses_unsupported_output_extension(
    assets,  # noqa: F811  (the fixture imported from test_demo)
    no_reading,
    tmp_path,
    monkeypatch,  # noqa: F811
    capsys,
    output,
):
    """Item 19: --output out.xyz (or .gif) silently made a folder of JPEGs named out.xyz."""
    shutil.copy(assets["video"], tmp_path / "src.mp4")
    monkeypatch.chdir(tmp_path)
    rc = no_reading.main(
        ["--video-input", "src.mp4", "--output", output, "--opts", *assets["stub_opts"]]
    )
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "not a supported video extension" in err and ".mp4 .avi .mkv" in err
    assert "folder of per-frame images" in err and "without an extension" in err
    assert sorted(os.listdir(tmp_path)) == ["src.mp4"]


def test_demo_output_kinds(demo, tmp_path):  # noqa: F811
    """Video extensions -> a video; no extension, a trailing '/' or an existing folder -> a
    folder of frames (also with dots in the name)."""
    (tmp_path / "run.v2").mkdir()

    def plan(output):
        args = demo.get_parser().parse_args(["--webcam", "--output", output])
        return demo._plan_outputs(args)

    assert plan(str(tmp_path / "a.MKV"))[0] == str(tmp_path / "a.MKV")
    for folder in ("frames", "new.d/", "run.v2"):
        video, frames_dir, sheet = plan(os.path.join(str(tmp_path), folder))
        assert video is None and frames_dir == str(tmp_path / folder.rstrip("/"))
        assert sheet == os.path.join(frames_dir, "contact_sheet.png")
    assert not os.path.exists(tmp_path / "frames")  # planning creates nothing


# ---------------------------------------------------------- temporary files of kill -9
def _start(*args: str) -> subprocess.Popen:
    """``python *args`` with this checkout first on the path; stdout is a pipe."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT)
    return subprocess.Popen(
        [sys.executable, *args],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


WRITER = """
import sys, time
import numpy as np
from vps_d2.io import VideoWriter
w = VideoWriter(sys.argv[1], fps=5.0, frame_size=(80, 64))
for _ in range(5):
    w.write(np.full((64, 80, 3), 128, np.uint8))
print("writing", flush=True)
time.sleep(600)
"""


def test_partial_video_of_a_killed_demo_is_removed(assets, demo, tmp_path):  # noqa: F811
    """Item 14: kill -9 while a video is written left a hidden .o.mp4.<pid>.*.partial.mp4
    (3-5 MB for a real video) that no later run removed; same for a frame folder's temp."""
    out = tmp_path / "out"
    out.mkdir()
    p = _start("-c", WRITER, str(out / "o.mp4"))
    try:
        assert p.stdout.readline().strip() == "writing"
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    (left,) = glob.glob(str(out / f".o.mp4.{p.pid}.*.partial.mp4"))
    assert not (out / "o.mp4").exists()
    live = out / f".o.mp4.{os.getpid()}.abcdefgh.partial.mp4"  # a writer still running
    live.write_bytes(b"x")
    frames = tmp_path / "frames_out"
    frames.mkdir()
    stale_frame = frames / f".000001.jpg.{_dead_pid()}.zz12ab34.tmp"
    stale_frame.write_bytes(b"half a jpeg")
    assert (
        demo.main(
            [
                "--video-input",
                assets["video"],
                "--output",
                str(out / "o.mp4"),
                "--max-frames",
                "3",
                "--opts",
                *assets["stub_opts"],
            ]
        )
        == 0
    )
    assert not os.path.exists(left) and live.exists() and (out / "o.mp4").stat().st_size > 0
    assert (
        demo.main(
            [
                "--input",
                assets["frames"],
                "--output",
                str(frames),
                "--max-frames",
                "2",
                "--opts",
                *assets["stub_opts"],
            ]
        )
        == 0
    )
    assert not stale_frame.exists()
    assert [n for n in os.listdir(out) if n.startswith(".")] == [live.name]


def test_sample_dataset_work_folder_of_a_killed_run_is_removed(tmp_path):
    """Item 14: kill -9 during tools/make_sample_dataset.py left .vps-sample.tmp-* (without
    the writer's pid, so nothing could tell whether it was stale) for ever."""
    out = tmp_path / "vps-sample"
    p = _start(
        MAKE_SAMPLE,
        "--output",
        str(out),
        "--train-clips",
        "30",
        "--frames-min",
        "40",
        "--frames-max",
        "40",
    )
    try:
        deadline = time.time() + 300
        while time.time() < deadline:
            work = glob.glob(str(tmp_path / f".vps-sample.tmp-{p.pid}-*/TrainDataset/GT/*/*.png"))
            if work or p.poll() is not None:
                break
            time.sleep(0.2)
        assert work, "the generator's work folder (named with its pid) never appeared"
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    (stale,) = glob.glob(str(tmp_path / f".vps-sample.tmp-{p.pid}-*"))
    live = tmp_path / f".vps-sample.tmp-{os.getpid()}-running"  # a generator still at work
    live.mkdir()
    other = tmp_path / f".other.tmp-{_dead_pid()}-x"  # another dataset's: not ours to delete
    other.mkdir()
    make_sample_dataset(
        str(out),
        seed=1,
        train_clips=1,
        test_clips=1,
        frames_min=3,
        frames_max=3,
        height=32,
        width=32,
    )
    assert not os.path.exists(stale) and live.is_dir() and other.is_dir()
    assert sorted(os.listdir(out)) == ["TestEasyDataset", "TestHardDataset", "TrainDataset"]
    # killed between moving the old dataset aside and moving the new one in: restored
    old = tmp_path / f".vps-sample.old-{_dead_pid()}-q1w2e3"
    old.mkdir()
    os.replace(out, old / "data")
    with pytest.raises(FileExistsError, match="not empty"):
        make_sample_dataset(
            str(out),
            seed=1,
            train_clips=1,
            test_clips=1,
            frames_min=3,
            frames_max=3,
            height=32,
            width=32,
        )
    assert (out / "TrainDataset").is_dir() and not old.exists()


# ------------------------------------------------------ evaluate.py workers die with it
def _process_table() -> dict[int, tuple[int, str]]:
    """{pid: (parent pid, state)} from /proc."""
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                st = open(f"/proc/{d}/stat").read()
            except OSError:
                continue
            rest = st[st.rindex(")") + 2 :].split()
            out[int(d)] = (int(rest[1]), rest[0])
    return out


def _descendants(pid: int, table: dict) -> list[int]:
    kids = [p for p, (pp, _) in table.items() if pp == pid]
    return kids + [q for k in kids for q in _descendants(k, table)]


def _alive(pids, table) -> list[int]:
    return [p for p in pids if p in table and table[p][1] not in "ZX"]


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc")
def test_evaluate_workers_exit_when_it_is_killed(tmp_path):
    """Item 15: after kill -9 of tools/evaluate.py its workers went on for 30 s and more
    (with the fork server, a worker could block for ever)."""
    h, w, n = 1440, 1920, 300  # two cases of n frames: tens of seconds per case
    g = np.zeros((h, w), np.uint8)
    cv2.circle(g, (w // 2, h // 2), h // 4, 255, -1)
    cv2.imwrite(str(tmp_path / "g.png"), g)
    cv2.imwrite(str(tmp_path / "p.png"), cv2.GaussianBlur(g, (0, 0), 15))
    for case in ("case1", "case2"):
        gd = tmp_path / "gt" / "TestEasyDataset/Unseen/GT" / case
        pd = tmp_path / "pred/m/TestEasyDataset/Unseen" / case
        gd.mkdir(parents=True)
        pd.mkdir(parents=True)
        for i in range(1, n + 1):
            os.link(tmp_path / "g.png", gd / (STEM.format(i) + ".png"))  # same bytes, no space
            os.link(tmp_path / "p.png", pd / (STEM.format(i) + ".png"))
    cmd = [
        sys.executable,
        EVALUATE,
        "--gt-root",
        str(tmp_path / "gt"),
        "--pred-root",
        str(tmp_path / "pred"),
        "--model",
        "m",
        "--workers",
        "2",
    ]
    p = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT),
    )
    try:
        deadline = time.time() + 240
        workers: list[int] = []
        while time.time() < deadline and p.poll() is None:
            table = _process_table()
            # main -> fork server -> workers (plus the resource tracker)
            workers = [q for c in _descendants(p.pid, table) for q in _descendants(c, table)]
            if len(workers) >= 2:
                break
            time.sleep(0.2)
        assert len(workers) >= 2, "the worker processes never started"
        time.sleep(1.0)  # workers busy with their case
        everyone = _descendants(p.pid, _process_table())
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert p.returncode == -signal.SIGKILL  # killed mid-evaluation, not finished
    killed = time.time()
    while time.time() - killed < 5 and _alive(workers, _process_table()):
        time.sleep(0.1)
    assert _alive(workers, _process_table()) == [], "workers outlived the killed main process"
    # the fork server and resource tracker follow once the workers are gone (their exit
    # takes a few seconds of interpreter shutdown on a loaded machine)
    while time.time() - killed < 60 and _alive(everyone, _process_table()):
        time.sleep(0.2)
    assert _alive(everyone, _process_table()) == []


# ------------------------------------------------------------------- file permissions
def _modes(folder) -> tuple[dict, dict]:
    files, dirs = {}, {}
    for root, ds, fs in os.walk(folder):
        for d in ds:
            dirs[os.path.join(root, d)] = stat.S_IMODE(os.stat(os.path.join(root, d)).st_mode)
        for f in fs:
            files[os.path.join(root, f)] = stat.S_IMODE(os.stat(os.path.join(root, f)).st_mode)
    return files, dirs


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_outputs_get_umask_permissions(registered, gt_pair, assets, demo, tmp_path, umask):  # noqa: F811
    """Item 16: prediction PNGs, JSON and CSV results were written 0600 (mkstemp's mode).
    Every kind of output: the evaluator's predictions, results and worst cases, the CLI's
    JSON/CSV/plot, the demo's video, frames and contact sheet, the sample dataset."""
    _, _, split, (n255, _), (rec255, _) = registered
    _, _, pred_root = gt_pair
    old = os.umask(umask)
    try:
        ev_out = tmp_path / "ev"
        ev = VPSEvaluator(n255, str(ev_out), save_predictions=True, dump_worst_cases=2)
        _run(ev, _frames(rec255))
        cli_out = tmp_path / "cli"
        args = [
            "--gt-root",
            str(tmp_path / "gt255"),
            "--pred-root",
            pred_root,
            "--model",
            "m",
            "--workers",
            "1",
            "--json",
            str(cli_out / "r.json"),
            "--csv",
            str(cli_out / "c.csv"),
            "--plot",
            str(cli_out / "p.png"),
        ]
        assert load_cli().main(args) == 0
        demo_out = tmp_path / "demo"
        assert (
            demo.main(
                [
                    "--input",
                    assets["frames"],
                    "--gt",
                    assets["gt"],
                    "--output",
                    str(demo_out / "v.mp4"),
                    "--save-frames",
                    "--max-frames",
                    "3",
                    "--opts",
                    *assets["stub_opts"],
                ]
            )
            == 0
        )
        make_sample_dataset(
            str(tmp_path / "sample"),
            seed=0,
            train_clips=1,
            test_clips=1,
            frames_min=3,
            frames_max=3,
            height=32,
            width=32,
        )
    finally:
        os.umask(old)
    expect_file, expect_dir = 0o666 & ~umask, 0o777 & ~umask
    kinds = {
        ev_out: (".png", ".json", ".csv"),
        cli_out: (".json", ".csv", ".png"),
        demo_out: (".mp4", ".jpg", ".png"),
        tmp_path / "sample": (".jpg", ".png", ".json", ".txt", ".csv"),
    }
    for folder, exts in kinds.items():
        files, dirs = _modes(folder)
        assert {os.path.splitext(f)[1] for f in files} >= set(exts), (folder, files)
        assert {f: oct(m) for f, m in files.items() if m != expect_file} == {}
        assert {d: oct(m) for d, m in dirs.items() if m != expect_dir} == {}
    assert stat.S_IMODE(os.stat(tmp_path / "sample").st_mode) == expect_dir
    assert glob.glob(str(ev_out / "predictions" / "vps_d2" / split / "*" / "*.png"))
    assert glob.glob(str(ev_out / "worst_cases" / n255 / "*.png"))
