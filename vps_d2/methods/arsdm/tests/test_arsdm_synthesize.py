"""ArSDM end to end on the tiny sample data: tools/train_net.py resumes exactly (EMA
included); tools/synthesize.py writes a SUN-SEG-layout dataset, resumes after a kill with no
duplicate or half-written file and the same bytes as an uninterrupted run, refuses other
settings, and its dataset trains another method beside the real one (DATASETS.SYNTHETIC)."""

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import torch
from train_net_runner import ROOT, run_train_net, train_net_env

from vps_d2.methods.arsdm import measures
from vps_d2.model_zoo import get_config_file

CONFIG = get_config_file("arsdm_sample.yaml")
SYNTHESIZE = os.path.join(ROOT, "tools", "synthesize.py")
TINY = [
    "MODEL.ARSDM.UNET.MODEL_CHANNELS",
    "8",
    "MODEL.ARSDM.UNET.NUM_HEAD_CHANNELS",
    "8",
    "INPUT.SIZE_TRAIN",
    "(16, 20)",
    "INPUT.SIZE_TEST",
    "(16, 20)",
    "SOLVER.IMS_PER_BATCH",
    "2",
    "DATALOADER.NUM_WORKERS",
    "0",
    "SOLVER.WARMUP_ITERS",
    "0",
    "SOLVER.MAX_ITER",
    "4",
    "SOLVER.CHECKPOINT_PERIOD",
    "2",
    "SEED",
    "1",
]


def _weights(out):
    path = os.path.join(out, "model_final.pth")
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


@pytest.fixture(scope="module")
def trained(tiny_sample_root, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("arsdm") / "full")
    run_train_net(tiny_sample_root, CONFIG, *TINY, "OUTPUT_DIR", out)
    return out


