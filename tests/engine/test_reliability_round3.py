"""Reliability, round 3 (issue 24) for tools/train_net.py and the engine: another method's
run is never touched, every OSError is one line, SIGTERM / SIGUSR1 save and resume
bit-identically (also agreed between DDP processes). Each test reproduces a defect found
by trying the tool."""

import errno
import glob
import os
import signal
import sys
import time

import pytest
import torch
from test_engine import CONFIG, FAST, _load_tool
from train_net_runner import TRAIN_NET, start_tool

from vps_d2.model_zoo import get_config_file

SALI = get_config_file("sali_sample.yaml")
NO_TEST = ["DATASETS.TEST", "()"]


@pytest.fixture
def tool(tiny_sample_root, monkeypatch, capsys):
    """``run(config, *opts, flags=()) -> (exit code, stderr)`` of train_net's cli() here."""
    monkeypatch.setenv("VPS_DATASETS", tiny_sample_root)
    mod = _load_tool()

    def run(config, *opts, flags=()):
        code = mod.cli(["--config-file", config, *flags, *opts])
        return code, capsys.readouterr().err

    return run


def _snapshot(folder):
    """{relative path: (size, mtime_ns)} of every file under ``folder``."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            st = os.stat(path)
            out[os.path.relpath(path, folder)] = (st.st_size, st.st_mtime_ns)
    return out


def test_another_methods_run_is_never_touched(tool, tmp_path):
    """Item 1: --resume with the PGN+AEN config into a finished Diff-VPS run replaced its
    config.yaml (no backup) and died inside torch's optimizer loading."""
    out = str(tmp_path / "baseline_run")
    opts = [*FAST, "SOLVER.MAX_ITER", "1", *NO_TEST, "OUTPUT_DIR", out]
    assert tool(CONFIG, *opts)[0] == 0
    before = _snapshot(out)
    config_text = open(f"{out}/config.yaml").read()
    sali_opts = ["SOLVER.MAX_ITER", "1", *NO_TEST, "OUTPUT_DIR", out]
    for flags in (["--resume"], ["--eval-only"], []):
        extra = ["MODEL.WEIGHTS", f"{out}/model_final.pth"] if flags == ["--eval-only"] else []
        code, err = tool(SALI, *sali_opts, *extra, flags=flags)
        assert code == 1, (flags, err)
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert "FrameBaseline" in err and "SALI" in err, err
        assert "another OUTPUT_DIR" in err and "--overwrite" in err and "previous_runs" in err
        if flags == ["--resume"]:  # and how to continue the run that is there
            assert f"--config-file {out}/config.yaml --resume" in err
        assert _snapshot(out) == before, flags  # nothing written, not even the lock
    assert open(f"{out}/config.yaml").read() == config_text
    # a folder holding only another method's config.yaml (e.g. of an --eval-only run)
    other = tmp_path / "sali_eval"
    other.mkdir()
    sali_text = config_text.replace("META_ARCHITECTURE: FrameBaseline", "META_ARCHITECTURE: SALI")
    assert sali_text != config_text
    (other / "config.yaml").write_text(sali_text)
    opts[-1] = str(other)
    code, err = tool(CONFIG, *opts)
    assert code == 1 and "holds a run of another method: SALI" in err and "FrameBaseline" in err
    assert (other / "config.yaml").read_text() == sali_text
    # the way out: --overwrite moves the other method's files aside first, nothing is lost
    assert tool(CONFIG, *opts, flags=["--overwrite"])[0] == 0
    kept = glob.glob(f"{other}/previous_runs/*/config.yaml")
    assert len(kept) == 1 and open(kept[0]).read() == sali_text
    assert "META_ARCHITECTURE: FrameBaseline" in (other / "config.yaml").read_text()


def test_resume_with_another_model_config_is_refused_and_config_yaml_kept(tool, tmp_path):
    """Item 1: an incompatible config of the same method, and config.yaml replaced without
    a copy when the config of a resumed run changed."""
    out = str(tmp_path / "run")
    opts = [*FAST, "SOLVER.MAX_ITER", "1", *NO_TEST, "OUTPUT_DIR", out]
    assert tool(CONFIG, *opts)[0] == 0
    first = open(f"{out}/config.yaml").read()
    before = _snapshot(out)
    code, err = tool(
        CONFIG, *opts, "MODEL.FRAME_BASELINE.DECODER_CHANNELS", "16", flags=["--resume"]
    )
    assert code == 1 and "MODEL.FRAME_BASELINE.DECODER_CHANNELS (run: 8, now: 16)" in err
    assert f"--config-file {out}/config.yaml" in err
    assert _snapshot(out) == before
    # a change outside MODEL (a longer schedule) resumes, and the old config.yaml is kept
    assert (
        tool(CONFIG, *opts[:-2], "SOLVER.MAX_ITER", "2", "OUTPUT_DIR", out, flags=["--resume"])[0]
        == 0
    )
    kept = glob.glob(f"{out}/previous_configs/config.*.yaml")
    assert len(kept) == 1 and open(kept[0]).read() == first
    assert "MAX_ITER: 2" in open(f"{out}/config.yaml").read()
    assert f"previous config.yaml was kept as {kept[0]}" in open(f"{out}/log.txt").read()
    # --overwrite moves the kept configs with the run
    assert tool(CONFIG, *opts, flags=["--overwrite"])[0] == 0
    assert glob.glob(f"{out}/previous_runs/*/previous_configs/config.*.yaml")


