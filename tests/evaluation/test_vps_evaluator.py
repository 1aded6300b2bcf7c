"""VPSEvaluator: reference values, toolbox frame selection, saved PNGs = CLI numbers."""

import json
import os

import cv2
import numpy as np
import pytest
import torch
from test_evaluate_cli import GT_SHAPE, LAYOUT, load_cli, make_gt_tree

from vps_d2.config import add_vps_config, get_cfg
from vps_d2.data import DatasetCatalog, MetadataCatalog
from vps_d2.evaluation import (
    DatasetEvaluators,
    VPSEvaluator,
    build_evaluator,
    format_vps_results,
    inference_on_dataset,
    load_worst_cases,
    worst_cases_folder,
)
from vps_d2.evaluation import reference as R
from vps_d2.utils import comm

SPLIT = "TestEasyDataset/Unseen"
NAME = "_test_vps_evaluator_easy_unseen"


@pytest.fixture()
def dataset(tmp_path):
    """A registered dataset over a tiny GT tree; case1_1 has an extra frame without GT."""
    gt_root = str(tmp_path / "SUN-SEG")
    tree = make_gt_tree(gt_root, seed=11, layout={SPLIT: LAYOUT[SPLIT]})
    records = []
    for case, gts in tree[SPLIT].items():
        gt_names = list(gts)
        if case == "case1_1":
            gt_names.insert(3, None)  # a frame without a GT file
        stems = [
            os.path.splitext(os.path.basename(g))[0] if g else "case1_1_nogt" for g in gt_names
        ]
        records.append(
            {
                "dataset_name": NAME,
                "split": SPLIT,
                "video_id": case,
                "length": len(gt_names),
                "file_names": [
                    os.path.join(gt_root, SPLIT, "Frame", case, s + ".jpg") for s in stems
                ],
                "gt_file_names": gt_names,
                "frame_names": stems,
                "class_id": -1,
                "class_name": "",
                "boxes": [None] * len(gt_names),
            }
        )
    DatasetCatalog.register(NAME, lambda: records)
    try:
        yield gt_root, tree, records
    finally:
        DatasetCatalog.remove(NAME)
        MetadataCatalog.remove(NAME)


def frames_and_outputs(records, seed=0):
    """Test frame dicts + outputs; every third probability map is not at the GT size."""
    rng = np.random.default_rng(seed)
    out = []
    for rec in records:
        for i, (g, stem) in enumerate(zip(rec["gt_file_names"], rec["frame_names"])):
            shape = (20, 26) if len(out) % 3 == 0 else GT_SHAPE
            prob = rng.random(shape).astype(np.float32) ** 3
            frame = {
                "height": GT_SHAPE[0],
                "width": GT_SHAPE[1],
                "video_id": rec["video_id"],
                "frame_index": i,
                "video_length": rec["length"],
                "file_name": rec["file_names"][i],
                "gt_file_name": g,
                "frame_name": stem,
            }
            out.append((frame, {"prob": torch.from_numpy(prob)}))
    return out


def expected(records, pairs) -> dict:
    """Independent: rint quantisation, cv2 resize, SUN order from construction, reference."""
    probs = {(f["video_id"], f["frame_index"]): o["prob"].numpy() for f, o in pairs}
    cases = {}
    for rec in records:
        idx = [i for i, g in enumerate(rec["gt_file_names"]) if g]
        frames = []
        for i in idx[1:-1]:  # the GT list is in SUN order by construction
            gt = cv2.imread(rec["gt_file_names"][i], cv2.IMREAD_GRAYSCALE)
            q = np.clip(np.rint(probs[(rec["video_id"], i)].astype(np.float64) * 255), 0, 255)
            q = q.astype(np.uint8)
            if q.shape != gt.shape:
                q = cv2.resize(q, (gt.shape[1], gt.shape[0]))
            frames.append(R.reference_frame_metrics(q, gt))
        if frames:
            cases[rec["video_id"]] = frames
    return R.reference_split_metrics(cases)


def run(evaluator, pairs):
    evaluator.reset()
    for f, o in pairs:
        evaluator.process([f], [o])
    return evaluator.evaluate()