@pytest.mark.slow
def test_train_net_resumes_exactly_with_ema(trained, tiny_sample_root, tmp_path):
    half = str(tmp_path / "half")  # a run killed after its checkpoint of iteration 1
    os.makedirs(half)
    shutil.copy(os.path.join(trained, "model_0000001.pth"), half)
    with open(os.path.join(half, "last_checkpoint"), "w") as f:
        f.write("model_0000001.pth")
    run_train_net(tiny_sample_root, CONFIG, *TINY, "OUTPUT_DIR", half, flags=["--resume"])
    a, b = _weights(trained), _weights(half)
    assert a.keys() == b.keys() and int(a["ema_updates"]) == 4
    assert any(k.startswith("unet_ema.") for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # the EMA moved away from the initial weights and differs from the trained ones
    assert not torch.equal(a["unet_ema.out.2.weight"], a["unet.out.2.weight"])


def _synth_cmd(trained, out, *extra):
    return [
        sys.executable,
        SYNTHESIZE,
        "--config-file",
        CONFIG,
        "--weights",
        os.path.join(trained, "model_final.pth"),
        "--masks-from",
        "vps_sample_train",
        "--output",
        out,
        "--batch-size",
        "1",
        "--no-progress",
        *extra,
        "--opts",
        *TINY,
        "MODEL.ARSDM.SAMPLER.STEPS",
        "10",
    ]


def _files(out):
    return sorted(
        os.path.relpath(p, out)
        for p in glob.glob(os.path.join(out, "**", "*"), recursive=True)
        if os.path.isfile(p)
    )


@pytest.mark.slow
def test_synthesize_resumes_after_a_kill(trained, tiny_sample_root, tmp_path):
    env = train_net_env(tiny_sample_root)
    out = str(tmp_path / "synth")
    proc = subprocess.Popen(
        _synth_cmd(trained, out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.time() + 600
    while time.time() < deadline and len(glob.glob(f"{out}/TrainDataset/Frame/*/*.jpg")) < 3:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not os.path.exists(os.path.join(out, "synthetic.json")), "finished before the kill"
    written = glob.glob(f"{out}/TrainDataset/Frame/*/*.jpg")
    assert written
    for path in written:  # every visible file is whole
        assert cv2.imread(path) is not None, path
    # resume: the same command finishes the job
    p = subprocess.run(_synth_cmd(trained, out), env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    # an uninterrupted run of the same command writes the same bytes
    ref = str(tmp_path / "ref")
    p = subprocess.run(_synth_cmd(trained, ref), env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    files = [f for f in _files(out) if f.startswith("TrainDataset")]
    assert files == [f for f in _files(ref) if f.startswith("TrainDataset")]
    assert not [f for f in files if os.path.basename(f).startswith(".")]  # no temporary file
    masks = glob.glob(os.path.join(tiny_sample_root, "vps-sample", "TrainDataset", "GT", "*", "*"))
    assert len(files) == 2 * len(masks)  # one frame and one mask per mask, no duplicate
    for f in files:
        with open(os.path.join(out, f), "rb") as a, open(os.path.join(ref, f), "rb") as b:
            assert a.read() == b.read(), f
    manifest = json.load(open(os.path.join(out, "synthetic.json")))
    assert manifest["complete"] and manifest["name"] == "vps_sample_train_arsdm"
    assert "temporal_diff_synthetic" in json.load(open(os.path.join(out, "measures.json")))
    # other settings into the same folder: refused, one line
    p = subprocess.run(
        _synth_cmd(trained, out)[:-2] + ["MODEL.ARSDM.SAMPLER.STEPS", "3"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert p.returncode == 1 and "other settings" in p.stderr and "config" in p.stderr
    # the synthetic dataset trains another method beside the real one
    run_train_net(
        tiny_sample_root,
        get_config_file("frame_baseline_sample.yaml"),
        "DATASETS.SYNTHETIC",
        f"('{out}',)",
        "DATASETS.TRAIN",
        "('vps_sample_train', 'vps_sample_train_arsdm')",
        "DATASETS.TEST",
        "()",
        "SOLVER.MAX_ITER",
        "2",
        "SOLVER.IMS_PER_BATCH",
        "2",
        "DATALOADER.NUM_WORKERS",
        "0",
        "INPUT.SIZE_TRAIN",
        "(32, 40)",
        "OUTPUT_DIR",
        str(tmp_path / "fb"),
    )
    log = open(tmp_path / "fb" / "log.txt").read()
    assert "Dataset 'vps_sample_train_arsdm'" in log


def test_frechet_distance_and_temporal_difference_against_closed_forms(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 3))
    assert measures.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # N(0, I) vs N(mu, 4 I): |mu|^2 + tr(I + 4I - 2 * 2I) = |mu|^2 + 3
    b = rng.normal(size=(4000, 3)) * 2 + np.array([1.0, 2.0, 0.0])
    assert measures.frechet_distance(a, b) == pytest.approx(5 + 3, rel=0.05)
    paths = []
    for i, v in enumerate([10, 30, 30]):
        paths.append(str(tmp_path / f"{i}.png"))
        cv2.imwrite(paths[-1], np.full((8, 8, 3), v, np.uint8))
    assert measures.temporal_difference([paths]) == pytest.approx((20 + 0) / 2)
    f = measures.RandomConvFeatures(seed=0)
    x = torch.rand(2, 3, 32, 32)
    assert f(x).shape == (2, 480) and torch.equal(f(x), measures.RandomConvFeatures(0)(x))


def test_synthesize_output_under_a_file_is_one_line(trained, tiny_sample_root, tmp_path):
    """An --output the OS refuses (here: its parent is a file) is one line naming the path,
    no traceback, nothing written."""
    (tmp_path / "a_file").write_text("x")
    out = str(tmp_path / "a_file" / "synth")
    p = subprocess.run(
        _synth_cmd(trained, out),
        env=train_net_env(tiny_sample_root),
        capture_output=True,
        text=True,
    )
    errors = [ln for ln in p.stderr.splitlines() if "error:" in ln]
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert len(errors) == 1 and "a_file" in errors[0], errors
    assert (tmp_path / "a_file").read_text() == "x"