def test_any_oserror_preparing_output_dir_is_one_line(tool, tmp_path, monkeypatch):
    """Item 2: OUTPUT_DIR on a read-only mount gave a traceback ending in "OSError: [Errno 30]
    Read-only file system" (only PermissionError, NotADirectoryError, FileExistsError were
    caught). Tests run as root, which chmod cannot stop, so the read-only file system is
    injected: os.makedirs raises what the kernel raises there (EROFS)."""
    target = str(tmp_path / "ro" / "out")
    real = os.makedirs

    def makedirs(path, *a, **k):
        if os.path.abspath(path).startswith(str(tmp_path / "ro")):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
        return real(path, *a, **k)

    monkeypatch.setattr(os, "makedirs", makedirs)
    code, err = tool(CONFIG, *FAST, "SOLVER.MAX_ITER", "1", *NO_TEST, "OUTPUT_DIR", target)
    assert code == 1 and "Traceback" not in err
    assert err.strip() == (
        f"Error: PreflightError: OUTPUT_DIR {target} cannot be created: {target}: "
        "Read-only file system"
    )
    # an OSError of another kind later on (here: writing config.yaml): one line too
    import vps_d2.engine.run_guard as run_guard

    def refuse(path, data):
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT), path)

    monkeypatch.setattr(run_guard, "atomic_write_bytes", refuse)
    out = str(tmp_path / "quota")
    code, err = tool(CONFIG, *FAST, "SOLVER.MAX_ITER", "1", *NO_TEST, "OUTPUT_DIR", out)
    assert code == 1
    # (handlers of earlier in-process runs may print "--- Logging error ---" tracebacks
    # about pytest's closed streams: not the tool's output)
    assert err.count("Traceback") == err.count("--- Logging error ---")
    assert err.strip().splitlines()[-1] == f"Error: {out}/config.yaml: {os.strerror(errno.EDQUOT)}"


def _popen(root, out, *opts, flags=()):
    cmd = [sys.executable, TRAIN_NET, "--config-file", CONFIG, *flags, *FAST, *opts]
    return start_tool([*cmd, "OUTPUT_DIR", out], root, start_new_session=True)


