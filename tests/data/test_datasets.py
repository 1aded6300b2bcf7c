"""Dataset readers on tiny data generated in the real layouts (SUN-SEG, CVC-612, folders)."""

import importlib.util
import json
import logging
import os
import pickle
import shutil

import cv2
import numpy as np
import pytest
from train_net_runner import ROOT as REPO

import vps_d2.data.datasets as D
import vps_d2.data.datasets.folder as folder_mod
from vps_d2.config import get_cfg
from vps_d2.data import CLASS_NAMES, DatasetCatalog, MetadataCatalog
from vps_d2.data.io import ImageReadError, read_image, read_mask

RECORD_KEYS = {
    "dataset_name",
    "split",
    "video_id",
    "length",
    "file_names",
    "gt_file_names",
    "frame_names",
    "class_id",
    "class_name",
    "boxes",
}
H, W = 16, 20


@pytest.fixture(autouse=True)
def _reset_datasets_config(monkeypatch):
    monkeypatch.delenv("VPS_DATASETS", raising=False)
    monkeypatch.delenv("DETECTRON2_DATASETS", raising=False)
    yield
    D.configure_datasets(get_cfg())


def _configure(root, **kv):
    cfg = get_cfg()
    cfg.DATASETS.ROOT = str(root)
    for k, v in kv.items():
        node, key = cfg.DATASETS, k.split(".")
        for part in key[:-1]:
            node = node[part]
        node[key[-1]] = v
    D.configure_datasets(cfg)


def sun_stem(a, image):
    return f"case_M_20181001100941_0U62372100109341_1_005_001-1_a{a}_ayy_image{image:04d}"


# True temporal order: a2 before a10 (lexical order says the opposite), then image number.
SUN_ORDER = [sun_stem(2, 1), sun_stem(2, 2), sun_stem(10, 1), sun_stem(10, 2)]


def rect_mask(i):
    """Mask of frame i: a rectangle whose position depends on i (box known independently)."""
    m = np.zeros((H, W), np.uint8)
    x, y, w, h = 2 + i, 1 + i, 5, 4
    m[y : y + h, x : x + w] = 255
    return m, [float(x), float(y), float(w), float(h)]


