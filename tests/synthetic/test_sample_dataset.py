"""The synthetic sample dataset: layout, determinism, labels, ordering, safe writing."""

from __future__ import annotations

import importlib.util
import json
import os
import re
from dataclasses import replace

import cv2
import numpy as np
import pytest

from vps_d2.data import CLASS_NAMES
from vps_d2.data.datasets.sun_seg import load_sun_seg
from vps_d2.data.frame_order import sort_frames
from vps_d2.synthetic import (
    SPLITS,
    make_sample_dataset,
    plan_sample_dataset,
    render_clip,
)

SMALL = dict(train_clips=2, test_clips=1, frames_min=6, frames_max=6, height=64, width=80)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("sample") / "a"
    summary = make_sample_dataset(str(root), seed=3, **SMALL)
    return str(root), summary


def _files(root: str) -> dict[str, bytes]:
    out = {}
    for dirpath, _, names in os.walk(root):
        for n in names:
            p = os.path.join(dirpath, n)
            with open(p, "rb") as f:
                out[os.path.relpath(p, root)] = f.read()
    return out


def _cases(root: str, split: str) -> list[str]:
    return sorted(os.listdir(os.path.join(root, split, "Frame")))


def _stems(root: str, split: str, case: str, kind: str = "Frame") -> list[str]:
    return sorted(os.path.splitext(n)[0] for n in os.listdir(os.path.join(root, split, kind, case)))


def _video_id(case: str) -> int:
    m = re.fullmatch(r"case(\d+)(?:_(\d+))?", case)
    assert m, case
    return int(m.group(1))


def _read_mask(root, split, case, stem):
    return cv2.imread(os.path.join(root, split, "GT", case, stem + ".png"), cv2.IMREAD_UNCHANGED)


def test_layout_and_counts(small):
    root, summary = small
    for split in SPLITS:
        cases = _cases(root, split)
        assert len(cases) == (2 if split == "TrainDataset" else 1), split
        assert _cases(root, split) == sorted(os.listdir(os.path.join(root, split, "GT")))
        for case in cases:
            frames = _stems(root, split, case)
            assert len(frames) == 6
            assert frames == _stems(root, split, case, "GT")
            assert all(
                n.endswith(".jpg") for n in os.listdir(os.path.join(root, split, "Frame", case))
            )
        assert summary["splits"][split]["frames"] == 6 * len(cases)
    assert os.path.isfile(os.path.join(root, "TrainDataset/Classification/classification.txt"))
    assert os.path.isfile(os.path.join(root, "TrainDataset/Detection/bbox_annotation.json"))
    # no temporary folder left next to the dataset
    assert os.listdir(os.path.dirname(root)) == ["a"]


def test_frames_and_masks(small):
    root, _ = small
    n_empty = n_total = 0
    for split in SPLITS:
        for case in _cases(root, split):
            areas = []
            for stem in _stems(root, split, case):
                img = cv2.imread(os.path.join(root, split, "Frame", case, stem + ".jpg"))
                mask = _read_mask(root, split, case, stem)
                assert img.shape == (64, 80, 3)
                assert mask.shape == (64, 80) and mask.dtype == np.uint8
                assert set(np.unique(mask).tolist()) <= {0, 255}
                areas.append(int((mask > 0).sum()))
                if split == "TrainDataset":
                    n_total += 1
                    n_empty += areas[-1] == 0
            assert max(areas) > 0, f"{split}/{case} never shows the polyp"
            if split != "TrainDataset":  # like SUN-SEG's positive clips (Dice would be capped)
                assert min(areas) > 0, f"{split}/{case} has a frame without polyp"
    assert 0 < n_empty < n_total // 2  # the polyp leaves the view in some training frames


def test_same_seed_identical_other_seed_different(small, tmp_path):
    root, _ = small
    make_sample_dataset(str(tmp_path / "b"), seed=3, **SMALL)
    make_sample_dataset(str(tmp_path / "c"), seed=4, **SMALL)
    a, b, c = _files(root), _files(str(tmp_path / "b")), _files(str(tmp_path / "c"))
    assert a == b
    frames_a = [v for k, v in sorted(a.items()) if k.endswith(".jpg")]
    frames_c = [v for k, v in sorted(c.items()) if k.endswith(".jpg")]
    assert len(frames_a) == len(frames_c)
    assert all(x != y for x, y in zip(frames_a, frames_c))


