"""Model selection never on a test split unless the config says so (issue 23, item 4): a
training run holds out DATASETS.HOLDOUT_VAL of the training videos as ``holdout_val`` and
chooses model_best.pth on it; a test split named in TEST.VPS.BEST_DATASET is used with a
loud warning; without a validation split no model_best.pth is kept."""

from __future__ import annotations

import argparse
import importlib
import json
import logging

import pytest
from test_engine import CONFIG, FAST

from vps_d2.data import DatasetCatalog, get_video_records
from vps_d2.data.datasets import configure_datasets, exclude_holdout
from vps_d2.data.datasets.sun_seg import video_of_case
from vps_d2.engine.defaults import setup_cfg
from vps_d2.engine.trainer import best_checkpoint_target


def _cfg(*opts, eval_only=False):
    args = argparse.Namespace(config_file=CONFIG, opts=list(opts), eval_only=eval_only, plugin=[])
    return setup_cfg(args)


def test_training_selects_on_a_split_held_out_of_the_training_videos(caplog):
    cfg = _cfg()
    assert cfg.DATASETS.TEST[0] == "holdout_val"
    assert cfg.DATASETS.TEST[1:] == (
        "vps_sample_easy_seen",
        "vps_sample_easy_unseen",
        "vps_sample_hard_seen",
        "vps_sample_hard_unseen",
    )
    with caplog.at_level(logging.WARNING):
        assert best_checkpoint_target(cfg) == ("holdout_val", "maxDice")
    assert "TEST SPLIT" not in caplog.text
    # --eval-only scores the test splits only; an explicit validation split is kept as is
    assert "holdout_val" not in _cfg(eval_only=True).DATASETS.TEST
    cvc = _cfg("DATASETS.TRAIN", "('cvc612_train',)", "DATASETS.TEST", "('cvc612_val',)")
    assert cvc.DATASETS.TEST == ("cvc612_val",) and best_checkpoint_target(cvc)[0] == "cvc612_val"


def test_a_test_split_only_when_named_and_with_a_warning(caplog):
    cfg = _cfg("TEST.VPS.BEST_DATASET", "vps_sample_easy_seen")
    assert "holdout_val" not in cfg.DATASETS.TEST  # the config chose: nothing held out
    with caplog.at_level(logging.WARNING):
        assert best_checkpoint_target(cfg) == ("vps_sample_easy_seen", "maxDice")
    (record,) = [r for r in caplog.records if "TEST SPLIT" in r.getMessage()]
    assert record.levelno == logging.WARNING and "'vps_sample_easy_seen'" in record.getMessage()
    caplog.clear()
    cfg = _cfg("DATASETS.HOLDOUT_VAL", "0.0")
    assert "holdout_val" not in cfg.DATASETS.TEST
    with caplog.at_level(logging.WARNING):
        assert best_checkpoint_target(cfg) is None  # no model selection at all
    assert "model_best.pth is not kept" in caplog.text


def test_holdout_is_whole_videos_disjoint_and_deterministic(tiny_sample_root, monkeypatch):
    monkeypatch.setenv("VPS_DATASETS", tiny_sample_root)
    cfg = _cfg()
    configure_datasets(cfg)
    train = get_video_records("vps_sample_train")
    held = [r["video_id"] for r in DatasetCatalog.get("holdout_val")]
    kept = [r["video_id"] for r in exclude_holdout(train)]
    assert held and kept and sorted(held + kept) == sorted(r["video_id"] for r in train)
    assert not {video_of_case(c) for c in held} & {video_of_case(c) for c in kept}
    assert [r["video_id"] for r in DatasetCatalog.get("holdout_val")] == held
    other = _cfg("DATASETS.HOLDOUT_SEED", "1", "DATASETS.HOLDOUT_VAL", "0.5")
    configure_datasets(other)
    assert len(exclude_holdout(train)) <= len(train) - 1
    configure_datasets(_cfg("DATASETS.HOLDOUT_VAL", "0.0"))
    assert exclude_holdout(train) == train  # no hold-out: everything is trained on
    with pytest.raises(ValueError, match="DATASETS.HOLDOUT_VAL"):
        configure_datasets(_cfg("DATASETS.HOLDOUT_VAL", "1.0"))


def test_model_best_is_chosen_on_the_holdout(tiny_sample_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VPS_DATASETS", tiny_sample_root)
    tool = importlib.import_module("vps_d2.cli.train_net")
    out = tmp_path / "o"
    opts = [*FAST, "SOLVER.MAX_ITER", "2", "OUTPUT_DIR", str(out)]
    assert tool.cli(["--config-file", CONFIG, *opts]) == 0, capsys.readouterr().err
    best = json.load(open(out / "model_best.json"))
    assert best["dataset"] == "holdout_val" and best["metric"] == "maxDice"
    assert "holdout_val" in json.load(open(out / "results.json"))