def write_video(split_root, case, stems, frame_ext=".jpg", gt=True, mask_scale=1):
    fdir = os.path.join(split_root, "Frame", case)
    gdir = os.path.join(split_root, "GT", case)
    os.makedirs(fdir, exist_ok=True)
    if gt:
        os.makedirs(gdir, exist_ok=True)
    boxes = []
    for i, stem in enumerate(stems):
        img = np.full((H, W, 3), 10 * i, np.uint8)
        cv2.imwrite(os.path.join(fdir, stem + frame_ext), img)
        m, box = rect_mask(i)
        boxes.append(box)
        if gt:
            cv2.imwrite(os.path.join(gdir, stem + ".png"), (m // 255 * 255) // mask_scale)
    return boxes


def make_sun_seg(root, splits=None):
    """SUN-SEG tree with {split_dir: [case, ...]} (4 frames per case, SUN stems)."""
    splits = splits or {
        "TrainDataset": ["case1_1", "case1_2", "case2_1", "case3", "case10_1", "case4_1"],
        "TestEasyDataset/Seen": ["case10_2", "case2_3"],
        "TestEasyDataset/Unseen": ["case20_1"],
        "TestHardDataset/Seen": ["case1_5"],
        "TestHardDataset/Unseen": ["case30"],
    }
    for split, cases in splits.items():
        for case in cases:
            write_video(os.path.join(root, "SUN-SEG", split), case, list(reversed(SUN_ORDER)))
    return os.path.join(root, "SUN-SEG")


def test_registered_names_and_metadata(tmp_path):
    names = [f"sun_seg_{s}" for s in ("train", "val", "easy_seen", "easy_unseen")]
    names += ["sun_seg_hard_seen", "sun_seg_hard_unseen", "cvc612_train", "cvc612_val"]
    names += ["cvc612_test"] + [
        f"vps_sample_{s}" for s in ("train", "easy_seen", "easy_unseen", "hard_seen", "hard_unseen")
    ]
    for n in names:
        assert n in DatasetCatalog.list(), n
    _configure(tmp_path)
    md = MetadataCatalog.get("sun_seg_hard_unseen")
    assert md.evaluator_type == "vps" and md.split == "TestHardDataset/Unseen"
    assert md.root == os.path.join(str(tmp_path), "SUN-SEG")
    assert list(md.class_names) == list(CLASS_NAMES)
    assert MetadataCatalog.get("vps_sample_easy_seen").root == os.path.join(
        str(tmp_path), "vps-sample"
    )
    assert MetadataCatalog.get("cvc612_val").split == "val"


def test_sun_seg_records_and_order(tmp_path):
    make_sun_seg(tmp_path)
    _configure(tmp_path)
    recs = DatasetCatalog.get("sun_seg_train")
    assert [r["video_id"] for r in recs] == [
        "case1_1",
        "case1_2",
        "case2_1",
        "case3",
        "case4_1",
        "case10_1",
    ]
    for r in recs:
        assert set(r) == RECORD_KEYS
        assert r["dataset_name"] == "sun_seg_train" and r["split"] == "TrainDataset"
        assert r["length"] == 4 == len(r["file_names"]) == len(r["gt_file_names"])
        assert r["frame_names"] == SUN_ORDER
        for f, g, s in zip(r["file_names"], r["gt_file_names"], r["frame_names"]):
            assert os.path.basename(f) == s + ".jpg" and os.path.basename(g) == s + ".png"
            assert os.path.isabs(f)
        assert r["class_id"] == -1 and r["class_name"] == ""
    # frames were written in reversed order, frame i of the true order has value 10 * (3 - i)
    first = recs[0]["file_names"]
    assert [int(read_image(p)[0, 0, 0]) for p in first] == pytest.approx([30, 20, 10, 0], abs=2)
    easy = DatasetCatalog.get("sun_seg_easy_seen")
    assert [r["video_id"] for r in easy] == ["case2_3", "case10_2"]
    assert all(r["split"] == "TestEasyDataset/Seen" for r in easy)


def test_root_resolution_at_load_time(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    make_sun_seg(a, {"TestHardDataset/Unseen": ["case7"]})
    make_sun_seg(b, {"TestHardDataset/Unseen": ["case8", "case9"]})
    D.configure_datasets(get_cfg())  # ROOT ""
    monkeypatch.setenv("DETECTRON2_DATASETS", str(b))
    assert len(DatasetCatalog.get("sun_seg_hard_unseen")) == 2
    monkeypatch.setenv("VPS_DATASETS", str(a))  # wins over DETECTRON2_DATASETS
    assert [r["video_id"] for r in DatasetCatalog.get("sun_seg_hard_unseen")] == ["case7"]
    _configure(b)  # DATASETS.ROOT wins over both
    assert len(DatasetCatalog.get("sun_seg_hard_unseen")) == 2
    assert MetadataCatalog.get("sun_seg_hard_unseen").root == os.path.join(str(b), "SUN-SEG")
    _configure(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="TestHardDataset/Unseen"):
        DatasetCatalog.get("sun_seg_hard_unseen")


def test_sample_dataset_names_read_vps_sample(tmp_path):
    split = tmp_path / "vps-sample" / "TestEasyDataset" / "Unseen"
    write_video(str(split), "case5_1", ["00002", "00010", "00001"])
    _configure(tmp_path)
    (r,) = DatasetCatalog.get("vps_sample_easy_unseen")
    assert r["frame_names"] == ["00001", "00002", "00010"]
    assert r["dataset_name"] == "vps_sample_easy_unseen"


def test_quirks(tmp_path, caplog):
    split = tmp_path / "SUN-SEG" / "TestEasyDataset" / "Unseen"
    write_video(str(split), "case1_1", SUN_ORDER, frame_ext=".JPG")
    write_video(str(split), "case2_1", ["1", "2", "3"], mask_scale=255)  # 0/1 masks
    fdir, gdir = split / "Frame", split / "GT"
    os.remove(gdir / "case1_1" / (SUN_ORDER[1] + ".png"))  # frame without GT
    cv2.imwrite(str(gdir / "case1_1" / "orphan.png"), np.zeros((H, W), np.uint8))  # GT only
    for d in (fdir / "case1_1", gdir / "case1_1", fdir):
        (d / ".DS_Store").write_bytes(b"\x00junk")
        (d / "._x.jpg").write_bytes(b"\x00junk")
    os.makedirs(fdir / "case3_1")  # empty case folder
    os.makedirs(gdir / "case9")  # GT folder without frames
    # grayscale and RGBA frames, anti-aliased mask, corrupt frame
    cv2.imwrite(str(fdir / "case2_1" / "1.jpg"), np.full((H, W), 77, np.uint8))
    os.remove(fdir / "case2_1" / "2.jpg")
    cv2.imwrite(str(fdir / "case2_1" / "2.png"), np.full((H, W, 4), 50, np.uint8))
    aa = np.zeros((H, W), np.uint8)
    aa[4:9, 6:10] = 255
    aa[3, 6:10] = 128  # not foreground
    aa[9, 6:10] = 129  # foreground
    cv2.imwrite(str(gdir / "case2_1" / "2.png"), aa)
    (fdir / "case2_1" / "3.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")

    _configure(tmp_path)
    with caplog.at_level(logging.WARNING):
        recs = DatasetCatalog.get("sun_seg_easy_unseen")
    log = caplog.text
    assert "orphan.png" in log and "case3_1" in log and "case9" in log
    assert SUN_ORDER[1] in log  # the frame without GT is named
    assert [r["video_id"] for r in recs] == ["case1_1", "case2_1"]
    r1, r2 = recs
    assert r1["frame_names"] == SUN_ORDER and r1["file_names"][0].endswith(".JPG")
    assert r1["gt_file_names"][1] is None and r1["gt_file_names"][0] is not None
    assert r1["boxes"][1] is None  # no GT -> no box
    assert r2["frame_names"] == ["1", "2", "3"]
    # 0/1 mask of frame 0 gives the same box as its 0/255 version
    assert r2["boxes"][0] == rect_mask(0)[1]
    assert r2["boxes"][1] == [6.0, 4.0, 4.0, 6.0]  # anti-aliased edge cut at > 128
    gray, rgba = read_image(r2["file_names"][0]), read_image(r2["file_names"][1])
    assert gray.shape == rgba.shape == (H, W, 3) and gray[0, 0].tolist() == [77] * 3
    with pytest.raises(ImageReadError, match="3.jpg"):
        read_image(r2["file_names"][2])


def test_duplicate_stems_are_an_error(tmp_path):
    split = tmp_path / "SUN-SEG" / "TestHardDataset" / "Seen"
    write_video(str(split), "case1_1", ["a", "b"])
    cv2.imwrite(str(split / "Frame" / "case1_1" / "a.png"), np.zeros((H, W, 3), np.uint8))
    _configure(tmp_path)
    with pytest.raises(ValueError, match=r"a\.jpg and a\.png"):
        DatasetCatalog.get("sun_seg_hard_seen")


def _write_classes(path, lines):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def test_classification(tmp_path):
    root = make_sun_seg(tmp_path)
    train_file = os.path.join(root, "TrainDataset", "Classification", "classification.txt")
    lines = [f"{s}.jpg\tHigh_Grade_Adenoma" for s in SUN_ORDER]
    _write_classes(train_file, lines)
    _configure(tmp_path)
    recs = DatasetCatalog.get("sun_seg_train")
    # every case of the split shares these stems, so every video gets the class
    assert {(r["class_id"], r["class_name"]) for r in recs} == {(1, "high_grade_adenoma")}
    # a test split without its own file uses TrainDataset's (matching by stem); a file at
    # the dataset root names a case explicitly and overrides it for that case
    _write_classes(
        os.path.join(root, "Classification", "classification.txt"),
        [f"case20_1/{s}.jpg   Invasive_Carcinoma" for s in SUN_ORDER],
    )
    (unseen,) = DatasetCatalog.get("sun_seg_easy_unseen")
    assert unseen["class_name"] == "invasive_cancer"
    assert unseen["class_id"] == CLASS_NAMES.index("invasive_cancer")
    # a split's own file wins; frames of a video without any class -> -1
    _write_classes(
        os.path.join(root, "TestHardDataset", "Seen", "Classification", "classification.txt"),
        [f"{s}.jpg\tsessile serrated lesion" for s in SUN_ORDER],
    )
    (hard,) = DatasetCatalog.get("sun_seg_hard_seen")
    assert hard["class_name"] == "sessile_serrated_lesion"
    os.remove(train_file)
    (easy_unseen,) = DatasetCatalog.get("sun_seg_easy_unseen")
    assert easy_unseen["class_name"] == "invasive_cancer"
    # no frame of case30 is classified: the packaged SUN-SEG case table gives its class
    assert DatasetCatalog.get("sun_seg_hard_unseen")[0]["class_name"] == "low_grade_adenoma"


@pytest.mark.parametrize(
    "line,match", [("x.jpg\tadenoma_of_doom", "unknown class"), ("justonefield", "expected")]
)
def test_classification_errors_name_file_and_line(tmp_path, line, match):
    p = str(tmp_path / "classification.txt")
    _write_classes(p, ["a.jpg\tlow_grade_adenoma", line])
    with pytest.raises(ValueError, match=rf"classification\.txt:2: {match}"):
        D.sun_seg.load_classification(p)


@pytest.mark.parametrize("key", ["annotation", "annotations"])
def test_bbox_json_and_mask_fallback(tmp_path, key):
    root = make_sun_seg(tmp_path, {"TestEasyDataset/Seen": ["case1_1", "case2_1"]})
    split = os.path.join(root, "TestEasyDataset", "Seen")
    images, anns, given = [], [], {}
    for j, case in enumerate(["case1_1", "case2_1"]):
        for i, stem in enumerate(SUN_ORDER[:3]):  # last frame missing from the file
            img_id = 100 * j + i
            box = [1.5 + i, 2.0, 3.0 + j, 4.0]
            images.append(
                {"id": img_id, "width": W, "height": H, "case_name": case, "file_name": stem}
            )
            anns.append({"id": img_id, "bbox": box})
            given[(case, i)] = box
    os.makedirs(os.path.join(split, "Detection"))
    with open(os.path.join(split, "Detection", "bbox_annotation.json"), "w") as f:
        json.dump({"images": images, key: anns[::-1]}, f)  # linked by id, not position
    _configure(tmp_path)
    for r in DatasetCatalog.get("sun_seg_easy_seen"):
        for i in range(3):
            assert r["boxes"][i] == given[(r["video_id"], i)]
        # the frame absent from the JSON falls back to its mask (frame 3 of the true order
        # was written as index 0 of the reversed list)
        assert r["boxes"][3] == rect_mask(0)[1]


def test_bbox_json_errors(tmp_path):
    p = tmp_path / "bbox_annotation.json"
    p.write_text("{not json")
    with pytest.raises(ValueError, match="bbox_annotation.json: not valid JSON"):
        D.sun_seg.load_bbox_annotations(str(p))
    p.write_text(json.dumps({"images": [], "boxes": []}))
    with pytest.raises(ValueError, match="'annotation'"):
        D.sun_seg.load_bbox_annotations(str(p))
    p.write_text(
        json.dumps(
            {"images": [{"id": 1, "file_name": "a"}], "annotation": [{"id": 1, "bbox": [1, 2, 3]}]}
        )
    )
    with pytest.raises(ValueError, match="bbox"):
        D.sun_seg.load_bbox_annotations(str(p))
    # two boxes of one image (linked by image_id) merge into their enclosing box
    p.write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": "c1/a.jpg"}],
                "annotations": [
                    {"id": 5, "image_id": 1, "bbox": [1, 2, 3, 4]},
                    {"id": 6, "image_id": 1, "bbox": [0, 5, 2, 2]},
                ],
            }
        )
    )
    assert D.sun_seg.load_bbox_annotations(str(p)) == {("c1", "a"): [0.0, 2.0, 4.0, 5.0]}


