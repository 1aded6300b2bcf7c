"""End-to-end engine behaviour through tools/train_net.py on the tiny sample dataset."""

import glob
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from train_net_runner import TRAIN_NET, run_train_net, train_net_env

from vps_d2.checkpoint import VPSCheckpointer
from vps_d2.config import add_vps_config, get_cfg
from vps_d2.model_zoo import get_config_file

CONFIG = get_config_file("frame_baseline_sample.yaml")
FAST = [
    "INPUT.SIZE_TRAIN",
    "(64, 80)",
    "INPUT.SIZE_TEST",
    "(64, 80)",
    "SOLVER.IMS_PER_BATCH",
    "2",
    "DATALOADER.NUM_WORKERS",
    "0",
    "DATALOADER.NUM_WORKERS_TEST",
    "0",
    "SOLVER.WARMUP_ITERS",
    "0",
    "MODEL.BACKBONE.SMALL_CNN_CHANNELS",
    "[8, 8, 16, 16]",
    "MODEL.FRAME_BASELINE.DECODER_CHANNELS",
    "8",
    "SEED",
    "1",
]


def train_net(root, *opts, flags=(), check=True, timeout=300):
    """Run tools/train_net.py in a subprocess: ``flags`` (e.g. --resume), then KEY VALUE opts."""
    return run_train_net(root, CONFIG, *opts, flags=flags, check=check, timeout=timeout)


def _load_tool():
    return importlib.import_module("vps_d2.cli.train_net")


@pytest.fixture
def train_net_inproc(tiny_sample_root, monkeypatch, capsys):
    """Call tools/train_net.py's cli() in this process (single process: no spawn cost).

    Returns ``run(*opts, flags=()) -> (exit code, stderr text)``."""
    monkeypatch.setenv("VPS_DATASETS", tiny_sample_root)
    tool = _load_tool()

    def run(*opts, flags=()):
        code = tool.cli(["--config-file", CONFIG, *flags, *opts])
        return code, capsys.readouterr().err

    return run


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


def test_resume_equals_uninterrupted(train_net_inproc, tmp_path):
    """Train 8 iterations in one go == train 4, then --resume for the remaining 4."""
    full, half = str(tmp_path / "full"), str(tmp_path / "half")
    opts = [*FAST, "SOLVER.MAX_ITER", "8", "SOLVER.CHECKPOINT_PERIOD", "4", "DATASETS.TEST", "()"]
    assert train_net_inproc(*opts, "OUTPUT_DIR", full)[0] == 0
    assert sorted(os.path.basename(p) for p in glob.glob(f"{full}/*.pth")) == [
        "model_0000003.pth",
        "model_0000007.pth",
        "model_final.pth",
    ]
    # A run stopped right after its first checkpoint (iteration 3), then resumed.
    os.makedirs(half)
    shutil.copy(f"{full}/model_0000003.pth", half)
    with open(f"{half}/last_checkpoint", "w") as f:
        f.write("model_0000003.pth")
    assert train_net_inproc(*opts, "OUTPUT_DIR", half, flags=["--resume"])[0] == 0
    log = open(f"{half}/log.txt").read()
    assert "Resumed from" in log and "at iteration 4" in log
    a, b = _weights(f"{full}/model_final.pth"), _weights(f"{half}/model_final.pth")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # and training changed the weights at all
    c = _weights(f"{full}/model_0000003.pth")
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())
    # metrics.json holds the losses, one JSON object per line
    lines = [json.loads(x) for x in open(f"{full}/metrics.json")]
    assert lines[-1]["iteration"] == 7 and "total_loss" in lines[-1] and "lr" in lines[-1]
    assert os.path.isfile(f"{full}/config.yaml") and os.path.isfile(f"{full}/log.txt")
    assert glob.glob(f"{full}/events.out.tfevents.*")


