"""PGN+AEN end to end through tools/train_net.py on the tiny sample dataset: training beats
the untrained model, --eval-only reproduces the final evaluation (and also streams in sliding
windows), 2-process CPU DDP trains and its sharded streaming evaluation equals a
single-process --eval-only, and the users' HRNet-W48 config runs 2 iterations under
--num-gpus 2.

The untrained reference is the same config with SOLVER.BASE_LR 0 (weights stay at their
initialisation) evaluated by the same final evaluation; every run streams the test videos in
clips of 3 through the clip memory (sliding windows where said).
"""

import json
import os

import pytest
from train_net_runner import ROOT, run_train_net

from vps_d2.model_zoo import get_config_file

CONFIG = get_config_file("pgn_aen_sample.yaml")
# 64x80 frames: SmallCNN maps 16x20, 8x10, 4x5, 2x3 (the CRL grids), 1/8 map 8x10
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
    "MODEL.PGN_AEN.CRL.GRIDS",
    "[[16, 20], [8, 10], [4, 5], [2, 3]]",
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


def _results(out):
    with open(os.path.join(out, "results.json")) as f:
        return json.load(f)


def _run(root, out, *opts, flags=(), config=CONFIG, fast=FAST):
    run_train_net(root, config, *fast, "OUTPUT_DIR", out, *opts, flags=flags, timeout=900)
    results = _results(out)
    return sum(r["maxDice"] for r in results.values()) / len(results), out


@pytest.mark.slow
def test_pgn_aen_training_improves_over_untrained(tiny_sample_root, tmp_path):
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
    assert losses[-1] < 0.8 * losses[0], losses
    # measured: untrained 0.30 / 0.22, trained 0.66 / 0.65 (seeds 1 / 2; mean maxDice, 4 splits)
    assert trained > untrained + 0.3, (untrained, trained)
    # --eval-only on the saved weights streams the test videos again: the same numbers
    weights = os.path.join(out, "model_final.pth")
    again, _ = _run(
        tiny_sample_root, str(tmp_path / "eval"), "MODEL.WEIGHTS", weights, flags=["--eval-only"]
    )
    assert again == pytest.approx(trained, abs=1e-9)
    # the same weights streamed online: sliding windows, one new frame per step
    sliding, _ = _run(
        tiny_sample_root,
        str(tmp_path / "sliding"),
        "MODEL.WEIGHTS",
        weights,
        "MODEL.PGN_AEN.STREAM_MODE",
        "sliding",
        flags=["--eval-only"],
    )
    assert sliding > untrained + 0.3, (untrained, sliding)


@pytest.mark.slow
def test_pgn_aen_two_process_ddp_train_and_sharded_evaluation(tiny_sample_root, tmp_path):
    """2-process CPU DDP (every parameter gets a gradient: no unused-parameter search) and
    the test videos, streamed by two ranks, scored exactly like a single-process
    --eval-only of the same weights."""
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
    results = [_results(out), _results(out1)]
    assert sorted(results[0]) == sorted(results[1]) and len(results[0]) == 4
    for split, metrics in results[0].items():
        for name, value in metrics.items():
            assert results[1][split][name] == pytest.approx(value, abs=1e-9), (split, name)


@pytest.mark.slow
def test_users_hrnet_config_runs_two_iterations_on_two_cpu_processes(tiny_sample_root, tmp_path):
    """`tools/train_net.py --config-file configs/aen_cffm_hrnet.yaml --num-gpus 2`, with random
    init, a tiny input and the sample data instead of SUN-SEG: it builds HRNet-W48 + CFFM +
    AEN as configured, trains 2 iterations on two CPU processes and evaluates."""
    out = str(tmp_path / "hrnet")
    opts = [
        "MODEL.BACKBONE.PRETRAINED",
        "False",
        "MODEL.BACKBONE.WEIGHTS",
        "",
        "MODEL.DEVICE",
        "cpu",
        "INPUT.SIZE_TRAIN",
        "(64, 96)",
        "INPUT.SIZE_TEST",
        "(64, 96)",
        "DATASETS.TRAIN",
        "('vps_sample_train',)",
        "DATASETS.TEST",
        "('vps_sample_easy_seen',)",
        "TEST.VPS.BEST_DATASET",
        "",
        "DATASETS.HOLDOUT_VAL",
        "0.0",
        "TEST.EVAL_PERIOD",
        "0",
        "SOLVER.MAX_ITER",
        "2",
        "SOLVER.IMS_PER_BATCH",
        "2",
        "SOLVER.CHECKPOINT_PERIOD",
        "1000",
        "DATALOADER.NUM_WORKERS",
        "0",
        "DATALOADER.NUM_WORKERS_TEST",
        "0",
        "OUTPUT_DIR",
        out,
    ]
    run_train_net(
        tiny_sample_root,
        os.path.join(ROOT, "configs", "aen_cffm_hrnet.yaml"),
        *opts,
        flags=["--num-gpus", "2"],
        timeout=900,
    )
    with open(os.path.join(out, "log.txt")) as f:
        log = f.read()
    assert "World size: 2" in log
    with open(os.path.join(out, "config.yaml")) as f:
        saved = f.read()
    assert "hrnet_w48" in saved and "PGNAEN" in saved
    with open(os.path.join(out, "metrics.json")) as f:
        iters = [json.loads(line) for line in f if "total_loss" in line]
    assert iters and all(it["total_loss"] == it["total_loss"] for it in iters)  # finite
    assert set(_results(out)) == {"vps_sample_easy_seen"}
    assert os.path.isfile(os.path.join(out, "model_final.pth"))
