"""SALI end to end: tools/train_net.py on the tiny sample dataset beats the untrained model.

The untrained reference is the same config with SOLVER.BASE_LR 0 (weights stay at their
initialisation) evaluated by the same final evaluation; both runs stream the test videos
through SALI's memory (model.stream).
"""

import json
import os

import pytest
from train_net_runner import run_train_net

from vps_d2.model_zoo import get_config_file

CONFIG = get_config_file("sali_sample.yaml")
FAST = [
    # no validation hold-out: these tests measure learning on the whole tiny training set
    "DATASETS.HOLDOUT_VAL",
    "0.0",
    "INPUT.SIZE_TRAIN",
    "(64, 80)",
    "INPUT.SIZE_TEST",
    "(64, 80)",
    "SOLVER.IMS_PER_BATCH",
    "4",
    "DATALOADER.NUM_WORKERS",
    "0",
    "DATALOADER.NUM_WORKERS_TEST",
    "0",
    "SOLVER.WARMUP_ITERS",
    "0",
    "SOLVER.CHECKPOINT_PERIOD",
    "1000",
    "SEED",
    "1",
]


def _run(root, out, *opts, flags=()):
    run_train_net(root, CONFIG, *FAST, "OUTPUT_DIR", out, *opts, flags=flags)
    with open(os.path.join(out, "results.json")) as f:
        results = json.load(f)
    return sum(r["maxDice"] for r in results.values()) / len(results), out


@pytest.mark.slow
def test_sali_training_improves_over_untrained(tiny_sample_root, tmp_path):
    untrained, _ = _run(
        tiny_sample_root,
        str(tmp_path / "untrained"),
        "SOLVER.MAX_ITER",
        "1",
        "SOLVER.BASE_LR",
        "0.0",
    )
    trained, out = _run(tiny_sample_root, str(tmp_path / "trained"), "SOLVER.MAX_ITER", "80")
    with open(os.path.join(out, "metrics.json")) as f:
        losses = [json.loads(line)["total_loss"] for line in f if "total_loss" in line]
    # measured with the public code's decoder and fusion (issue 18), seed 1: total loss
    # 5.93 -> 4.84 (0.82x), mean maxDice untrained 0.12, trained 0.55 (4 splits); before
    # that change: untrained 0.21-0.22, trained 0.66-0.73 over seeds 1-3
    assert losses[-1] < 0.85 * losses[0], losses
    assert trained > untrained + 0.3, (untrained, trained)
    # --eval-only on the saved weights streams the test videos again: the same numbers
    weights = os.path.join(out, "model_final.pth")
    again, _ = _run(
        tiny_sample_root, str(tmp_path / "eval"), "MODEL.WEIGHTS", weights, flags=["--eval-only"]
    )
    assert again == pytest.approx(trained, abs=1e-9)


@pytest.mark.slow
def test_sali_two_process_ddp_train_and_sharded_evaluation(tiny_sample_root, tmp_path):
    """2-process CPU DDP: SALI trains (SmallCNN's unused res5 is frozen, so DDP finds every
    trainable parameter used) and the test videos, streamed by two ranks, are scored exactly
    like a single-process --eval-only of the same weights."""
    _, out = _run(
        tiny_sample_root, str(tmp_path / "ddp"), "SOLVER.MAX_ITER", "3", flags=["--num-gpus", "2"]
    )
    assert os.path.isfile(os.path.join(out, "log.txt.rank1"))
    with open(os.path.join(out, "log.txt")) as f:
        assert "World size: 2" in f.read()
    _, out1 = _run(
        tiny_sample_root,
        str(tmp_path / "single"),
        "MODEL.WEIGHTS",
        os.path.join(out, "model_final.pth"),
        flags=["--eval-only"],
    )
    results = []
    for d in (out, out1):
        with open(os.path.join(d, "results.json")) as f:
            results.append(json.load(f))
    assert sorted(results[0]) == sorted(results[1]) and len(results[0]) == 4
    for split, metrics in results[0].items():
        for name, value in metrics.items():
            assert results[1][split][name] == pytest.approx(value, abs=1e-9), (split, name)