def test_mask_boxes_are_lazy_and_picklable(tmp_path, monkeypatch):
    make_sun_seg(tmp_path, {"TestHardDataset/Seen": ["case1_1"]})
    _configure(tmp_path)
    calls = []
    real = folder_mod.read_mask
    monkeypatch.setattr(folder_mod, "read_mask", lambda p: calls.append(p) or real(p))
    (r,) = DatasetCatalog.get("sun_seg_hard_seen")
    assert calls == []  # loading reads no mask
    boxes = r["boxes"]
    assert len(boxes) == 4
    assert boxes[-1] == rect_mask(0)[1] and boxes[0] == rect_mask(3)[1]
    assert boxes[0] == rect_mask(3)[1]
    assert len(calls) == 2  # cached
    clone = pickle.loads(pickle.dumps(boxes))
    assert clone == [rect_mask(i)[1] for i in (3, 2, 1, 0)]
    assert boxes[1:3] == [rect_mask(2)[1], rect_mask(1)[1]]
    with pytest.raises(IndexError):
        boxes[4]


def test_holdout_split(tmp_path):
    cases = ["case1_1", "case1_2", "case2_1", "case3", "case4_1", "case4_2", "case5_1"]
    make_sun_seg(tmp_path, {"TrainDataset": cases})
    _configure(tmp_path)
    assert len(DatasetCatalog.get("sun_seg_train")) == len(cases)
    with pytest.raises(ValueError, match="HOLDOUT_VAL"):
        DatasetCatalog.get("sun_seg_val")

    def split(seed):
        _configure(tmp_path, **{"SUN_SEG.HOLDOUT_VAL": 0.4, "SUN_SEG.HOLDOUT_SEED": seed})
        tr = [r["video_id"] for r in DatasetCatalog.get("sun_seg_train")]
        va = DatasetCatalog.get("sun_seg_val")
        assert all(r["dataset_name"] == "sun_seg_val" for r in va)
        return tr, [r["video_id"] for r in va]

    tr, va = split(0)
    assert sorted(tr + va) == sorted(cases) and not set(tr) & set(va)
    videos = lambda cs: {c.split("_")[0] for c in cs}  # noqa: E731
    assert len(videos(va)) == 2 and not videos(tr) & videos(va)  # 0.4 * 5 videos, whole
    assert split(0) == (tr, va)  # deterministic
    assert len({tuple(split(s)[1]) for s in range(8)}) > 1  # the seed matters
    with pytest.raises(ValueError, match="DATASETS.SUN_SEG.HOLDOUT_VAL"):
        _configure(tmp_path, **{"SUN_SEG.HOLDOUT_VAL": 1.5})


