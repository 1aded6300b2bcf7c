"""Reliability of tools/train_net.py and the engine (docs/reliability.md): nothing a user
made is lost or silently replaced, every fault is one clear line, found before processes
start when it can be. Each test reproduces a defect found by trying the tool."""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from test_engine import CONFIG, FAST, _load_tool
from train_net_runner import TRAIN_NET, run_train_net, start_tool

from vps_d2.config import add_vps_config, get_cfg
from vps_d2.data.datasets import configure_datasets
from vps_d2.engine import NonFiniteLossError, Trainer


@pytest.fixture
def cli(tiny_sample_root, monkeypatch, capsys):
    monkeypatch.setenv("VPS_DATASETS", tiny_sample_root)
    tool = _load_tool()

    def run(*opts, flags=()):
        code = tool.cli(["--config-file", CONFIG, *flags, *FAST, *opts])
        out = capsys.readouterr()
        return code, out.err

    return run


def _popen(root, out, *opts):
    cmd = [sys.executable, TRAIN_NET, "--config-file", CONFIG, *FAST, *opts, "OUTPUT_DIR", out]
    return start_tool(cmd, root, start_new_session=True)


def _wait_for(pattern, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if glob.glob(pattern):
            return
        time.sleep(0.2)
    raise AssertionError(f"{pattern} did not appear in {timeout} s")


def test_best_checkpoint_survives_resume_and_is_labelled_like_model_final(cli, tmp_path):
    """Items 3 and 20: --resume used to forget the best value ("New best ... (previous
    None)") and replace model_best by a worse model; model_best was labelled max_iter."""
    out = str(tmp_path / "best")
    opts = [
        "SOLVER.MAX_ITER",
        "4",
        "TEST.EVAL_PERIOD",
        "2",
        "SOLVER.CHECKPOINT_PERIOD",
        "2",
        "OUTPUT_DIR",
        out,
    ]
    assert cli(*opts)[0] == 0
    best = json.load(open(f"{out}/model_best.json"))
    assert best["iteration"] in (1, 3)  # an evaluated iteration, never 4 (= MAX_ITER)
    final_iter = torch.load(f"{out}/model_final.pth", weights_only=False)["iteration"]
    assert final_iter == 3
    state = torch.load(f"{out}/model_final.pth", weights_only=False)["trainer"]
    assert "best" in state["hooks"]["BestCheckpointer"]  # the trainer state carries it
    code, _ = cli(*opts[:-2], "SOLVER.MAX_ITER", "6", "OUTPUT_DIR", out, flags=["--resume"])
    assert code == 0
    log = open(f"{out}/log.txt").read()
    assert "Best checkpoint so far" in log
    resumed = log[log.rindex("Resumed from") :]
    assert "(previous None)" not in resumed
    new_best = json.load(open(f"{out}/model_best.json"))
    assert new_best["value"] >= best["value"]


def test_second_run_into_a_busy_output_dir_is_refused_and_a_dead_lock_is_not(
    tiny_sample_root, tmp_path
):
    """Item 4: two runs into one OUTPUT_DIR interleaved metrics.json and model_best."""
    out = str(tmp_path / "busy")
    first = _popen(tiny_sample_root, out, "SOLVER.MAX_ITER", "100000", "DATASETS.TEST", "()")
    try:
        _wait_for(f"{out}/log.txt")
        p = run_train_net(
            tiny_sample_root,
            CONFIG,
            *FAST,
            "SOLVER.MAX_ITER",
            "2",
            "DATASETS.TEST",
            "()",
            "OUTPUT_DIR",
            out,
            flags=["--resume"],
            check=False,
        )
        assert p.returncode == 1 and "in use by another run (pid" in p.stderr
        assert "Traceback" not in p.stderr
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    # the holder died (kill -9): its lock does not block the next run
    p = run_train_net(
        tiny_sample_root,
        CONFIG,
        *FAST,
        "SOLVER.MAX_ITER",
        "2",
        "DATASETS.TEST",
        "()",
        "OUTPUT_DIR",
        out,
        flags=["--overwrite"],
    )
    assert os.path.isfile(f"{out}/model_final.pth")


def test_new_run_into_a_finished_output_dir_is_refused_or_moved_aside(cli, tmp_path):
    """Item 5: a new run without --resume silently replaced model_final/model_best."""
    out = str(tmp_path / "done")
    opts = ["SOLVER.MAX_ITER", "2", "DATASETS.TEST", "()", "OUTPUT_DIR", out]
    assert cli(*opts)[0] == 0
    before = open(f"{out}/model_final.pth", "rb").read()
    code, err = cli(*opts)
    assert code == 1 and "already holds a training run" in err and "--resume" in err
    assert "--overwrite" in err
    assert open(f"{out}/model_final.pth", "rb").read() == before
    assert cli(*opts, flags=["--overwrite"])[0] == 0
    kept = glob.glob(f"{out}/previous_runs/*/model_final.pth")
    assert len(kept) == 1 and open(kept[0], "rb").read() == before
    # and the new run's log says where the old files went
    log = open(f"{out}/log.txt", encoding="utf-8").read()
    assert f"previous run's files were moved to {os.path.dirname(kept[0])}" in log
    assert os.path.isfile(f"{out}/model_final.pth")
    assert cli(*opts, flags=["--resume"])[0] == 0  # resuming a finished run is fine


def test_resume_runs_a_final_evaluation_that_did_not_finish(cli, tmp_path):
    """Item 6: killed during the final evaluation, --resume said "Nothing to train" and left
    no results.json nor model_best. (The state of a run killed there: model_final exists,
    the final evaluation is not recorded.)"""
    out = str(tmp_path / "eval_killed")
    opts = ["SOLVER.MAX_ITER", "2", "OUTPUT_DIR", out]
    assert cli(*opts)[0] == 0
    assert json.load(open(f"{out}/last_eval.json")) == {"final": True, "iteration": 1}
    results = json.load(open(f"{out}/results.json"))
    for name in ("results.json", "last_eval.json", "model_best.json", "model_best.pth"):
        os.remove(f"{out}/{name}")
    assert cli(*opts, flags=["--resume"])[0] == 0
    assert json.load(open(f"{out}/results.json")) == results
    assert os.path.isfile(f"{out}/model_best.pth")
    # and once recorded, a further --resume does nothing
    mtime = os.path.getmtime(f"{out}/results.json")
    assert cli(*opts, flags=["--resume"])[0] == 0
    assert os.path.getmtime(f"{out}/results.json") == mtime


def _trainer(tiny_sample_root, out, *opts):
    os.environ["VPS_DATASETS"] = tiny_sample_root
    cfg = add_vps_config(get_cfg())
    cfg.merge_from_file(CONFIG)
    cfg.merge_from_list([*FAST, "DATASETS.TEST", "()", "OUTPUT_DIR", out, *opts])
    configure_datasets(cfg)
    return Trainer(cfg)


def test_nan_names_the_checkpoint_that_is_really_good(tiny_sample_root, tmp_path, monkeypatch):
    """Item 7: the NaN stop pointed at last_checkpoint even when it held exploded weights,
    or when no checkpoint existed."""
    # weights explode after the step of iteration 3 (periodic checkpoints at 1 and 3)
    trainer = _trainer(
        tiny_sample_root,
        str(tmp_path / "w"),
        "SOLVER.MAX_ITER",
        "10",
        "SOLVER.CHECKPOINT_PERIOD",
        "2",
    )
    step = trainer.optim.step

    def exploding_step(name):
        step(name)
        if trainer.optim.iteration == 3:
            with torch.no_grad():
                next(trainer.model_raw.parameters()).fill_(float("inf"))

    monkeypatch.setattr(trainer.optim, "step", exploding_step)
    with pytest.raises(NonFiniteLossError) as e:
        trainer.train()
    msg = str(e.value)
    assert "iteration 3" in msg and "was not saved" in msg
    assert "model_0000001.pth (iteration 1)" in msg
    assert not os.path.exists(tmp_path / "w" / "model_0000003.pth")
    assert open(tmp_path / "w" / "last_checkpoint").read() == "model_0000001.pth"
    # a NaN loss before any checkpoint: there is none to resume from
    trainer = _trainer(tiny_sample_root, str(tmp_path / "n"), "SOLVER.MAX_ITER", "10")
    real = trainer.model_raw.losses
    monkeypatch.setattr(
        trainer.model_raw, "losses", lambda b: {k: v * float("nan") for k, v in real(b).items()}
    )
    with pytest.raises(NonFiniteLossError, match="No checkpoint was saved before"):
        trainer.train()


def test_bad_setups_fail_before_any_process_starts(cli, tmp_path):
    """Items 9, 11, 13, 18: a file as OUTPUT_DIR parent, a batch not divisible by the
    processes, a missing test split (found only after training), last_checkpoint naming a
    missing file (blamed on MODEL.WEIGHTS)."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, err = cli("OUTPUT_DIR", str(blocker / "out"))
    assert code == 1 and "OUTPUT_DIR" in err and f"{blocker} is a file, not a folder" in err
    assert "Traceback" not in err
    code, err = cli(
        "SOLVER.IMS_PER_BATCH", "3", "OUTPUT_DIR", str(tmp_path / "b"), flags=["--num-gpus", "2"]
    )
    assert code == 1 and "SOLVER.IMS_PER_BATCH (3)" in err
    assert not os.path.exists(tmp_path / "b" / "log.txt")  # nothing was started
    code, err = cli("DATASETS.TEST", '("sun_seg_easy_seen",)', "OUTPUT_DIR", str(tmp_path / "t"))
    assert code == 1 and "sun_seg_easy_seen" in err
    assert not glob.glob(str(tmp_path / "t" / "model_*.pth"))
    out = tmp_path / "r"
    out.mkdir()
    (out / "last_checkpoint").write_text("model_0000041.pth")
    code, err = cli("OUTPUT_DIR", str(out), flags=["--resume"])
    assert code == 1 and "last_checkpoint" in err and "model_0000041.pth" in err
    assert "MODEL.WEIGHTS" not in err


def test_disk_full_is_named_and_the_last_checkpoint_kept(cli, tmp_path, monkeypatch):
    """Item 10: a full disk while saving gave an obscure PyTorch error."""
    import vps_d2.utils.file_io as file_io

    saves = {"n": 0}
    real_save = torch.save

    def save(obj, f, *a, **k):
        saves["n"] += 1
        if saves["n"] == 2:  # the second checkpoint: the disk is full
            monkeypatch.setattr(file_io, "DISK_FULL_MARGIN", 2**62)
            raise RuntimeError("[enforce fail at inline_container.cc:595] . unexpected pos")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", save)
    out = str(tmp_path / "full")
    code, err = cli(
        "SOLVER.MAX_ITER",
        "10",
        "SOLVER.CHECKPOINT_PERIOD",
        "2",
        "DATASETS.TEST",
        "()",
        "OUTPUT_DIR",
        out,
    )
    assert code == 1 and f"no space left on {out}" in err
    assert f"the last complete checkpoint is {out}/model_0000001.pth" in err
    assert torch.load(f"{out}/model_0000001.pth", weights_only=False)["iteration"] == 1
    assert not [f for f in os.listdir(out) if f.endswith(".tmp")]


def test_stale_temporary_files_of_dead_processes_are_removed(cli, tmp_path):
    """Item 14: hidden temp files of kill -9 were never cleaned."""
    out = tmp_path / "stale"
    out.mkdir()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    stale = out / f".model_0000003.pth.{dead}.k2j3.tmp"
    stale.write_bytes(b"\0" * 1000)
    assert cli("SOLVER.MAX_ITER", "1", "DATASETS.TEST", "()", "OUTPUT_DIR", str(out))[0] == 0
    assert not stale.exists()
    log = (out / "log.txt").read_text(encoding="utf-8")  # and the log says so
    assert f"Removed 1 stale temporary file(s) of dead processes in {out}" in log
    assert stale.name in log


def test_ctrl_c_prints_where_to_resume(tiny_sample_root, tmp_path):
    """Item 17: Ctrl-C in training printed a traceback."""
    out = str(tmp_path / "int")
    p = _popen(
        tiny_sample_root,
        out,
        "SOLVER.MAX_ITER",
        "100000",
        "SOLVER.CHECKPOINT_PERIOD",
        "2",
        "DATASETS.TEST",
        "()",
    )
    try:
        _wait_for(f"{out}/model_0000001.pth")
        _wait_for(f"{out}/last_checkpoint")  # tagged after the file is saved (a loaded
        os.killpg(p.pid, signal.SIGINT)  # machine can interrupt between the two)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert p.returncode == 130
    assert "Traceback" not in err
    assert "Interrupted: the last checkpoint is" in err and "--resume" in err
