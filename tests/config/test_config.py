"""Config: defaults, _BASE_ chains, strict errors naming the key and the file."""

import os

import pytest
from train_net_runner import ROOT

from vps_d2.config import CfgNode, ConfigError, add_vps_config, configurable, get_cfg


def _cfg():
    cfg = get_cfg()
    add_vps_config(cfg)
    return cfg


def test_detectron2_keys_present():
    cfg = get_cfg()
    for key in [
        "MODEL.META_ARCHITECTURE",
        "MODEL.WEIGHTS",
        "MODEL.DEVICE",
        "MODEL.PIXEL_MEAN",
        "MODEL.PIXEL_STD",
        "SOLVER.OPTIMIZER",
        "SOLVER.LR_SCHEDULER_NAME",
        "SOLVER.POLY_LR_POWER",
        "SOLVER.POLY_LR_CONSTANT_ENDING",
        "SOLVER.WARMUP_ITERS",
        "SOLVER.WARMUP_FACTOR",
        "SOLVER.WARMUP_METHOD",
        "SOLVER.BACKBONE_MULTIPLIER",
        "SOLVER.WEIGHT_DECAY_NORM",
        "SOLVER.CLIP_GRADIENTS.CLIP_TYPE",
        "SOLVER.AMP.ENABLED",
        "SOLVER.CHECKPOINT_PERIOD",
        "SOLVER.IMS_PER_BATCH",
        "SOLVER.MAX_ITER",
        "TEST.EVAL_PERIOD",
        "OUTPUT_DIR",
        "SEED",
        "VERSION",
        "DATASETS.TRAIN",
        "DATASETS.TEST",
        "DATALOADER.NUM_WORKERS",
    ]:
        node = cfg
        for part in key.split("."):
            assert part in node, key
            node = node[part]
    assert "CLIP" not in cfg.INPUT  # only after add_vps_config
    add_vps_config(cfg)
    # INPUT.CLIP.LENGTH / SAMPLING unset: the model's clip contract fills them in
    assert (cfg.INPUT.CLIP.LENGTH, cfg.INPUT.CLIP.SAMPLING) == (0, "")
    assert "VPS" in cfg.TEST and "FRAME_BASELINE" in cfg.MODEL
    add_vps_config(cfg)  # idempotent


def test_base_chain_and_override(tmp_path):
    (tmp_path / "base.yaml").write_text("SOLVER:\n  BASE_LR: 0.5\n  MAX_ITER: 7\n")
    (tmp_path / "child.yaml").write_text("_BASE_: base.yaml\nSOLVER:\n  MAX_ITER: 9\n")
    cfg = _cfg()
    cfg.merge_from_file(str(tmp_path / "child.yaml"))
    assert cfg.SOLVER.BASE_LR == 0.5 and cfg.SOLVER.MAX_ITER == 9


def test_unknown_key_names_key_and_file(tmp_path):
    (tmp_path / "base.yaml").write_text("SOLVER:\n  BASE_LRR: 0.5\n")
    (tmp_path / "child.yaml").write_text("_BASE_: base.yaml\nSOLVER:\n  MAX_ITER: 9\n")
    cfg = _cfg()
    with pytest.raises(ConfigError) as e:
        cfg.merge_from_file(str(tmp_path / "child.yaml"))
    assert "SOLVER.BASE_LRR" in str(e.value) and "base.yaml" in str(e.value)


def test_wrong_type_names_file(tmp_path):
    (tmp_path / "c.yaml").write_text("SOLVER:\n  MAX_ITER: 'many'\n")
    with pytest.raises(ConfigError) as e:
        _cfg().merge_from_file(str(tmp_path / "c.yaml"))
    assert "c.yaml" in str(e.value) and "MAX_ITER" in str(e.value)


def test_missing_base_and_bad_yaml(tmp_path):
    (tmp_path / "c.yaml").write_text("_BASE_: nope.yaml\n")
    with pytest.raises(ConfigError, match="nope.yaml"):
        _cfg().merge_from_file(str(tmp_path / "c.yaml"))
    (tmp_path / "bad.yaml").write_text("SOLVER: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        _cfg().merge_from_file(str(tmp_path / "bad.yaml"))
    with pytest.raises(ConfigError, match="not found"):
        _cfg().merge_from_file(str(tmp_path / "absent.yaml"))


def test_opts_unknown_key_and_odd_length():
    cfg = _cfg()
    cfg.merge_from_list(["SOLVER.MAX_ITER", "5"])
    assert cfg.SOLVER.MAX_ITER == 5
    with pytest.raises(ConfigError) as e:
        cfg.merge_from_list(["SOLVER.NOPE", "1"])
    assert "SOLVER.NOPE" in str(e.value) and "command-line" in str(e.value)
    with pytest.raises(ConfigError, match="pairs"):
        cfg.merge_from_list(["SOLVER.MAX_ITER"])


@pytest.mark.parametrize(
    "path",
    sorted(
        os.path.join(dp, f)
        for top in ("configs", "vps_d2")
        for dp, _, fs in os.walk(os.path.join(ROOT, top))
        for f in fs
        if f.endswith(".yaml") and os.path.basename(dp) in ("configs", "sample", "config")
    ),
)
def test_every_shipped_config_loads(path):
    cfg = _cfg()
    cfg.merge_from_file(path)
    assert cfg.MODEL.META_ARCHITECTURE


def test_configurable_both_ways():
    class Thing:
        @configurable
        def __init__(self, *, a: int, b: int = 2):
            self.a, self.b = a, b

        @classmethod
        def from_config(cls, cfg):
            return {"a": cfg.SOLVER.MAX_ITER, "b": 3}

    cfg = _cfg()
    cfg.SOLVER.MAX_ITER = 11
    t = Thing(cfg)
    assert (t.a, t.b) == (11, 3)
    t = Thing(a=1)
    assert (t.a, t.b) == (1, 2)
    assert isinstance(cfg, CfgNode)
