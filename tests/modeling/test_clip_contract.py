"""One clip contract per meta-architecture (``clip_contract(cfg) -> ClipContract``).

INPUT.CLIP.LENGTH / SAMPLING are checked against it once, by
:func:`vps_d2.modeling.resolve_clip_config` in the engine's setup (before any process
starts): unset values become the contract's, contradictions are one ConfigError line naming
the key; the test loader batches the contract's test frames per batch.
"""

import argparse
import os

import pytest
from train_net_runner import ROOT

import vps_d2  # noqa: F401  (registers the built-in methods)
from vps_d2.config import ConfigError, add_vps_config, get_cfg
from vps_d2.data import DatasetCatalog
from vps_d2.engine import Trainer
from vps_d2.engine.defaults import setup_cfg
from vps_d2.model_zoo import get_config_file
from vps_d2.modeling import (
    META_ARCH_REGISTRY,
    ClipContract,
    VideoMetaArch,
    clip_contract,
    get_meta_arch,
    resolve_clip_config,
)
from vps_d2.utils.plugins import load_plugins

TOY_PLUGIN = os.path.join(ROOT, "tests", "plugins", "toy_method.py")
load_plugins([TOY_PLUGIN])

# sample config -> (training length, sampler, test frames per batch, latency) once resolved
EXPECTED = {
    "frame_baseline_sample.yaml": (1, "online", 1, 0),
    "sali_sample.yaml": (3, "triplet", 1, 0),
    "pgn_aen_sample.yaml": (9, "window", 3, 2),  # K = 3 sub-clips of L = 3, clips of 3
    "diff_vps_sample.yaml": (5, "online", 1, 0),  # DELTA 4 previous frames + the target
    "arsdm_sample.yaml": (1, "online", 1, 0),  # a generator: frames are independent samples
}
SAMPLES = {name: get_config_file(name) for name in EXPECTED}
SAMPLES["toy.yaml"] = os.path.join(ROOT, "tests", "plugins", "toy.yaml")
EXPECTED["toy.yaml"] = (1, "online", 1, 0)  # the plug-in declares nothing: the default


def _setup(path, *opts):
    args = argparse.Namespace(config_file=path, opts=list(opts), plugin=[TOY_PLUGIN])
    return setup_cfg(args)


def _load(path, *opts):
    cfg = add_vps_config(get_cfg())
    cfg.merge_from_file(path)
    cfg.merge_from_list(list(opts))
    return cfg


def test_every_registered_method_is_covered():
    """Every meta-architecture (aliases included) is the model of one config above."""
    archs = {get_meta_arch(_load(p)) for p in SAMPLES.values()}
    assert {cls for _, cls in META_ARCH_REGISTRY} <= archs


@pytest.mark.parametrize("name", list(SAMPLES))
def test_sample_config_contract_and_resolved_values(name):
    cfg = _setup(SAMPLES[name])
    contract = clip_contract(cfg)
    assert isinstance(contract, ClipContract)
    length, sampling, per_batch, latency = EXPECTED[name]
    assert (cfg.INPUT.CLIP.LENGTH, cfg.INPUT.CLIP.SAMPLING) == (length, sampling)
    assert (contract.test_frames_per_batch, contract.latency) == (per_batch, latency)
    assert contract.online == (latency == 0)
    # the frozen config (dumped as config.yaml) holds the real values
    assert cfg.is_frozen() and f"LENGTH: {length}" in cfg.dump()


@pytest.mark.parametrize(
    "name", ["sali_sample.yaml", "diff_vps_sample.yaml", "pgn_aen_sample.yaml"]
)
def test_unset_keys_resolve_to_the_contract(name):
    cfg = _setup(SAMPLES[name], "INPUT.CLIP.LENGTH", "0", "INPUT.CLIP.SAMPLING", "")
    contract = clip_contract(cfg)
    assert cfg.INPUT.CLIP.LENGTH == contract.train_length
    assert cfg.INPUT.CLIP.SAMPLING == contract.train_sampler