# CVC-612 sequence ranges as listed in shared/reference/datasets.md (1-based, inclusive).
CVC_RANGES = [
    (1, 25),
    (26, 50),
    (51, 67),
    (68, 78),
    (79, 103),
    (104, 126),
    (127, 151),
    (152, 177),
    (178, 199),
    (200, 205),
    (206, 227),
    (228, 252),
    (253, 277),
    (278, 297),
    (298, 317),
    (318, 342),
    (343, 363),
    (364, 383),
    (384, 408),
    (409, 428),
    (429, 447),
    (448, 466),
    (467, 478),
    (479, 503),
    (504, 528),
    (529, 546),
    (547, 571),
    (572, 591),
    (592, 612),
]


@pytest.fixture(scope="module")
def cvc_raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("cvc") / "CVC-612"
    os.makedirs(root / "Original")
    os.makedirs(root / "Ground Truth")
    for n in range(1, 613):
        cv2.imwrite(str(root / "Original" / f"{n}.tif"), np.full((8, 8, 3), n % 256, np.uint8))
        m = np.zeros((8, 8), np.uint8)
        m[n % 5 : n % 5 + 2, 1:4] = 255
        cv2.imwrite(str(root / "Ground Truth" / f"{n}.tif"), m)
    return root


def test_cvc612_default_split(cvc_raw):
    _configure(cvc_raw.parent)
    recs = {s: DatasetCatalog.get(f"cvc612_{s}") for s in ("train", "val", "test")}
    assert [len(recs[s]) for s in ("train", "val", "test")] == [18, 6, 5]
    assert [r["video_id"] for r in recs["test"]] == ["seq00", "seq06", "seq07", "seq16", "seq24"]
    assert sum(r["length"] for rs in recs.values() for r in rs) == 612
    for rs in recs.values():
        for r in rs:
            assert set(r) == RECORD_KEYS
            first, last = CVC_RANGES[int(r["video_id"][3:])]
            assert [int(s) for s in r["frame_names"]] == list(range(first, last + 1))
            assert r["length"] == last - first + 1
            assert all(g.endswith(f"{s}.tif") for g, s in zip(r["gt_file_names"], r["frame_names"]))
    r = recs["val"][0]  # seq02, frames 51..67
    n = int(r["frame_names"][0])
    assert read_image(r["file_names"][0])[0, 0, 0] == n % 256
    assert r["boxes"][0] == [1.0, float(n % 5), 3.0, 2.0]
    assert MetadataCatalog.get("cvc612_val").root == str(cvc_raw)


