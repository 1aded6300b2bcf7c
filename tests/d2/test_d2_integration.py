"""vps_d2 inside a real Detectron2: its config, DefaultTrainer, checkpointer and
inference_on_dataset train, resume and evaluate every registered method with the numbers of
vps_d2's own engine.

Detectron2 is not on PyPI, so CI has none and these tests are skipped there ("Detectron2
not installed"); build Detectron2 from its repository to run them (docs/detectron2.md, "Using vps_d2
inside Detectron2"). Only the clear error of the missing installation runs in CI.
"""

import glob
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import warnings

import pytest
import torch
from train_net_runner import ROOT, TRAIN_NET, run_train_net, train_net_env

from vps_d2.model_zoo import get_config_file

HAS_D2 = importlib.util.find_spec("detectron2") is not None
needs_d2 = pytest.mark.skipif(not HAS_D2, reason="Detectron2 not installed (not on PyPI)")

SAMPLE_CONFIGS = sorted(
    glob.glob(os.path.join(ROOT, "vps_d2", "methods", "*", "configs", "*_sample.yaml"))
)
ALL_CONFIGS = sorted(
    glob.glob(os.path.join(ROOT, "configs", "**", "*.yaml"), recursive=True)
    + glob.glob(os.path.join(ROOT, "vps_d2", "methods", "*", "configs", "*.yaml"))
)
TINY = [
    "SOLVER.IMS_PER_BATCH",
    "2",
    "DATALOADER.NUM_WORKERS",
    "0",
    "DATALOADER.NUM_WORKERS_TEST",
    "0",
    "SOLVER.MAX_ITER",
    "4",
    "SOLVER.CHECKPOINT_PERIOD",
    "2",
    "SOLVER.WARMUP_ITERS",
    "0",
    "TEST.EVAL_PERIOD",
    "0",
    "SEED",
    "1",
    "MODEL.DEVICE",
    "cpu",
]