def test_boxes_are_the_masks_bounding_boxes(small):
    root, _ = small
    with open(os.path.join(root, "TrainDataset/Detection/bbox_annotation.json")) as f:
        det = json.load(f)
    images = {im["id"]: im for im in det["images"]}
    assert len(images) == len(det["images"]) == 12
    boxes = {a["id"]: a for a in det["annotation"]}
    assert len(boxes) == len(det["annotation"])
    seen = set()
    for image_id, im in images.items():
        case, stem = im["case_name"], im["file_name"]
        assert (im["width"], im["height"]) == (80, 64)
        seen.add((case, stem))
        ys, xs = np.where(_read_mask(root, "TrainDataset", case, stem) == 255)
        if xs.size == 0:
            assert image_id not in boxes
            continue
        expected = [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        assert boxes[image_id]["bbox"] == [int(v) for v in expected]
        assert boxes[image_id]["image_id"] == image_id
    assert set(boxes) <= set(images)
    train = "TrainDataset"
    assert seen == {(c, s) for c in _cases(root, train) for s in _stems(root, train, c)}


def test_classification_covers_every_frame(small):
    root, _ = small
    with open(os.path.join(root, "TrainDataset/Classification/classification.txt")) as f:
        lines = f.read().splitlines()
    names, classes = zip(*(line.split("\t") for line in lines))
    expected = {
        s + ".jpg" for c in _cases(root, "TrainDataset") for s in _stems(root, "TrainDataset", c)
    }
    assert len(names) == len(expected) and set(names) == expected
    assert set(classes) <= set(CLASS_NAMES)
    for case in _cases(root, "TrainDataset"):  # one class per video
        stems = {s + ".jpg" for s in _stems(root, "TrainDataset", case)}
        assert len({c for n, c in zip(names, classes) if n in stems}) == 1


def test_seen_share_training_videos_unseen_do_not(small):
    root, _ = small
    train = _cases(root, "TrainDataset")
    train_ids = {_video_id(c) for c in train}
    for split in SPLITS[1:]:
        for case in _cases(root, split):
            assert case not in train
            if split.endswith("/Seen"):
                assert _video_id(case) in train_ids, case
            else:
                assert _video_id(case) not in train_ids, case
    # no frame of a Seen clip is a training frame
    train_frames = {s for c in train for s in _stems(root, "TrainDataset", c)}
    for split in ("TestEasyDataset/Seen", "TestHardDataset/Seen"):
        for case in _cases(root, split):
            assert not train_frames & set(_stems(root, split, case))


def test_stems_need_the_sun_frame_order(small):
    root, _ = small
    plans = {
        (p.split, p.case): p
        for p in plan_sample_dataset(
            seed=3, **{k: v for k, v in SMALL.items() if k not in ("height", "width")}
        )
    }
    n_differ = 0
    for split in SPLITS:
        for case in _cases(root, split):
            names = [s + ".jpg" for s in _stems(root, split, case)]
            ordered = [os.path.splitext(p)[0] for p in sort_frames(names, case)]
            assert ordered == list(plans[(split, case)].stems)  # temporal order recovered
            n_differ += ordered != sorted(ordered)
    assert n_differ >= 1


def test_default_plan_counts():
    plans = plan_sample_dataset()
    by_split = {s: [p for p in plans if p.split == s] for s in SPLITS}
    assert len(by_split["TrainDataset"]) == 10
    assert all(len(by_split[s]) == 3 for s in SPLITS[1:])
    assert all(20 <= p.num_frames <= 40 for p in plans)
    assert all(len(set(p.stems)) == p.num_frames for p in plans)
    train_videos = {p.video for p in by_split["TrainDataset"]}
    train_keys = {(p.video, p.clip) for p in by_split["TrainDataset"]}
    for s in SPLITS[1:]:
        for p in by_split[s]:
            assert (p.video in train_videos) == s.endswith("/Seen")
            assert (p.video, p.clip) not in train_keys
    video_class = {}
    for p in plans:
        assert video_class.setdefault(p.video, p.class_name) == p.class_name
    # 5 training videos with 5 different classes; test videos have trained classes only
    train_classes = {p.class_name for p in by_split["TrainDataset"]}
    assert len(train_classes) == 5 and set(video_class.values()) == train_classes
    assert all(p.difficulty > 0.6 for p in by_split["TestHardDataset/Seen"])
    assert all(p.difficulty < 0.4 for p in by_split["TestEasyDataset/Unseen"])
    assert not any(p.leaves_view for s in SPLITS[1:] for p in by_split[s])
    assert sum(p.leaves_view for p in by_split["TrainDataset"]) >= 5


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="frames_max"):
        plan_sample_dataset(frames_min=10, frames_max=5)
    with pytest.raises(ValueError, match="train_clips"):
        plan_sample_dataset(train_clips=0)
    with pytest.raises(ValueError, match="height"):
        make_sample_dataset(str(tmp_path / "x"), height=8)
    assert not os.path.exists(tmp_path / "x")