def test_cvc612_bad_splits_name_the_key(cvc_raw):
    with pytest.raises(ValueError, match="DATASETS.CVC612.TEST_SEQUENCES.*29"):
        _configure(cvc_raw.parent, **{"CVC612.TEST_SEQUENCES": [0, 29]})
    with pytest.raises(ValueError, match="TRAIN_SEQUENCES and DATASETS.CVC612.VAL_SEQUENCES.*5"):
        _configure(cvc_raw.parent, **{"CVC612.VAL_SEQUENCES": [2, 5]})  # 5 is in train
    _configure(cvc_raw.parent, **{"CVC612.TRAIN_SEQUENCES": [3], "CVC612.VAL_SEQUENCES": []})
    assert [r["video_id"] for r in DatasetCatalog.get("cvc612_train")] == ["seq03"]
    with pytest.raises(ValueError, match="VAL_SEQUENCES lists no sequence"):
        DatasetCatalog.get("cvc612_val")


def test_cvc612_missing_frames_and_gt_variants(cvc_raw, tmp_path, caplog):
    root = tmp_path / "CVC-612"
    shutil.copytree(cvc_raw, root)
    os.rename(root / "Ground Truth", root / "GroundTruth")
    os.remove(root / "GroundTruth" / "7.tif")
    _configure(tmp_path)
    with caplog.at_level(logging.WARNING):
        (seq0,) = [r for r in DatasetCatalog.get("cvc612_test") if r["video_id"] == "seq00"]
    assert seq0["gt_file_names"][6] is None and seq0["gt_file_names"][5].endswith("6.tif")
    assert "7" in caplog.text
    for n in (100, 101, 300):
        os.remove(root / "Original" / f"{n}.tif")
    with pytest.raises(ValueError, match="missing frame numbers: 100-101, 300"):
        DatasetCatalog.get("cvc612_test")


