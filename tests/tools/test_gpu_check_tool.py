"""tools/gpu_check.py: a clean one-line skip without a GPU (what CI sees), the whole
sequence of checks and speed rows on the CPU at tiny sizes (how its code paths are tested
without a GPU), and the real run on a CUDA machine (``pytest -m cuda``)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch
from train_net_runner import ROOT

GPU_CHECK = os.path.join(ROOT, "tools", "gpu_check.py")


def _env(**extra) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    return env


def _load_tool():
    return importlib.import_module("vps_d2.cli.gpu_check")


def test_no_gpu_is_a_clean_one_line_skip():
    p = subprocess.run(
        [sys.executable, GPU_CHECK],
        env=_env(CUDA_VISIBLE_DEVICES=""),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert len(lines) == 1, p.stdout
    assert lines[0].startswith("gpu_check: skipped: no CUDA GPU visible (torch ")
    assert "--device cpu --smoke" in lines[0]
    assert "Traceback" not in p.stderr


def test_unknown_method_is_one_line(capsys):
    assert _load_tool().cli(["--device", "cpu", "--methods", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error: --methods ['nope']: no sample config matches (known: ")
    assert "diff_vps" in err and "\n" not in err


@pytest.mark.slow
def test_cpu_smoke_runs_the_whole_sequence(tmp_path, capsys):
    """Diff-VPS (two optimizers, DDIM streaming, the richest outputs) through every check and
    every speed measure on the CPU: each row is filled, or skipped with the reason."""
    out = tmp_path / "gc"
    argv = ["--device", "cpu", "--smoke", "--methods", "diff_vps", "--out", str(out)]
    code = _load_tool().cli([*argv, "--budget-s", "3600"])
    printed = capsys.readouterr().out
    data = json.loads((out / "gpu_check.json").read_text())
    rows = {(r["section"], r["name"]): r for r in data["rows"]}
    assert code == 0, [r for r in data["rows"] if r["status"] == "failed"]
    assert data["meta"]["device"] == "cpu" and data["meta"]["configs"] == ["diff_vps_sample.yaml"]
    for name in ("train fp32", "train bf16"):
        groups = rows[("check", name)]["values"]["groups"]
        assert set(groups) == {"main", "discriminator"}  # both optimizers stepped
        assert all(changed > 0 and finite for changed, _, finite in groups.values())
    assert rows[("check", "train fp16")]["status"] == "skipped"
    assert "iteration 3 -> 5" in rows[("check", "resume")]["note"]
    assert rows[("check", "eval-only")]["status"] == "ok"
    stream = rows[("check", "stream vs CPU")]
    assert stream["status"] == "ok" and set(stream["values"]) >= {"prob", "class_scores", "box"}
    assert rows[("check", "ddp 2 GPUs")]["note"] == "NCCL DDP needs CUDA"
    speed = [r for r in data["rows"] if r["section"] == "speed"]
    assert len(speed) == 6
    for r in speed:
        assert r["status"] == "ok", r  # ONNX Runtime too: exported, CPU provider
        v = r["values"]
        assert v.get("fps", v.get("it_s", 0)) > 0
    onnx = rows[("speed", "inference ONNX Runtime")]
    assert onnx["note"].startswith("CPUExecutionProvider") and onnx["values"]["export_s"] > 0
    compiled = rows[("speed", "inference torch.compile (backbone) + channels_last + AMP fp16")]
    assert "backend eager" in compiled["note"]
    assert "| setting | measure | result | peak MiB | paper | note |" in printed
    assert "| config | check | status | s | note |" in printed


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_full_gpu_check_on_cuda(tmp_path):
    """The real thing (``pytest -m cuda``): no check fails and every row is filled or says
    why not, within the default budget."""
    p = subprocess.run(
        [sys.executable, GPU_CHECK, "--out", str(tmp_path)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    data = json.loads((tmp_path / "gpu_check.json").read_text())
    failed = [r for r in data["rows"] if r["status"] == "failed"]
    assert p.returncode == 0 and not failed, (failed, p.stderr[-3000:])
    assert all(r["status"] == "ok" or r["note"] for r in data["rows"])
    assert data["meta"]["elapsed_s"] < 480


@pytest.mark.slow
def test_cpu_smoke_of_a_generator(tmp_path, capsys):
    """ArSDM (task "generation", picked up by every full run): its training paths are
    checked, its streamed frames get masks (CPU vs device within one 8-bit level), its
    inference rows measure generation, and what does not apply is skipped with the reason."""
    out = tmp_path / "gc"
    argv = ["--device", "cpu", "--smoke", "--methods", "arsdm", "--out", str(out)]
    code = _load_tool().cli([*argv, "--budget-s", "3600"])
    capsys.readouterr()
    data = json.loads((out / "gpu_check.json").read_text())
    rows = {(r["section"], r["name"]): r for r in data["rows"]}
    assert code == 0, [r for r in data["rows"] if r["status"] == "failed"]
    for name in ("train fp32", "train bf16", "resume", "stream vs CPU"):
        assert rows[("check", name)]["status"] == "ok", rows[("check", name)]
    assert "a generator" in rows[("check", "eval-only")]["note"]
    assert rows[("speed", "inference eager fp32")]["values"]["fps"] > 0
    onnx = rows[("speed", "inference ONNX Runtime")]
    assert onnx["status"] == "skipped" and "no exportable streaming step" in onnx["note"]