def test_evaluator_matches_reference_and_cli(dataset, tmp_path):
    gt_root, tree, records = dataset
    pairs = frames_and_outputs(records)
    out_dir = str(tmp_path / "out")
    ev = VPSEvaluator(NAME, out_dir, save_predictions=True, model_name="m1")
    res = run(ev, pairs)
    assert list(res) == [NAME]
    exp = expected(records, pairs)
    assert set(res[NAME]) == set(exp)
    for k, v in exp.items():
        assert abs(res[NAME][k] - v) <= 1e-12, k
    # toolbox layout; the frame without GT is saved under its frame name
    pred_dir = os.path.join(out_dir, "predictions", "m1", SPLIT)
    g = tree[SPLIT]["case1_1"][0]
    assert os.path.isfile(os.path.join(pred_dir, "case1_1", os.path.basename(g)))
    assert os.path.isfile(os.path.join(pred_dir, "case1_1", "case1_1_nogt.png"))
    saved = cv2.imread(os.path.join(pred_dir, "case1_1", os.path.basename(g)), 0)
    prob0 = pairs[0][1]["prob"].numpy()
    assert saved.shape == prob0.shape  # saved at the model's size, resized when scored
    np.testing.assert_array_equal(saved, np.rint(prob0.astype(np.float64) * 255))
    # the CLI on the saved PNGs gives the same numbers
    j = str(tmp_path / "cli.json")
    cli = load_cli()
    args = [
        "--gt-root",
        gt_root,
        "--pred-root",
        os.path.join(out_dir, "predictions"),
        "--model",
        "m1",
        "--splits",
        SPLIT,
        "--workers",
        "1",
        "--json",
        j,
    ]
    assert cli.main(args) == 0
    assert json.load(open(j))[SPLIT] == res[NAME]
    # result files of the evaluator
    assert json.load(open(os.path.join(out_dir, f"vps_{NAME}.json")))[NAME] == res[NAME]
    assert os.path.isfile(os.path.join(out_dir, f"vps_{NAME}_per_case.csv"))
    table = format_vps_results(res)
    assert NAME in table and "| maxDice |" in table
    assert f"{res[NAME]['maxDice']:.3f}" in table


def test_order_and_process_split_do_not_matter(dataset, monkeypatch):
    _, _, records = dataset
    pairs = frames_and_outputs(records, seed=3)
    ref = run(VPSEvaluator(NAME), pairs)[NAME]
    rng = np.random.default_rng(0)
    shuffled = [pairs[i] for i in rng.permutation(len(pairs))]
    got = run(VPSEvaluator(NAME), shuffled)[NAME]
    assert all(abs(got[k] - ref[k]) <= 1e-12 for k in ref)
    # two "processes", each with part of every video, gathered on rank 0
    a, b = VPSEvaluator(NAME), VPSEvaluator(NAME)
    for ev, part in ((a, shuffled[::2]), (b, shuffled[1::2])):
        ev.reset()
        for f, o in part:
            ev.process([f], [o])
    state_b = {v: acc.state() for v, acc in b._cases.items()}
    monkeypatch.setattr(comm, "get_world_size", lambda: 2)
    monkeypatch.setattr(comm, "is_main_process", lambda: True)
    monkeypatch.setattr(comm, "all_gather", lambda obj: [obj, state_b])
    got = a.evaluate()[NAME]
    assert all(abs(got[k] - ref[k]) <= 1e-12 for k in ref)
    monkeypatch.setattr(comm, "is_main_process", lambda: False)
    assert dict(a.evaluate()) == {}


def test_dropped_frames_follow_sun_order(dataset):
    _, tree, records = dataset
    pairs = frames_and_outputs(records, seed=5)
    ev = VPSEvaluator(NAME)
    run(ev, pairs)
    n = {v: acc.n for v, acc in ev._cases.items()}
    # case1_1: 11 GT frames -> 9; case2_3: 4 -> 2; case3: 2 -> none
    assert n == {"case1_1": 9, "case2_3": 2}
    # the frames at SUN positions 0 and 10 (image1, image11) are the dropped ones: making
    # them perfect does not change anything, changing image10 does
    base = ev.evaluate()[NAME]
    gts = tree[SPLIT]["case1_1"]
    changed = []
    for f, o in pairs:
        if f["gt_file_name"] in (gts[0], gts[-1]):
            gt = cv2.imread(f["gt_file_name"], 0) > 128
            o = {"prob": torch.from_numpy(gt.astype(np.float32))}
        changed.append((f, o))
    assert run(VPSEvaluator(NAME), changed)[NAME] == base
    changed = [
        (f, {"prob": torch.ones(GT_SHAPE)} if f["gt_file_name"] == gts[-2] else o) for f, o in pairs
    ]
    assert run(VPSEvaluator(NAME), changed)[NAME]["Smeasure"] != base["Smeasure"]