def test_video_folder(tmp_path):
    root = tmp_path / "myvids"
    write_video(str(root), "b_video", ["frame_10", "frame_2", "frame_1"], gt=False)
    write_video(str(root), "a_video", ["3", "1"], gt=False)
    D.register_video_folder("test_folder_dataset", str(root), split="demo")
    try:
        recs = DatasetCatalog.get("test_folder_dataset")
        assert [r["video_id"] for r in recs] == ["a_video", "b_video"]
        assert recs[1]["frame_names"] == ["frame_1", "frame_2", "frame_10"]
        assert recs[1]["gt_file_names"] == [None] * 3 and list(recs[1]["boxes"]) == [None] * 3
        assert recs[0]["split"] == "demo" and recs[0]["class_id"] == -1
        md = MetadataCatalog.get("test_folder_dataset")
        assert md.evaluator_type == "vps" and md.root == str(root)
    finally:
        DatasetCatalog.remove("test_folder_dataset")
        MetadataCatalog.remove("test_folder_dataset")
    with pytest.raises(FileNotFoundError, match="Frame"):
        D.load_video_folder(str(tmp_path), "x")


def _script(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "datasets", name))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_prepare_sun_seg(tmp_path, capsys):
    mod = _script("prepare_sun_seg.py")
    with pytest.raises(SystemExit) as e:
        mod.main(["--help"])
    assert e.value.code == 0
    raw, ann, out = tmp_path / "SUN-Positive", tmp_path / "annotations", tmp_path / "SUN-SEG"
    made = make_sun_seg(
        tmp_path / "tmp", {"TrainDataset": ["case1_1"], "TestHardDataset/Seen": ["case2_1"]}
    )
    shutil.copytree(os.path.join(made, "TrainDataset", "GT"), ann / "TrainDataset" / "GT")
    shutil.copytree(
        os.path.join(made, "TestHardDataset", "Seen", "GT"), ann / "TestHardDataset" / "Seen" / "GT"
    )
    _write_classes(
        str(ann / "TrainDataset" / "Classification" / "classification.txt"),
        [f"{s}.jpg\tlow_grade_adenoma" for s in SUN_ORDER],
    )
    # the raw release keeps frames per source video: case1/, case2/ (one stem set each here)
    shutil.copytree(os.path.join(made, "TrainDataset", "Frame", "case1_1"), raw / "case1")
    src2 = os.path.join(made, "TestHardDataset", "Seen", "Frame", "case2_1")
    os.makedirs(raw / "case2" / "sub")
    for s in SUN_ORDER[:2]:
        shutil.copy(os.path.join(src2, s + ".jpg"), raw / "case2" / (s + ".jpg"))
    args = ["--frames", str(raw), "--annotations", str(ann), "--out", str(out)]
    assert mod.main(args) == 1  # two of case2_1's frames are missing (not taken from case1/)
    err = capsys.readouterr().err
    assert "2 GT mask(s) have no frame" in err and SUN_ORDER[3] + ".png" in err
    for s in SUN_ORDER[2:]:
        shutil.copy(os.path.join(src2, s + ".jpg"), raw / "case2" / "sub" / (s + ".jpg"))
    assert mod.main(args + ["--dry-run"]) == 0 and not out.exists()
    assert mod.main(args + ["--link"]) == 0
    recs = D.load_sun_seg(str(out), "TrainDataset", "x") + D.load_sun_seg(
        str(out), "TestHardDataset/Seen", "y"
    )
    assert [r["video_id"] for r in recs] == ["case1_1", "case2_1"]
    assert all(r["frame_names"] == SUN_ORDER for r in recs)
    assert recs[0]["class_name"] == "low_grade_adenoma"
    assert mod.main(args) == 0  # re-run: everything already present