def _wait_for_text(path, text, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.isfile(path) and text in open(path, encoding="utf-8").read():
            return
        time.sleep(0.2)
    raise AssertionError(f"{text!r} did not appear in {path} in {timeout} s")


def _state(path):
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    return ckpt["model"], ckpt["optimizer"], ckpt["scheduler"], ckpt["iteration"]


def _assert_equal(a, b, where=""):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_equal(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


# A learning rate that does not depend on SOLVER.MAX_ITER, so a run interrupted at an
# unknown iteration k can be compared with an uninterrupted run of k + 3 iterations.
CONSTANT_LR = ["SOLVER.LR_SCHEDULER_NAME", "WarmupConstantLR", "SOLVER.WARMUP_ITERS", "0"]


@pytest.mark.slow
def test_sigterm_saves_and_resume_is_bit_identical(tiny_sample_root, tool, tmp_path):
    """Item 4: SIGTERM during training: rc -15, no message, the work since the last periodic
    checkpoint lost."""
    out = str(tmp_path / "preempted")
    opts = [*CONSTANT_LR, *NO_TEST, "SOLVER.CHECKPOINT_PERIOD", "100000"]
    p = _popen(tiny_sample_root, out, *opts, "SOLVER.MAX_ITER", "100000")
    try:
        _wait_for_text(f"{out}/log.txt", "Starting training")
        time.sleep(1.0)
        p.send_signal(signal.SIGTERM)  # the main process only, as Kubernetes / SLURM B: do
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert p.returncode == 75, err[-2000:]
    assert "Traceback" not in err
    lines = [x for x in err.splitlines() if x.startswith("Stopped by")]
    saved = glob.glob(f"{out}/model_*.pth")
    assert len(saved) == 1 and len(lines) == 1
    k = torch.load(saved[0], weights_only=False)["iteration"]
    assert lines[0] == (
        f"Stopped by SIGTERM at iteration {k}: saved {saved[0]}; run the same command with "
        "--resume to continue (exit status 75)"
    )
    assert open(f"{out}/last_checkpoint").read() == os.path.basename(saved[0])
    assert not [f for f in os.listdir(out) if f.endswith(".tmp")]
    # --resume to k + 3 == an uninterrupted run of k + 3 iterations: weights, optimizer and
    # scheduler states bit for bit
    n = str(k + 3)
    code, err = tool(
        CONFIG, *FAST, *opts, "SOLVER.MAX_ITER", n, "OUTPUT_DIR", out, flags=["--resume"]
    )
    assert code == 0, err
    assert f"at iteration {k + 1}" in open(f"{out}/log.txt").read()
    full = str(tmp_path / "full")
    assert tool(CONFIG, *FAST, *opts, "SOLVER.MAX_ITER", n, "OUTPUT_DIR", full)[0] == 0
    a, b = _state(f"{full}/model_final.pth"), _state(f"{out}/model_final.pth")
    _assert_equal(a, b, "model_final")
    # and training moved the weights after the interruption
    c = _state(saved[0])[0]
    assert any(not torch.equal(a[0][x], c[x]) for x in c if c[x].is_floating_point())


@pytest.mark.slow
def test_sigterm_to_one_ddp_process_stops_all_at_the_same_iteration(tiny_sample_root, tmp_path):
    """Item 4, DDP: the processes agree (an all-reduce of the signal), so a signal seen by
    one rank only stops both at one iteration with one checkpoint instead of hanging."""
    out = str(tmp_path / "ddp")
    opts = [*CONSTANT_LR, *NO_TEST, "SOLVER.CHECKPOINT_PERIOD", "100000", "SOLVER.MAX_ITER"]
    p = _popen(tiny_sample_root, out, *opts, "100000", flags=["--num-gpus", "2"])
    try:
        _wait_for_text(f"{out}/log.txt", "Starting training")
        time.sleep(1.0)
        children = open(f"/proc/{p.pid}/task/{p.pid}/children").read().split()
        ranks = [
            int(c)
            for c in children
            if "spawn_main" in open(f"/proc/{c}/cmdline").read().replace("\0", " ")
        ]
        assert len(ranks) == 2, children
        os.kill(max(ranks), signal.SIGUSR1)  # one rank only
        _, err = p.communicate(timeout=180)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert p.returncode == 75, err[-3000:]
    saved = glob.glob(f"{out}/model_*.pth")
    assert len(saved) == 1
    k = torch.load(saved[0], weights_only=False)["iteration"]
    assert f"Stopped by SIGUSR1 at iteration {k}: saved {saved[0]}" in err
    assert f"Stopped by SIGUSR1 at iteration {k}" in open(f"{out}/log.txt").read()


# ------------------------------------------------------------------ partial MODEL.WEIGHTS
def _save_model_of(config, path, opts=(), meta=True):
    """A checkpoint of ``config``'s model (random init) as the trainer saves one."""
    from vps_d2.checkpoint import VPSCheckpointer
    from vps_d2.config import add_vps_config, get_cfg
    from vps_d2.modeling import build_model

    cfg = add_vps_config(get_cfg())
    cfg.merge_from_file(config)
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", *opts])
    model = build_model(cfg)
    metadata = {"meta_architecture": cfg.MODEL.META_ARCHITECTURE} if meta else None
    VPSCheckpointer(model, os.path.dirname(path), metadata=metadata).save(
        os.path.splitext(os.path.basename(path))[0], tag_last=False
    )
    return model


def test_partial_load_of_model_weights_is_loud(tool, tmp_path):
    """Item 5: training from another method's checkpoint ran with rc 0 and only fvcore's
    "not found / not used" lines, even when almost nothing was loaded."""
    sali = str(tmp_path / "sali.pth")
    _save_model_of(SALI, sali)
    run = [*FAST, "SOLVER.MAX_ITER", "1", *NO_TEST]
    code, err = tool(CONFIG, *run, "MODEL.WEIGHTS", sali, "OUTPUT_DIR", str(tmp_path / "a"))
    assert code == 1 and "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert f"MODEL.WEIGHTS {sali}: " in line and "of the model's parameters loaded" in line
    assert "below MODEL.WEIGHTS_MIN_LOADED (50%)" in line
    assert "the checkpoint is of SALI, the model FrameBaseline" in line
    assert "MODEL.WEIGHTS_MIN_LOADED 0.0 when a partial load is intended" in line
    assert not glob.glob(str(tmp_path / "a" / "model_*.pth"))  # nothing was trained
    # a file that does not record its method: its top-level modules are named instead
    bare = str(tmp_path / "bare.pth")
    torch.save(torch.load(sali, weights_only=False)["model"], bare)
    code, err = tool(CONFIG, *run, "MODEL.WEIGHTS", bare, "OUTPUT_DIR", str(tmp_path / "b"))
    assert code == 1 and "does not record its method; its top-level modules are" in err
    # a partial load on purpose
    out = tmp_path / "c"
    code, _ = tool(
        CONFIG,
        *run,
        "MODEL.WEIGHTS",
        sali,
        "MODEL.WEIGHTS_MIN_LOADED",
        "0.0",
        "OUTPUT_DIR",
        str(out),
    )
    assert code == 0
    log = (out / "log.txt").read_text()
    assert f"MODEL.WEIGHTS {sali}: " in log and "of the model's parameters loaded" in log
    # the same method and config: everything loaded (a trained run's model_final.pth)
    own = tmp_path / "c" / "model_final.pth"
    assert torch.load(own, weights_only=False)["meta_architecture"] == "FrameBaseline"
    out = tmp_path / "d"
    assert tool(CONFIG, *run, "MODEL.WEIGHTS", str(own), "OUTPUT_DIR", str(out))[0] == 0
    assert "100.0% of the model's parameters loaded" in (out / "log.txt").read_text()


def test_load_report_counts_parameter_values(tmp_path):
    """The fraction is over parameter values (numel), wrong shapes count as not loaded."""
    from vps_d2.checkpoint import VPSCheckpointer

    src = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))  # 15 + 8 values
    VPSCheckpointer(src, str(tmp_path)).save("src", tag_last=False)
    dst = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 5))  # 15 + 20 values
    report = VPSCheckpointer(dst).load_weights(str(tmp_path / "src.pth"), min_loaded=0.4)
    assert (report.loaded, report.total, report.tensors_loaded, report.tensors) == (15, 35, 2, 4)
    assert torch.equal(dst[0].weight, src[0].weight)
    from vps_d2.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match=r"42.9% of the model's parameters loaded"):
        VPSCheckpointer(dst).load_weights(str(tmp_path / "src.pth"), min_loaded=0.5)