def test_refuses_to_overwrite(tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="not empty"):
        make_sample_dataset(str(out), **SMALL)
    assert os.listdir(out) == ["keep.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="not a folder"):
        make_sample_dataset(str(tmp_path / "file"), **SMALL)

    tool = importlib.import_module("vps_d2.cli.make_sample_dataset")
    assert tool.main(["--output", str(out)]) == 2
    assert os.listdir(out) == ["keep.txt"]
    args = ["--output", str(out), "--overwrite", "--train-clips", "1", "--test-clips", "0"]
    args += ["--frames-min", "3", "--frames-max", "3", "--height", "48", "--width", "48"]
    assert tool.main(args) == 0
    assert sorted(os.listdir(out)) == ["TrainDataset"]
    assert len(os.listdir(out / "TrainDataset/Frame/case1_1")) == 3
    assert sorted(os.listdir(tmp_path)) == ["ds", "file"]  # no temporary folders left


def test_interrupted_run_leaves_no_partial_dataset(tmp_path, monkeypatch):
    import vps_d2.synthetic.sample_dataset as gen

    calls = []
    real = gen.render_clip

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(gen, "render_clip", failing)
    with pytest.raises(KeyboardInterrupt):
        gen.make_sample_dataset(str(tmp_path / "ds"), **SMALL)
    assert os.listdir(tmp_path) == []


def test_test_splits_have_a_case_class_table(small):
    root, summary = small
    with open(os.path.join(root, "TrainDataset/Classification/classification.txt")) as f:
        frame_class = dict(line.split("\t") for line in f.read().splitlines())
    train_video_class = {}
    for case in _cases(root, "TrainDataset"):
        (cls,) = {frame_class[s + ".jpg"] for s in _stems(root, "TrainDataset", case)}
        train_video_class[_video_id(case)] = cls
    for split in SPLITS[1:]:
        path = os.path.join(root, split, "Classification", "cases.csv")
        with open(path) as f:
            header, *rows = [line.split(",") for line in f.read().splitlines()]
        assert header == ["case", "class_name", "frames"]
        table = {case: (cls, int(n)) for case, cls, n in rows}
        assert sorted(table) == _cases(root, split)
        for case, (cls, n) in table.items():
            assert cls in CLASS_NAMES and n == len(_stems(root, split, case))
            assert cls == summary["classes"][f"{split}/{case}"]
            if split.endswith("/Seen"):  # the class of its training video
                assert cls == train_video_class[_video_id(case)], case
        # the SUN-SEG reader classifies the test cases from it
        recs = load_sun_seg(root, split, "x")
        assert {r["video_id"]: r["class_name"] for r in recs} == {c: v[0] for c, v in table.items()}
        assert all(r["class_id"] == CLASS_NAMES.index(r["class_name"]) for r in recs)
    assert not os.path.exists(os.path.join(root, "TrainDataset/Classification/cases.csv"))


def test_unseen_videos_get_classes_the_training_videos_have():
    plans = plan_sample_dataset(seed=0, train_clips=6, test_clips=3, frames_min=4, frames_max=4)
    train = {p.class_name for p in plans if p.split == SPLITS[0]}
    unseen = [p.class_name for p in plans if p.split.endswith("/Unseen")]
    assert len(train) == 3 and set(unseen) == train  # 3 training videos; 6 unseen ones
    # with six training videos or more every class is trained, and unseen videos cycle over all
    plans = plan_sample_dataset(seed=0, train_clips=12, test_clips=3, frames_min=4, frames_max=4)
    assert {p.class_name for p in plans if p.split == SPLITS[0]} == set(CLASS_NAMES)
    unseen = [p.class_name for p in plans if p.split.endswith("/Unseen")]
    assert sorted(unseen) == sorted(CLASS_NAMES)


def test_the_class_shows_in_the_polyp_not_in_the_geometry():
    """A video's class changes the polyp's colour and pattern (so it can be learnt), never the
    mask, the scene or the camera path."""
    plans = plan_sample_dataset(seed=3, train_clips=2, test_clips=1, frames_min=6, frames_max=6)
    plan = plans[0]
    looks = {}
    for cls in ("hyperplastic_polyp", "high_grade_adenoma", "invasive_cancer"):
        frames, masks = render_clip(replace(plan, class_name=cls), seed=3, height=64, width=80)
        looks[cls] = (frames.astype(np.float64), masks)
    ref_frames, ref_masks = looks.pop("hyperplastic_polyp")
    fg = ref_masks > 0
    assert fg.sum() > 50
    for cls, (frames, masks) in looks.items():
        np.testing.assert_array_equal(masks, ref_masks)
        # the scene is the same: pixels away from the polyp (motion blur spreads its colour a
        # little, and the instrument hides some of it) are equal (JPEG is not involved here)
        same = (frames == ref_frames).all(-1)
        assert same[~fg].mean() > 0.95, same[~fg].mean()  # measured 0.97
        # the polyp's colour differs clearly (mean over its pixels, per channel, 0..255)
        diff = np.abs(frames[fg].mean(0) - ref_frames[fg].mean(0))
        assert diff.max() > 10, (cls, diff)