def test_prepare_cvc612(cvc_raw, tmp_path):
    mod = _script("prepare_cvc612.py")
    with pytest.raises(SystemExit) as e:
        mod.main(["--help"])
    assert e.value.code == 0
    out = tmp_path / "seq"
    assert mod.main(["--raw", str(tmp_path), "--out", str(out)]) == 1  # no Original/
    assert mod.main(["--raw", str(cvc_raw), "--out", str(out)]) == 0
    recs = D.load_video_folder(str(out), "cvc_seq")
    assert [r["video_id"] for r in recs] == [f"seq{i:02d}" for i in range(29)]
    for r, (first, last) in zip(recs, CVC_RANGES):
        assert [int(s) for s in r["frame_names"]] == list(range(first, last + 1))
    g = read_mask(recs[3]["gt_file_names"][0])  # frame 68
    assert g.sum() == 6 and g[68 % 5, 1]


# ---- case-level class tables ---------------------------------------------------------------
# Facts of datasets.md (independent of the table): clips and frames per class, 285 / 49,136.
SUN_SEG_CLASS_CLIPS = {
    "low_grade_adenoma": (229, 39834),
    "high_grade_adenoma": (26, 4111),
    "hyperplastic_polyp": (10, 1644),
    "traditional_serrated_adenoma": (9, 1627),
    "sessile_serrated_lesion": (8, 1288),
    "invasive_cancer": (3, 632),
}


def test_packaged_sun_seg_case_table():
    rows = D.sun_seg.sun_seg_cases()
    assert len(rows) == 285 == len({r["case"] for r in rows})
    assert sum(r["frames"] for r in rows) == 49136
    assert {r["class_name"] for r in rows} <= set(CLASS_NAMES)
    for name, (clips, frames) in SUN_SEG_CLASS_CLIPS.items():
        mine = [r for r in rows if r["class_name"] == name]
        assert (len(mine), sum(r["frames"] for r in mine)) == (clips, frames), name
    for r in rows:
        assert r["case"] == "case" + r["id"] and r["class_id"] == CLASS_NAMES.index(r["class_name"])
        assert r["location"] in set("CATDSR") and r["shape"].startswith(("I", "II"))
    classes = D.sun_seg.sun_seg_case_classes()
    assert classes["case1_1"] == 0 and classes["case63_2"] == CLASS_NAMES.index("invasive_cancer")
    assert classes["case58"] == CLASS_NAMES.index("sessile_serrated_lesion")
    # shipped in sdists/wheels
    with open(os.path.join(REPO, "MANIFEST.in")) as f:
        assert "vps_d2/data/datasets/sun_seg_cases.csv" in f.read().split()