def test_killed_run_resumes_without_corrupt_checkpoint(tiny_sample_root, tmp_path):
    out = str(tmp_path / "killed")
    cmd = [
        sys.executable,
        TRAIN_NET,
        "--config-file",
        CONFIG,
        *FAST,
        "SOLVER.MAX_ITER",
        "100000",
        "SOLVER.CHECKPOINT_PERIOD",
        "2",
        "DATASETS.TEST",
        "()",
        "OUTPUT_DIR",
        out,
    ]
    proc = subprocess.Popen(
        cmd,
        env=train_net_env(tiny_sample_root),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 180
        while time.time() < deadline and len(glob.glob(f"{out}/model_*.pth")) < 3:
            time.sleep(0.2)
        assert glob.glob(f"{out}/model_*.pth"), "no checkpoint written in time"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    for path in glob.glob(f"{out}/model_*.pth"):  # every checkpoint file is complete
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        assert {"model", "optimizer", "scheduler", "iteration"} <= set(ckpt)
    last = open(f"{out}/last_checkpoint").read().strip()
    it = torch.load(f"{out}/{last}", map_location="cpu", weights_only=False)["iteration"]
    opts = [*FAST, "SOLVER.MAX_ITER", str(it + 3), "DATASETS.TEST", "()"]
    p = train_net(
        tiny_sample_root,
        *opts,
        "SOLVER.CHECKPOINT_PERIOD",
        "2",
        "OUTPUT_DIR",
        out,
        flags=["--resume"],
    )
    assert f"at iteration {it + 1}" in p.stdout
    assert os.path.isfile(f"{out}/model_final.pth")


def test_two_process_cpu_ddp(tiny_sample_root, tmp_path):
    out = str(tmp_path / "ddp")
    p = train_net(
        tiny_sample_root,
        *FAST,
        "SOLVER.MAX_ITER",
        "3",
        "DATASETS.TEST",
        "()",
        "OUTPUT_DIR",
        out,
        flags=["--num-gpus", "2"],
    )
    assert "World size: 2" in p.stdout
    assert os.path.isfile(f"{out}/model_final.pth")
    assert os.path.isfile(f"{out}/log.txt.rank1")


def test_eval_only_errors(train_net_inproc, tmp_path):
    code, err = train_net_inproc(
        *FAST,
        "MODEL.WEIGHTS",
        str(tmp_path / "missing.pth"),
        "OUTPUT_DIR",
        str(tmp_path),
        flags=["--eval-only"],
    )
    assert code == 1 and "missing.pth" in err and "not found" in err
    # weights of another architecture: a clear mismatch error
    other = torch.nn.Linear(2, 2)
    VPSCheckpointer(other, str(tmp_path)).save("other")
    code, err = train_net_inproc(
        *FAST,
        "MODEL.WEIGHTS",
        str(tmp_path / "other.pth"),
        "OUTPUT_DIR",
        str(tmp_path),
        flags=["--eval-only"],
    )
    assert code == 1 and "does not match the model" in err
    code, err = train_net_inproc("SOLVER.NOT_A_KEY", "1")
    assert code == 2 and "SOLVER.NOT_A_KEY" in err


def test_train_then_eval_only_learns(train_net_inproc, tmp_path):
    """Training lowers the loss on the sample data, and --eval-only scores the result."""
    out = str(tmp_path / "learn")
    assert (
        train_net_inproc(
            *FAST,
            "SOLVER.MAX_ITER",
            "60",
            "SOLVER.BASE_LR",
            "0.01",
            "DATASETS.TEST",
            "()",
            "OUTPUT_DIR",
            out,
        )[0]
        == 0
    )
    lines = [json.loads(x) for x in open(f"{out}/metrics.json")]
    assert lines[-1]["total_loss"] < 0.8 * lines[0]["total_loss"], lines
    ev = str(tmp_path / "eval")
    assert (
        train_net_inproc(
            *FAST,
            "MODEL.WEIGHTS",
            f"{out}/model_final.pth",
            "TEST.VPS.DUMP_WORST_CASES",
            "2",
            "OUTPUT_DIR",
            ev,
            flags=["--eval-only"],
        )[0]
        == 0
    )
    results = json.load(open(f"{ev}/results.json"))
    assert set(results) == {
        "vps_sample_easy_seen",
        "vps_sample_easy_unseen",
        "vps_sample_hard_seen",
        "vps_sample_hard_unseen",
    }
    for metrics in results.values():
        assert 0.0 <= metrics["maxDice"] <= 1.0
    # qualitative dump: the 2 worst frames of each split, plus a grid of them
    for name in results:
        drawn = sorted(os.listdir(f"{ev}/worst_cases/{name}"))
        assert len([f for f in drawn if f.endswith(".jpg")]) == 2, drawn
        assert "worst_cases.png" in drawn


def test_nan_loss_stops_clearly(tiny_sample_root, tmp_path, monkeypatch):
    from vps_d2.engine import NonFiniteLossError, Trainer
    from vps_d2.methods.frame_baseline import FrameBaseline

    monkeypatch.setenv("VPS_DATASETS", tiny_sample_root)
    calls = {"n": 0}
    real = FrameBaseline.losses

    def losses(self, batched_inputs):
        out = real(self, batched_inputs)
        calls["n"] += 1
        if calls["n"] == 3:
            out["loss_dice"] = out["loss_dice"] * float("nan")
        return out

    monkeypatch.setattr(FrameBaseline, "losses", losses)
    cfg = get_cfg()
    add_vps_config(cfg)
    cfg.merge_from_file(CONFIG)
    cfg.merge_from_list(
        [*FAST, "SOLVER.MAX_ITER", "10", "DATASETS.TEST", "()", "OUTPUT_DIR", str(tmp_path)]
    )
    from vps_d2.data.datasets import configure_datasets

    configure_datasets(cfg)
    trainer = Trainer(cfg)
    with pytest.raises(NonFiniteLossError, match=r"iteration 2.*loss_dice"):
        trainer.train()


def test_mixed_precision_through_fabric(train_net_inproc, tmp_path, monkeypatch):
    """SOLVER.AMP.ENABLED trains with Fabric's bf16-mixed precision on the CPU."""
    from vps_d2.engine import Trainer

    seen = {}
    real = Trainer.run_step

    def run_step(self):
        seen["precision"] = type(self.fabric.strategy.precision).__name__
        real(self)

    monkeypatch.setattr(Trainer, "run_step", run_step)
    code, _ = train_net_inproc(
        *FAST,
        "SOLVER.MAX_ITER",
        "2",
        "SOLVER.AMP.ENABLED",
        "True",
        "DATASETS.TEST",
        "()",
        "OUTPUT_DIR",
        str(tmp_path),
    )
    assert code == 0 and os.path.isfile(tmp_path / "model_final.pth")
    assert seen["precision"] == "MixedPrecision"