# ------------------------------------------------------------------ unread method keys
def _setup(config, *opts, path=None):
    import argparse

    from vps_d2.engine import setup_cfg
    from vps_d2.modeling.meta_arch import build as build_mod

    build_mod._WARNED.clear()
    return setup_cfg(argparse.Namespace(config_file=config, opts=list(opts), plugin=[]))


def _unread_warnings(caplog):
    return [r.getMessage() for r in caplog.records if "does not read" in r.getMessage()]


def test_keys_of_another_methods_section_are_warned(tmp_path, caplog):
    """Item 7: the baseline config with MODEL.SALI.CHANNELS 32 (its default value, even)
    was accepted silently."""
    caplog.set_level("WARNING")
    _setup(CONFIG, "MODEL.SALI.CHANNELS", "32")
    (msg,) = _unread_warnings(caplog)
    assert msg == (
        "Config keys that FrameBaseline does not read (it reads MODEL.FRAME_BASELINE), "
        "without effect: MODEL.SALI.CHANNELS (set on the command line)"
    )
    caplog.clear()
    # in a config file, with a hint when the model's own section has the key
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"_BASE_: {CONFIG}\nMODEL:\n  PGN_AEN:\n    IN_FEATURES: ['res3']\n")
    _setup(str(bad))
    (msg,) = _unread_warnings(caplog)
    assert f"MODEL.PGN_AEN.IN_FEATURES (set in {bad}; did you mean " in msg
    assert "MODEL.FRAME_BASELINE.IN_FEATURES?" in msg
    caplog.clear()
    # no warning: the model's own keys, or a full dump (OUTPUT_DIR/config.yaml) whose other
    # sections hold their defaults
    cfg = _setup(CONFIG, "MODEL.FRAME_BASELINE.DECODER_CHANNELS", "16")
    dump = tmp_path / "config.yaml"
    dump.write_text(cfg.dump())
    _setup(str(dump))
    _setup(SALI, "MODEL.SALI.CHANNELS", "16")
    assert _unread_warnings(caplog) == []
    # a dump whose SALI section was edited: warned
    dump.write_text(cfg.dump().replace("CHANNELS: 32", "CHANNELS: 48", 1))
    _setup(str(dump))
    assert len(_unread_warnings(caplog)) == 1


def test_arsdm_declares_its_section(caplog):
    """ArSDM (added after item 7) names MODEL.ARSDM: the check covers it both ways."""
    caplog.set_level("WARNING")
    _setup(get_config_file("arsdm_sample.yaml"), "MODEL.SALI.CHANNELS", "32")
    (msg,) = _unread_warnings(caplog)
    assert msg.startswith("Config keys that ArSDM does not read (it reads MODEL.ARSDM)")
    caplog.clear()
    _setup(CONFIG, "MODEL.ARSDM.UNET.MODEL_CHANNELS", "8")
    (msg,) = _unread_warnings(caplog)
    assert "MODEL.ARSDM.UNET.MODEL_CHANNELS (set on the command line)" in msg