def test_sun_seg_test_splits_use_the_packaged_table(tmp_path, caplog):
    make_sun_seg(
        tmp_path,
        {
            "TrainDataset": ["case2_1"],
            "TestEasyDataset/Unseen": ["case63_2", "case32_4", "case58", "case300"],
            "TestHardDataset/Seen": ["case1_5", "case18_1"],
        },
    )
    _configure(tmp_path)
    with caplog.at_level(logging.WARNING):
        recs = DatasetCatalog.get("sun_seg_easy_unseen")
    assert {r["video_id"]: r["class_name"] for r in recs} == {
        "case32_4": "traditional_serrated_adenoma",
        "case58": "sessile_serrated_lesion",
        "case63_2": "invasive_cancer",
        "case300": "",
    }
    assert [r["class_id"] for r in recs if r["video_id"] == "case300"] == [-1]
    assert any("case300" in r.getMessage() and "no class" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        hard = {r["video_id"]: r["class_name"] for r in DatasetCatalog.get("sun_seg_hard_seen")}
    # case1_5 is not in the table; every clip of video 1 (1_1 .. 1_3) is low-grade adenoma
    assert hard == {"case1_5": "low_grade_adenoma", "case18_1": "hyperplastic_polyp"}
    assert any(
        "source video" in r.getMessage() and "case1_5" in r.getMessage() for r in caplog.records
    )
    # the training split keeps classification.txt: no table fallback
    assert DatasetCatalog.get("sun_seg_train")[0]["class_id"] == -1


def test_case_table_priorities(tmp_path):
    root = make_sun_seg(tmp_path, {"TestEasyDataset/Seen": ["case2_3", "case10_2", "case20_1"]})
    split = os.path.join(root, "TestEasyDataset", "Seen")
    _configure(tmp_path)
    table = {r["video_id"]: r["class_name"] for r in DatasetCatalog.get("sun_seg_easy_seen")}
    assert table == {
        "case2_3": "high_grade_adenoma",
        "case10_2": "low_grade_adenoma",
        "case20_1": "low_grade_adenoma",
    }
    # the split's own cases.csv overrides the packaged table (names matched by number)
    _write_classes(
        os.path.join(split, "Classification", "cases.csv"),
        [
            "# a comment",
            "Case,Class_Name,notes",
            "case_10_2,Hyperplastic polyp,x",
            "20_1,Invasive cancer (T1b),",
        ],
    )
    # ... and classification.txt overrides both
    _write_classes(
        os.path.join(split, "Classification", "classification.txt"),
        [f"case20_1/{s}.jpg\tsessile_serrated_lesion" for s in SUN_ORDER],
    )
    got = {r["video_id"]: r["class_name"] for r in DatasetCatalog.get("sun_seg_easy_seen")}
    assert got == {
        "case2_3": "high_grade_adenoma",
        "case10_2": "hyperplastic_polyp",
        "case20_1": "sessile_serrated_lesion",
    }
    # the vps-sample names never use the SUN-SEG table (its case names mean other clips)
    make_sun_seg(tmp_path / "s", {"TestEasyDataset/Seen": ["case2_3"]})
    os.rename(tmp_path / "s" / "SUN-SEG", tmp_path / "vps-sample")
    assert DatasetCatalog.get("vps_sample_easy_seen")[0]["class_id"] == -1


@pytest.mark.parametrize(
    "lines,match",
    [
        (["case,notes", "case1,x"], r"cases\.csv:1: the header must name"),
        (["case,class_name", "case1,adenoma_of_doom"], r"cases\.csv:2: unknown class"),
        (["case,class_name", "case1,low_grade_adenoma,x"], r"cases\.csv:2: expected 2 cells"),
        (
            ["case,class_name", "case1,hyperplastic_polyp", "case1,hyperplastic_polyp"],
            r"cases\.csv:3: case 'case1' is listed twice",
        ),
        (["# only a comment"], r"cases\.csv: empty case table"),
    ],
)
def test_case_table_errors_name_file_and_line(tmp_path, lines, match):
    p = str(tmp_path / "cases.csv")
    _write_classes(p, lines)
    with pytest.raises(ValueError, match=match):
        D.sun_seg.load_case_table(p)


def test_case_table_tool(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "make_sun_seg_case_table", os.path.join(REPO, "tools", "make_sun_seg_case_table.py")
    )
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    md = tmp_path / "cases.md"
    md.write_text(
        "| ID | Frames | Duration (s) | Shape | Size | Location | Pathological diagnosis |\n"
        "|----|----|----|----|----|----|----|\n"
        "| 1_1   | 150 | 5.00 | Is  | 6mm   | C | Low-grade adenoma     |\n"
        "| 4     |  80 | 2.67 | Ip  | 15mm- | S | Invasive cancer (T1b) |\n"
    )
    out = tmp_path / "t.csv"
    assert tool.main(["--md", str(md), "--output", str(out)]) == 0
    assert D.sun_seg.load_case_table(str(out)) == {"case1_1": 0, "case4": 5}
    md.write_text("| 2 | 80 | 2.67 | Is | 4mm | S | Adenoma of doom |\n")
    with pytest.raises(ValueError, match=r"cases\.md:1: unknown diagnosis"):
        tool.main(["--md", str(md), "--output", str(out)])