def test_build_evaluator_from_config(dataset, tmp_path):
    cfg = add_vps_config(get_cfg())
    cfg.OUTPUT_DIR = str(tmp_path / "o")
    cfg.TEST.VPS.SAVE_PREDICTIONS = True
    cfg.TEST.VPS.MODEL_NAME = "from_cfg"
    cfg.TEST.EVALUATORS = ["VPSEvaluator"]
    ev = build_evaluator(cfg, NAME, None)
    assert isinstance(ev, VPSEvaluator)
    assert (ev.save_predictions, ev.model_name, ev.output_dir) == (True, "from_cfg", cfg.OUTPUT_DIR)
    ev = build_evaluator(cfg, NAME, str(tmp_path / "x"))
    assert ev.output_dir == str(tmp_path / "x")
    cfg.TEST.EVALUATORS = ["VPSEvaluator", "NoSuchEvaluator"]
    with pytest.raises(KeyError, match="TEST.EVALUATORS.*NoSuchEvaluator"):
        build_evaluator(cfg, NAME, None)


def test_default_evaluators_compose_and_skip_missing_outputs(dataset, tmp_path):
    """The default TEST.EVALUATORS run segmentation, classification and detection on one
    pass; a model with probability maps only is scored on segmentation only, no error."""
    _, _, records = dataset
    cfg = add_vps_config(get_cfg())
    cfg.OUTPUT_DIR = str(tmp_path)
    ev = build_evaluator(cfg, NAME, None)
    assert isinstance(ev, DatasetEvaluators)
    assert [type(e).__name__ for e in ev._evaluators] == [
        "VPSEvaluator",
        "ClassificationEvaluator",
        "DetectionEvaluator",
    ]
    pairs = frames_and_outputs(records, seed=2)
    res = run(ev, pairs)
    assert list(res) == [NAME] and res[NAME] == run(VPSEvaluator(NAME), pairs)[NAME]


def test_inference_on_dataset_streams_into_the_evaluator(dataset):
    _, _, records = dataset
    pairs = frames_and_outputs(records, seed=9)
    probs = {(f["video_id"], f["frame_index"]): o["prob"] for f, o in pairs}

    class Replay(torch.nn.Module):  # returns the stored maps of a batch of frames
        def forward(self, frames):
            return [{"prob": probs[(f["video_id"], f["frame_index"])]} for f in frames]

    batches = []  # Detectron2-style batches: 2 consecutive frames of one video
    for rec in records:
        frames = [f for f, _ in pairs if f["video_id"] == rec["video_id"]]
        batches += [frames[i : i + 2] for i in range(0, len(frames), 2)]
    res = inference_on_dataset(Replay(), batches, VPSEvaluator(NAME))
    assert res[NAME] == run(VPSEvaluator(NAME), pairs)[NAME]


def test_bad_inputs(dataset, tmp_path):
    _, _, records = dataset
    (f, o), *_ = frames_and_outputs(records)
    ev = VPSEvaluator(NAME)
    ev.reset()
    with pytest.raises(ValueError, match=r"must be \(H, W\)"):
        ev.process([f], [{"prob": torch.zeros(2, 3, 4)}])
    with pytest.raises(KeyError, match="not in the dataset"):
        ev.process([dict(f, video_id="nope")], [o])
    with pytest.raises(ValueError, match="NaN"):
        ev.process([f], [{"prob": torch.full(GT_SHAPE, float("nan"))}])
    with pytest.raises(ValueError, match="output_dir"):
        VPSEvaluator(NAME, save_predictions=True)
    with pytest.raises(KeyError, match="not registered"):
        VPSEvaluator("_no_such_dataset").process([f], [o])
    assert dict(VPSEvaluator(NAME).evaluate()) == {}  # nothing processed


def test_worst_cases_are_kept_as_data_not_drawn(dataset, tmp_path):
    """TEST.VPS.DUMP_WORST_CASES: the evaluator writes the k lowest-Dice frames' maps and
    their index (the engine draws them, :func:`vps_d2.visualization.draw_worst_cases`)."""
    _, _, records = dataset
    out = tmp_path / "ev"
    ev = VPSEvaluator(NAME, str(out), dump_worst_cases=2)
    run(ev, frames_and_outputs(records))
    folder = out / "worst_cases" / NAME
    assert str(folder) == worst_cases_folder(str(out), NAME)
    names = sorted(os.listdir(folder))
    assert len([n for n in names if n.endswith("_prob.png")]) == 2
    assert "worst_cases.json" in names and not [n for n in names if n.endswith(".jpg")]
    cases, metric = load_worst_cases(str(folder))
    assert metric == "Dice@0.5" and [c["rank"] for c in cases] == [0, 1]
    assert cases[0]["score"] <= cases[1]["score"]
    assert cases[0]["prob"].dtype == np.uint8 and cases[0]["prob"].ndim == 2
    assert all(c["gt_file_name"] and c["file_name"].endswith(".jpg") for c in cases)