@pytest.mark.parametrize(
    "name,key,value,needs",
    [
        (
            "sali_sample.yaml",
            "INPUT.CLIP.LENGTH",
            "4",
            r"INPUT.CLIP.LENGTH = 4 but SALI trains on triplets .*set INPUT.CLIP.LENGTH 3 "
            r"\(or leave "
            r"it unset\)",
        ),
        (
            "sali_sample.yaml",
            "INPUT.CLIP.SAMPLING",
            "online",
            r"INPUT.CLIP.SAMPLING = 'online' but SALI .*set INPUT.CLIP.SAMPLING 'triplet'",
        ),
        (
            "diff_vps_sample.yaml",
            "INPUT.CLIP.LENGTH",
            "3",
            r"INPUT.CLIP.LENGTH = 3 but DiffVPS .*MODEL.DIFF_VPS.DELTA 4.*INPUT.CLIP.LENGTH 5",
        ),
        (
            "diff_vps_sample.yaml",
            "INPUT.CLIP.SAMPLING",
            "window",
            r"INPUT.CLIP.SAMPLING = 'window' but DiffVPS .*'online'",
        ),
        (
            "pgn_aen_sample.yaml",
            "INPUT.CLIP.LENGTH",
            "4",
            r"INPUT.CLIP.LENGTH = 4 but PGNAEN .*a multiple of 3 \(or leave it unset: 9\)",
        ),
        (
            "pgn_aen_sample.yaml",
            "INPUT.CLIP.SAMPLING",
            "online",
            r"INPUT.CLIP.SAMPLING = 'online' but PGNAEN .*'window'",
        ),
        ("frame_baseline_sample.yaml", "INPUT.CLIP.LENGTH", "-1", r"INPUT.CLIP.LENGTH = -1"),
    ],
)
def test_contradicting_values_fail_in_setup_naming_the_key(name, key, value, needs):
    with pytest.raises(ConfigError, match=needs) as info:
        _setup(SAMPLES[name], key, value)
    assert "\n" not in str(info.value)


def test_values_the_contract_accepts():
    # PGN+AEN: any multiple K * L; the frame-wise baseline: any length and sampler
    assert _setup(SAMPLES["pgn_aen_sample.yaml"], "INPUT.CLIP.LENGTH", "3").INPUT.CLIP.LENGTH == 3
    cfg = _setup(
        SAMPLES["frame_baseline_sample.yaml"],
        "INPUT.CLIP.LENGTH",
        "4",
        "INPUT.CLIP.SAMPLING",
        "window",
    )
    assert (cfg.INPUT.CLIP.LENGTH, cfg.INPUT.CLIP.SAMPLING) == (4, "window")


def test_resolve_is_idempotent_and_copies_a_frozen_config():
    cfg = _load(SAMPLES["sali_sample.yaml"])
    assert (cfg.INPUT.CLIP.LENGTH, cfg.INPUT.CLIP.SAMPLING) == (0, "")  # the file sets neither
    cfg.freeze()
    resolved = resolve_clip_config(cfg)
    assert resolved is not cfg and resolved.is_frozen() and cfg.INPUT.CLIP.LENGTH == 0
    assert resolve_clip_config(resolved) is resolved
    assert resolved.INPUT.CLIP.LENGTH == 3
    open_cfg = _load(SAMPLES["sali_sample.yaml"])
    assert resolve_clip_config(open_cfg) is open_cfg and open_cfg.INPUT.CLIP.LENGTH == 3


def test_default_contract_and_its_checks():
    c = VideoMetaArch.clip_contract(None)
    assert c == ClipContract() and c.online and c.test_frames_per_batch == 1
    assert c.resolve(0, "") == (1, "online") and c.resolve(7, "window") == (7, "window")
    with pytest.raises(ValueError, match="multiple"):
        ClipContract(train_length=4, train_length_multiple=3)
    with pytest.raises(ValueError, match="test_frames_per_batch"):
        ClipContract(test_frames_per_batch=0)


@pytest.fixture
def one_video_dataset():
    name = "test_clip_contract_video"
    DatasetCatalog.register(
        name,
        lambda: [
            {
                "dataset_name": name,
                "split": "test",
                "video_id": "v0",
                "length": 7,
                "file_names": [f"/nonexistent/{i}.jpg" for i in range(7)],
                "gt_file_names": [f"/nonexistent/{i}.png" for i in range(7)],
            }
        ],
    )
    yield name
    DatasetCatalog.remove(name)


@pytest.mark.parametrize("name", list(SAMPLES))
def test_test_loader_batches_the_contract_frames(name, one_video_dataset):
    cfg = _setup(SAMPLES[name], "DATALOADER.NUM_WORKERS_TEST", "0")
    loader = Trainer.build_test_loader(cfg, one_video_dataset)
    assert loader.frames_per_batch == clip_contract(cfg).test_frames_per_batch
