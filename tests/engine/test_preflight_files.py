"""The preflight checks every file a run will open before any process starts (issue 23,
item 1): MODEL.WEIGHTS, the backbone's weights, any other ``*WEIGHTS`` key (Diff-VPS's
discriminator, ArSDM's frozen segmenter), and the datasets, all reported together, one
line each naming the key, the path and what to do; --eval-only too."""

from __future__ import annotations

import argparse
import os
import re

import pytest
from train_net_runner import run_train_net

from vps_d2.engine.defaults import PreflightError, missing_files, preflight, setup_cfg
from vps_d2.model_zoo import get_config_file

CONFIG = get_config_file("frame_baseline_sample.yaml")


def _args(*opts, eval_only=False, resume=False, config=CONFIG) -> argparse.Namespace:
    return argparse.Namespace(
        config_file=config,
        opts=list(opts),
        eval_only=eval_only,
        resume=resume,
        overwrite=False,
        plugin=[],
        num_gpus=1,
        num_machines=1,
        machine_rank=0,
        dist_url="auto",
    )


def _preflight(args, root):
    os.environ["VPS_DATASETS"] = root
    cfg = setup_cfg(args)
    return preflight(cfg, args, 1)


def test_missing_backbone_weights_is_caught_before_start(tiny_sample_root, tmp_path, monkeypatch):
    monkeypatch.setenv("VPS_DATASETS", tiny_sample_root)
    args = _args("MODEL.BACKBONE.WEIGHTS", "pretrained/nope.pth", "OUTPUT_DIR", str(tmp_path / "o"))
    with pytest.raises(PreflightError) as e:
        _preflight(args, tiny_sample_root)
    msg = str(e.value)
    assert "\n" not in msg  # the only problem: one line
    assert msg.startswith("MODEL.BACKBONE.WEIGHTS file not found: 'pretrained/nope.pth'")
    assert f"relative to {os.getcwd()}" in msg and 'MODEL.BACKBONE.WEIGHTS ""' in msg
    assert not os.path.exists(tmp_path / "o" / "last_checkpoint")


def test_eval_only_reports_weights_and_datasets_together(tmp_path, monkeypatch):
    """--eval-only with no data and missing weights: every problem, not only the first."""
    root = tmp_path / "empty"
    root.mkdir()
    monkeypatch.setenv("VPS_DATASETS", str(root))
    args = _args(
        "MODEL.WEIGHTS",
        str(tmp_path / "model_final.pth"),
        "MODEL.BACKBONE.WEIGHTS",
        str(tmp_path / "hrnet_w48.pth"),
        "OUTPUT_DIR",
        str(tmp_path / "o"),
        eval_only=True,
    )
    with pytest.raises(PreflightError) as e:
        _preflight(args, str(root))
    lines = str(e.value).splitlines()
    assert lines[0].endswith("problems:"), lines
    assert lines[1].strip().startswith("MODEL.WEIGHTS file not found: ")
    assert "model_final.pth" in lines[1] and "checkpoint to evaluate" in lines[1]
    assert lines[2].strip().startswith("MODEL.BACKBONE.WEIGHTS file not found: ")
    assert "hrnet_w48.pth" in lines[2] and "absolute path" in lines[2]
    assert any(x.strip().startswith("DATASETS: ") for x in lines[3:]), lines


def test_missing_files_of_other_weight_keys(tmp_path):
    """Diff-VPS's discriminator, ArSDM's segmenter (only with its config), MODEL.WEIGHTS
    (not read when resuming from last_checkpoint), PRETRAINED without a file."""
    from vps_d2.config import add_vps_config, get_cfg

    cfg = add_vps_config(get_cfg())
    assert missing_files(cfg) == []
    cfg.MODEL.DIFF_VPS.DISCRIMINATOR.WEIGHTS = "pretrained/inception_v3.pth"
    cfg.MODEL.ARSDM.REFINE.SEGMENTER_WEIGHTS = "seg.pth"  # no SEGMENTER_CONFIG: unused
    (got,) = missing_files(cfg)
    assert got.startswith("MODEL.DIFF_VPS.DISCRIMINATOR.WEIGHTS file not found: ")
    cfg.MODEL.ARSDM.REFINE.SEGMENTER_CONFIG = "frame_baseline_sample.yaml"
    keys = sorted(x.split(" ")[0] for x in missing_files(cfg))
    assert keys == ["MODEL.ARSDM.REFINE.SEGMENTER_WEIGHTS", "MODEL.DIFF_VPS.DISCRIMINATOR.WEIGHTS"]
    cfg.MODEL.DIFF_VPS.DISCRIMINATOR.WEIGHTS = ""
    cfg.MODEL.ARSDM.REFINE.SEGMENTER_CONFIG = ""
    cfg.MODEL.WEIGHTS = str(tmp_path / "m.pth")
    assert [x.split(" ")[0] for x in missing_files(cfg)] == ["MODEL.WEIGHTS"]
    assert missing_files(cfg, resuming=True) == []
    (tmp_path / "m.pth").write_bytes(b"")
    assert missing_files(cfg, eval_only=True) == []
    cfg.MODEL.BACKBONE.PRETRAINED = True
    (got,) = missing_files(cfg)
    assert got.startswith("MODEL.BACKBONE.PRETRAINED is True but MODEL.BACKBONE.WEIGHTS is empty")


@pytest.mark.slow
def test_train_net_stops_before_starting_processes(tiny_sample_root, tmp_path):
    """Through tools/train_net.py with 2 processes: one line, no process started."""
    p = run_train_net(
        tiny_sample_root,
        CONFIG,
        "MODEL.BACKBONE.WEIGHTS",
        "pretrained/hrnet_w48.pth",
        "OUTPUT_DIR",
        str(tmp_path / "o"),
        flags=["--num-gpus", "2"],
        check=False,
    )
    assert p.returncode == 1
    # a third-party library's import-time warning (timm 1.0.3 under torch 2.14) is not ours
    warning = re.compile(r"\w+Warning: |^\s+warnings\.warn\(")
    err = [x for x in p.stderr.splitlines() if x.strip() and not warning.search(x)]
    assert len(err) == 1, p.stderr[-3000:]
    assert err[0].startswith("Error: PreflightError: MODEL.BACKBONE.WEIGHTS file not"), err
    assert "Traceback" not in p.stderr and "gloo" not in p.stderr + p.stdout