@pytest.mark.skipif(HAS_D2, reason="Detectron2 is installed")
def test_clear_error_without_detectron2(tmp_path):
    with pytest.raises(ImportError, match="not on PyPI"):
        import vps_d2.d2  # noqa: F401
    p = subprocess.run(
        [sys.executable, TRAIN_NET, "--engine", "detectron2", "--config-file", SAMPLE_CONFIGS[0]],
        env=train_net_env(str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2 and "not on PyPI" in p.stderr and "Traceback" not in p.stderr


# ------------------------------------------------------------------ with Detectron2
def _d2_cfg(config, *opts):
    from vps_d2.d2 import get_cfg

    cfg = get_cfg()
    cfg.merge_from_file(config)  # Detectron2's own merge_from_file
    cfg.merge_from_list(list(opts))
    return cfg


def _vps_cfg(config, *opts):
    from vps_d2.config import add_vps_config, get_cfg

    cfg = add_vps_config(get_cfg())
    cfg.merge_from_file(config)
    cfg.merge_from_list(list(opts))
    return cfg


@needs_d2
@pytest.mark.parametrize("config", ALL_CONFIGS, ids=lambda p: os.path.relpath(p, ROOT))
def test_every_project_config_merges_into_detectron2_get_cfg(config):
    from detectron2.config import CfgNode as D2CfgNode

    cfg = _d2_cfg(config)
    vps = _vps_cfg(config)

    def same(a, b, prefix=""):
        for k, v in b.items():
            if isinstance(v, dict):
                assert isinstance(a[k], D2CfgNode), f"{prefix}{k} is not Detectron2's CfgNode"
                same(a[k], v, f"{prefix}{k}.")
            else:
                assert a[k] == v or (isinstance(v, tuple) and tuple(a[k]) == v), f"{prefix}{k}"

    same(cfg, vps)  # every vps_d2 key, with vps_d2's value (FREEZE_AT 0, RGB, ...)


@needs_d2
def test_register_all_names_backbones_metadata(tmp_path):
    from detectron2.data import MetadataCatalog as D2Meta
    from detectron2.modeling import BACKBONE_REGISTRY, META_ARCH_REGISTRY, Backbone
    from detectron2.modeling import build_backbone as d2_build_backbone

    from vps_d2.d2 import register_all
    from vps_d2.modeling import META_ARCH_REGISTRY as VPS_META

    cfg = _d2_cfg(SAMPLE_CONFIGS[0], "DATASETS.ROOT", str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "metadata renamed" warning
        register_all(cfg)
        register_all(cfg)  # idempotent
    from vps_d2.d2.modeling import d2_meta_arch

    for name, cls in VPS_META:  # every name, aliases included, with Detectron2 outputs
        assert META_ARCH_REGISTRY.get(name) is d2_meta_arch(cls)
        assert issubclass(d2_meta_arch(cls), cls)
    assert "SmallCNN" in BACKBONE_REGISTRY and "TimmBackbone" in BACKBONE_REGISTRY
    cfg.MODEL.BACKBONE.NAME = "SmallCNN"
    bb = d2_build_backbone(cfg)
    assert isinstance(bb, Backbone)
    out = bb(torch.zeros(1, 3, 64, 64))
    assert {k: v.shape[1] for k, v in out.items()} == {
        k: s.channels for k, s in bb.output_shape().items()
    }
    md = D2Meta.get("vps_sample_train")
    assert md.evaluator_type == "sem_seg" and len(md.thing_classes) == 6
    # DATASETS.ROOT applies (a root without the data: the loader says where it looked)
    from detectron2.data import DatasetCatalog as D2Cat

    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        D2Cat.get("vps_sample_train")


def _stopped_after_iteration_1(full_out, out):
    """``out`` = what a run of ``full_out``'s config holds when killed after iteration 1."""
    os.makedirs(out, exist_ok=True)
    shutil.copy(os.path.join(full_out, "model_0000001.pth"), out)
    with open(os.path.join(out, "last_checkpoint"), "w") as f:
        f.write("model_0000001.pth")


def _final_weights(out):
    return torch.load(os.path.join(out, "model_final.pth"), map_location="cpu", weights_only=False)[
        "model"
    ]


def _assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _train_vps(config, out, *opts):
    from vps_d2.data.datasets import configure_datasets
    from vps_d2.engine import Trainer
    from vps_d2.utils.env import seed_all_rng

    cfg = _vps_cfg(config, *TINY, "OUTPUT_DIR", out, *opts)
    configure_datasets(cfg)
    seed_all_rng(cfg.SEED)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    return trainer


def _train_d2(config, out, *opts, resume=False):
    from vps_d2.d2 import Trainer, register_all
    from vps_d2.utils.env import seed_all_rng

    cfg = _d2_cfg(config, *TINY, "OUTPUT_DIR", out, *opts)
    register_all(cfg)
    seed_all_rng(cfg.SEED)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=resume)
    trainer.train()
    return trainer


@needs_d2
@pytest.mark.parametrize("config", SAMPLE_CONFIGS, ids=lambda p: os.path.basename(p))
def test_defaulttrainer_trains_resumes_and_evaluates_like_vps_d2(
    config, tiny_sample_root, tmp_path, monkeypatch
):
    """Detectron2's DefaultTrainer (vps_d2.d2.Trainer): 4 iterations == vps_d2's engine;
    2 + resume_or_load(resume=True) + 2 == 4 (the data stream continues); Detectron2's
    inference_on_dataset == vps_d2's evaluation (1e-9), every metric of every split."""
    from detectron2.evaluation import inference_on_dataset

    from vps_d2.d2 import Trainer as D2Trainer
    from vps_d2.engine import Trainer as VPSTrainer

    monkeypatch.setenv("VPS_DATASETS", tiny_sample_root)
    vps_out, d2_out, half = (str(tmp_path / n) for n in ("vps", "d2", "half"))
    vps = _train_vps(config, vps_out)
    d2 = _train_d2(config, d2_out)
    _assert_same_weights(_final_weights(vps_out), _final_weights(d2_out))
    # a run stopped after its checkpoint of iteration 1, then resumed
    _stopped_after_iteration_1(d2_out, half)
    resumed = _train_d2(config, half, resume=True)
    assert resumed.start_iter == 2
    _assert_same_weights(_final_weights(d2_out), _final_weights(half))
    if not vps.cfg.DATASETS.TEST:  # a generator's sample config (ArSDM) has no test split
        return
    # evaluation: Detectron2's loop and vps_d2's on the same weights
    cfg_d2, cfg_vps = d2.cfg, vps.cfg
    model = d2._trainer.model.eval()
    name = cfg_d2.DATASETS.TEST[0]
    ours = VPSTrainer.test(cfg_vps, vps.model_raw)
    theirs = inference_on_dataset(
        model, D2Trainer.build_test_loader(cfg_d2, name), D2Trainer.build_evaluator(cfg_d2, name)
    )
    assert theirs[name].keys() == ours[name].keys()
    for k, v in ours[name].items():
        assert abs(theirs[name][k] - v) <= 1e-9, (name, k)
    full = D2Trainer.test(cfg_d2, model)
    assert full.keys() == ours.keys()
    for task in ours:
        for k, v in ours[task].items():
            w = full[task][k]
            assert (v != v and w != w) or abs(w - v) <= 1e-9, (task, k)


@needs_d2
def test_checkpoints_are_interchangeable_between_engines(tiny_sample_root, tmp_path, monkeypatch):
    """A vps_d2-engine checkpoint resumes under Detectron2 and the reverse, to the same
    weights as an uninterrupted run."""
    monkeypatch.setenv("VPS_DATASETS", tiny_sample_root)
    config = get_config_file("frame_baseline_sample.yaml")
    full = str(tmp_path / "full")
    _train_vps(config, full)
    full_d2 = str(tmp_path / "full_d2")
    _train_d2(config, full_d2)
    for first_out, second in ((full, _train_d2), (full_d2, _train_vps)):
        out = str(tmp_path / f"from_{os.path.basename(first_out)}")
        _stopped_after_iteration_1(first_out, out)
        if second is _train_d2:
            second(config, out, resume=True)
        else:
            from vps_d2.data.datasets import configure_datasets
            from vps_d2.engine import Trainer

            cfg = _vps_cfg(config, *TINY, "OUTPUT_DIR", out)
            configure_datasets(cfg)
            t = Trainer(cfg)
            t.resume_or_load(resume=True)
            assert t.start_iter == 2
            t.train()
        _assert_same_weights(_final_weights(full), _final_weights(out))


@needs_d2
def test_engine_switch_same_artifacts_and_numbers(tiny_sample_root, tmp_path):
    config = get_config_file("frame_baseline_sample.yaml")
    outs = {}
    for engine in ("vps_d2", "detectron2"):
        out = str(tmp_path / engine)
        run_train_net(
            tiny_sample_root,
            config,
            *TINY,
            "OUTPUT_DIR",
            out,
            flags=["--engine", engine],
            timeout=600,
        )
        outs[engine] = out
        for f in (
            "log.txt",
            "config.yaml",
            "metrics.json",
            "model_0000001.pth",
            "model_final.pth",
            "last_checkpoint",
            "model_best.pth",
            "model_best.json",
            "results.json",
        ):
            assert os.path.isfile(os.path.join(out, f)), (engine, f)
        assert glob.glob(os.path.join(out, "events.out.tfevents.*")), engine
    _assert_same_weights(_final_weights(outs["vps_d2"]), _final_weights(outs["detectron2"]))
    a, b = (json.load(open(os.path.join(outs[e], "results.json"))) for e in outs)
    assert a.keys() == b.keys()
    for task in a:
        for k, v in a[task].items():
            assert (v != v and b[task][k] != b[task][k]) or abs(b[task][k] - v) <= 1e-9
    # --eval-only through Detectron2 gives the same numbers too
    ev = str(tmp_path / "eval")
    run_train_net(
        tiny_sample_root,
        config,
        *TINY,
        "MODEL.WEIGHTS",
        os.path.join(outs["vps_d2"], "model_final.pth"),
        "OUTPUT_DIR",
        ev,
        flags=["--engine", "detectron2", "--eval-only"],
        timeout=600,
    )
    c = json.load(open(os.path.join(ev, "results.json")))
    assert set(c) == {t for t in a if not t.startswith("holdout_val")}  # eval-only: no hold-out
    for task in c:
        for k, v in a[task].items():
            assert (v != v and c[task][k] != c[task][k]) or abs(c[task][k] - v) <= 1e-9
