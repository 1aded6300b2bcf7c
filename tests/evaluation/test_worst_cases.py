"""The K worst frames of an evaluation: kept in bounded memory, written and read as data."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from vps_d2.evaluation import (
    WORST_CASES_INDEX,
    WorstCaseKeeper,
    load_worst_cases,
    write_worst_cases,
)


def test_keeper_keeps_the_lowest_scores():
    rng = np.random.default_rng(0)
    scores = rng.random(50)
    keeper = WorstCaseKeeper(k=5, max_side=16)
    for i, s in enumerate(scores):
        keeper.add(s, file_name=f"f{i}.jpg", gt_file_name=None, prob=np.full((40, 64), 0.5))
    cases = keeper.cases()
    assert [c["score"] for c in cases] == pytest.approx(sorted(scores)[:5])
    assert cases[0]["prob"].dtype == np.uint8 and cases[0]["prob"].shape == (10, 16)
    with pytest.raises(ValueError, match="positive"):
        WorstCaseKeeper(k=0)


def test_write_then_load_round_trip(tmp_path):
    keeper = WorstCaseKeeper(k=2)
    for i, score in enumerate([0.9, 0.2, 0.5]):
        prob = np.zeros((12, 16), np.float32)
        prob[:, : 4 * (i + 1)] = 1.0
        keeper.add(score, file_name=f"/x/frame{i}.jpg", gt_file_name=f"/x/gt{i}.png", prob=prob)
    folder = str(tmp_path / "worst")
    paths = write_worst_cases(keeper.cases(), folder, k=2, metric="Dice@0.5")
    assert [os.path.basename(p) for p in paths] == [
        "00_frame1_prob.png",
        "01_frame2_prob.png",
        WORST_CASES_INDEX,
    ]
    index = json.load(open(paths[-1], encoding="utf-8"))
    assert index["metric"] == "Dice@0.5" and len(index["cases"]) == 2
    cases, metric = load_worst_cases(folder)
    assert metric == "Dice@0.5"
    assert [c["name"] for c in cases] == ["frame1", "frame2"]
    assert [c["score"] for c in cases] == pytest.approx([0.2, 0.5])
    assert cases[0]["gt_file_name"] == "/x/gt1.png"
    assert (cases[0]["prob"] == keeper.cases()[0]["prob"]).all()  # lossless PNG


def test_nothing_to_write_or_load(tmp_path):
    assert write_worst_cases([], str(tmp_path / "none")) == []
    assert not os.path.exists(tmp_path / "none")
    assert load_worst_cases(str(tmp_path)) == ([], "")
