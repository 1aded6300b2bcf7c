"""Detectron2 all the way: its loaders, DatasetMapper, SemSegEvaluator, COCOEvaluator,
Visualizer, VideoVisualizer, DefaultPredictor-style prediction, config round trip and
demo/demo.py on vps_d2's datasets and models (docs/detectron2.md).

Detectron2 is not on PyPI: CI has none and every test here is skipped there ("Detectron2
not installed").
"""

import glob
import importlib.util
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from train_net_runner import ROOT

from vps_d2.model_zoo import get_config_file

HAS_D2 = importlib.util.find_spec("detectron2") is not None
pytestmark = pytest.mark.skipif(not HAS_D2, reason="Detectron2 not installed (not on PyPI)")

SAMPLE_CONFIGS = ["frame_baseline_sample", "sali_sample", "diff_vps_sample", "pgn_aen_sample"]
ALL_CONFIGS = sorted(
    glob.glob(os.path.join(ROOT, "configs", "**", "*.yaml"), recursive=True)
    + glob.glob(os.path.join(ROOT, "vps_d2", "methods", "*", "configs", "*.yaml"))
)
SPLITS = ["vps_sample_train", "vps_sample_easy_seen", "vps_sample_hard_unseen"]


@pytest.fixture
def d2_env(tiny_sample_root, tmp_path, monkeypatch):
    monkeypatch.setenv("VPS_DATASETS", tiny_sample_root)
    monkeypatch.setenv("VPS_D2_CACHE", str(tmp_path / "cache"))
    return tiny_sample_root


def _cfg(name, *opts):
    import vps_d2.d2 as vd2

    cfg = vd2.get_cfg()
    cfg.merge_from_file(get_config_file(f"{name}.yaml"))
    cfg.merge_from_list(["DATALOADER.NUM_WORKERS", "0", *opts])
    return cfg


# ------------------------------------------------------------------ datasets
@pytest.mark.parametrize("name", SPLITS)
def test_frame_dicts_are_detectron2_standard(d2_env, name):
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.structures import BoxMode
    from detectron2.structures.masks import polygons_to_bitmask
    from PIL import Image

    import vps_d2.d2  # noqa: F401  (registers at import)
    from vps_d2.data import CLASS_NAMES
    from vps_d2.data import DatasetCatalog as VPSCatalog

    videos = VPSCatalog.get(name)  # vps_d2's own records are unchanged
    assert "file_names" in videos[0] and "file_name" not in videos[0]
    dicts = DatasetCatalog.get(name)
    assert len(dicts) == sum(v["length"] for v in videos)
    assert [d["image_id"] for d in dicts] == list(range(len(dicts)))
    video = {v["video_id"]: v for v in videos}
    for d in dicts:
        v = video[d["video_id"]]
        assert d["file_name"] == v["file_names"][d["frame_index"]]
        gt_raw = cv2.imread(v["gt_file_names"][d["frame_index"]], cv2.IMREAD_GRAYSCALE)
        gt = gt_raw > 128  # the sample masks are 0/255
        label = np.asarray(Image.open(d["sem_seg_file_name"]))
        assert label.dtype == np.uint8 and set(np.unique(label)) <= {0, 1}
        assert np.array_equal(label == 1, gt)
        assert (d["height"], d["width"]) == gt.shape
        if not gt.any():
            assert d["annotations"] == []
            continue
        (ann,) = d["annotations"]
        ys, xs = np.nonzero(gt)
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        assert ann["bbox_mode"] == BoxMode.XYXY_ABS and ann["iscrowd"] == 0
        assert ann["category_id"] == v["class_id"] >= 0
        drawn = polygons_to_bitmask([np.asarray(p) for p in ann["segmentation"]], *gt.shape)
        iou = (drawn & gt).sum() / (drawn | gt).sum()
        assert iou >= 0.95, iou  # the outline along the pixels' edges
    md = MetadataCatalog.get(name)
    assert md.thing_classes == list(CLASS_NAMES) and md.stuff_classes == ["background", "polyp"]
    assert md.ignore_label == 255 and md.evaluator_type == "sem_seg"


def test_zero_one_masks_and_frames_without_gt(d2_env, tmp_path):
    """0/1 GT masks give the same label maps as 0/255 ones; a frame without GT gets an
    all-ignore map and no annotation; the cache is reused."""
    from PIL import Image

    from vps_d2.d2.datasets import frame_dicts
    from vps_d2.data import DatasetCatalog as VPSCatalog

    records = VPSCatalog.get("vps_sample_easy_seen")[:1]
    ref = frame_dicts("x255", records)
    rec = dict(records[0])
    gts = []
    for i, gt in enumerate(rec["gt_file_names"]):
        m = cv2.imread(gt, cv2.IMREAD_GRAYSCALE)
        path = str(tmp_path / f"m{i}.png")
        cv2.imwrite(path, (m > 128).astype(np.uint8))  # a 0/1 mask
        gts.append(path)
    gts[2] = None
    rec["gt_file_names"] = gts
    got = frame_dicts("x01", [rec])
    for i, (a, b) in enumerate(zip(ref, got)):
        la, lb = (np.asarray(Image.open(d["sem_seg_file_name"])) for d in (a, b))
        if i == 2:
            assert (lb == 255).all() and b["annotations"] == [] and lb.shape == la.shape
        else:
            assert np.array_equal(la, lb) and a["annotations"] == b["annotations"]
    mtimes = {d["sem_seg_file_name"]: os.stat(d["sem_seg_file_name"]).st_mtime_ns for d in got}
    again = frame_dicts("x01", [rec])
    assert again == got
    assert all(os.stat(p).st_mtime_ns == t for p, t in mtimes.items())  # not rewritten


def test_detectron2_loaders_and_mapper(d2_env):
    from detectron2.data import build_detection_test_loader, build_detection_train_loader
    from detectron2.structures import BitMasks

    cfg = _cfg("diff_vps_sample", "SOLVER.IMS_PER_BATCH", "2", "MODEL.MASK_ON", "True")
    cfg.INPUT.MIN_SIZE_TRAIN = (64,)
    batch = next(iter(build_detection_train_loader(cfg)))
    assert len(batch) == 2
    for x in batch:
        assert x["image"].shape[0] == 3 and x["image"].shape[1] == 64
        assert set(x["sem_seg"].unique().tolist()) <= {0, 1}
        inst = x["instances"]
        assert len(inst) <= 1 and len(inst.gt_masks) == len(inst)
        if len(inst):  # the polygons, transformed with the image, cover the label map
            h, w = x["image"].shape[1:]
            m = BitMasks.from_polygon_masks(inst.gt_masks, h, w).tensor[0]
            sem = x["sem_seg"] == 1
            assert (m & sem).sum() / (m | sem).sum() > 0.9
    first = next(iter(build_detection_test_loader(cfg, "vps_sample_easy_seen")))[0]
    assert first["image"].shape[1:] == (first["height"], first["width"])  # MIN_SIZE_TEST 0
    assert first["frame_index"] == 0 and "video_id" in first


def test_semseg_and_coco_evaluators_on_detectron2_loader(d2_env):
    """SemSegEvaluator's polyp IoU equals the pooled IoU of prob > 0.5 computed here from
    the same outputs and vps_d2's GT reading; COCOEvaluator scores an oracle at AP 100."""
    from detectron2.data import DatasetCatalog, build_detection_test_loader
    from detectron2.evaluation import (
        COCOEvaluator,
        DatasetEvaluator,
        DatasetEvaluators,
        SemSegEvaluator,
        inference_on_dataset,
    )
    from detectron2.modeling import build_model
    from detectron2.structures import Boxes, Instances
    from detectron2.structures.masks import polygons_to_bitmask

    from vps_d2.data.io import read_mask

    torch.manual_seed(0)
    cfg = _cfg("diff_vps_sample")
    name = "vps_sample_easy_seen"
    model = build_model(cfg).eval()
    pooled = {"tp": 0, "fp": 0, "fn": 0, "n": 0}

    class Pool(DatasetEvaluator):
        def process(self, inputs, outputs):
            for i, o in zip(inputs, outputs):
                pred = (o["prob"] > 0.5).numpy()
                gt = read_mask(i["gt_file_name"])
                pooled["tp"] += int((pred & gt).sum())
                pooled["fp"] += int((pred & ~gt).sum())
                pooled["fn"] += int((~pred & gt).sum())
                pooled["n"] += 1
                assert o["sem_seg"].shape == (2, *gt.shape)
                assert len(o["instances"]) == 1

    res = inference_on_dataset(
        model,
        build_detection_test_loader(cfg, name),
        DatasetEvaluators(
            [
                SemSegEvaluator(name, distributed=False),
                COCOEvaluator(name, distributed=False, output_dir=str(d2_env) + "/coco"),
                Pool(),
            ]
        ),
    )
    assert pooled["n"] == len(DatasetCatalog.get(name))
    tp, fp, fn = pooled["tp"], pooled["fp"], pooled["fn"]
    expected = 100.0 * tp / (tp + fp + fn) if tp + fp + fn else float("nan")
    assert res["sem_seg"]["IoU-polyp"] == pytest.approx(expected, abs=1e-9)
    ious = [res["sem_seg"]["IoU-background"], res["sem_seg"]["IoU-polyp"]]
    assert res["sem_seg"]["mIoU"] == pytest.approx(sum(ious) / 2, abs=1e-9)
    assert {"AP", "AP50"} <= res["bbox"].keys() and {"AP", "AP50"} <= res["segm"].keys()
    # an oracle (the GT as predictions) scores AP 100: our annotations are consistent
    coco = COCOEvaluator(name, distributed=False, output_dir=str(d2_env) + "/coco")
    coco.reset()
    for d in DatasetCatalog.get(name):
        inst = Instances((d["height"], d["width"]))
        anns = d["annotations"]
        inst.pred_boxes = Boxes(torch.tensor([a["bbox"] for a in anns]).view(-1, 4))
        inst.scores = torch.ones(len(anns))
        inst.pred_classes = torch.tensor([a["category_id"] for a in anns], dtype=torch.int64)
        masks = [polygons_to_bitmask(a["segmentation"], d["height"], d["width"]) for a in anns]
        inst.pred_masks = torch.as_tensor(np.array(masks)).view(-1, d["height"], d["width"])
        coco.process([d], [{"instances": inst}])
    oracle = coco.evaluate()
    assert oracle["bbox"]["AP"] == pytest.approx(100.0) and oracle["segm"]["AP"] > 99.0


# ------------------------------------------------------------------ outputs
def test_output_conventions_and_visualizers():
    from detectron2.data import MetadataCatalog
    from detectron2.utils.video_visualizer import VideoVisualizer
    from detectron2.utils.visualizer import Visualizer

    from vps_d2.d2.modeling import OutputOptions, to_d2_outputs

    prob = torch.zeros(40, 50)
    prob[5:10, 4:9] = 0.9  # two blobs
    prob[20:30, 30:45] = 0.7
    prob[0, 49] = 0.5  # exactly 0.5: background for argmax and for the threshold
    out = {
        "prob": prob,
        "class_scores": torch.tensor([0.1, 0.1, 0.6, 0.1, 0.05, 0.05]),
        "box": torch.tensor([0.5, 0.25, 0.2, 0.5]),  # cx, cy, w, h
        "box_score": torch.tensor(0.8),
    }
    res = to_d2_outputs(out)
    assert torch.equal(res["sem_seg"].argmax(0).bool(), prob > 0.5)
    inst = res["instances"]
    assert inst.image_size == (40, 50) and len(inst) == 1
    assert inst.pred_boxes.tensor.tolist() == [[20.0, 0.0, 30.0, 20.0]]
    assert inst.pred_classes.tolist() == [2] and inst.scores.tolist() == [pytest.approx(0.8)]
    assert torch.equal(inst.pred_masks[0], prob > 0.5)
    comp = to_d2_outputs(out, OutputOptions(instances="components"))["instances"]
    assert sorted(comp.pred_boxes.tensor.tolist()) == [[4, 5, 9, 10], [30, 20, 45, 30]]
    assert sorted(comp.scores.tolist()) == [pytest.approx(0.7), pytest.approx(0.9)]
    assert comp.pred_classes.tolist() == [2, 2]
    assert not to_d2_outputs(out, OutputOptions(instance_masks=False))["instances"].has(
        "pred_masks"
    )
    small = to_d2_outputs(out, OutputOptions(instances="components", min_area=30))["instances"]
    assert len(small) == 1
    no_cls = to_d2_outputs({"prob": prob})
    assert "instances" not in no_cls and no_cls["sem_seg"].shape == (2, 40, 50)
    assert not to_d2_outputs({"prob": prob}, OutputOptions(instances="components"))[
        "instances"
    ].has("pred_classes")
    with pytest.raises(ValueError, match="TEST.D2_OUTPUTS.INSTANCES"):
        OutputOptions(instances="boxes")
    md = MetadataCatalog.get("vps_sample_easy_seen")
    img = np.full((40, 50, 3), 128, np.uint8)
    for draw in (
        Visualizer(img, md).draw_sem_seg(res["sem_seg"].argmax(0)),
        Visualizer(img, md).draw_instance_predictions(inst),
        VideoVisualizer(md).draw_instance_predictions(img, inst),
        VideoVisualizer(md).draw_sem_seg(img, res["sem_seg"].argmax(0)),
    ):
        drawn = draw.get_image()
        assert drawn.shape == img.shape and (drawn != img).any()


# ------------------------------------------------------------------ predictor
def _weights(cfg, path):
    import vps_d2.d2 as vd2

    torch.manual_seed(0)
    torch.save({"model": vd2.build_model(cfg).state_dict()}, path)
    cfg.MODEL.WEIGHTS = path
    return cfg


def _video(name="vps_sample_easy_seen"):
    from vps_d2.data import DatasetCatalog as VPSCatalog
    from vps_d2.data.io import read_image

    rec = VPSCatalog.get(name)[0]
    return rec["video_id"], [read_image(f, "BGR") for f in rec["file_names"]]


@pytest.mark.parametrize("name", SAMPLE_CONFIGS)
def test_video_default_predictor_equals_video_predictor(d2_env, tmp_path, name):
    import vps_d2.d2 as vd2
    from vps_d2.engine import VideoPredictor

    opts = ["MODEL.PGN_AEN.STREAM_MODE", "sliding"] if name == "pgn_aen_sample" else []
    cfg = _weights(_cfg(name, *opts), str(tmp_path / "w.pth"))
    vid, frames = _video()
    pred = vd2.VideoDefaultPredictor(cfg)
    pred.reset(vid)  # Diff-VPS seeds its noise by (video_id, frame_index)
    ours = [pred(f) for f in frames[:5]]
    inputs = [
        {
            "image": torch.as_tensor(np.ascontiguousarray(f[:, :, ::-1].transpose(2, 0, 1))),
            "height": f.shape[0],
            "width": f.shape[1],
            "video_id": vid,
            "frame_index": i,
        }
        for i, f in enumerate(frames[:5])
    ]
    theirs = list(VideoPredictor(cfg)(inputs))
    assert len(theirs) == len(ours) == 5
    for a, b in zip(ours, theirs):
        assert torch.equal(a["prob"].cpu(), b["prob"]), name
        assert a["sem_seg"].shape == (2, *b["prob"].shape)
    # the state is per video: the same video again starts from a clean state
    pred.reset(vid)
    assert torch.equal(pred(frames[0])["prob"], ours[0]["prob"])
    with pytest.raises(ValueError, match="not the next frame"):
        pred(frames[1], frame_index=5)
    with pytest.raises(ValueError, match="share one size"):
        pred(np.zeros((32, 48, 3), np.uint8))
    pred(frames[0], video_id="another")  # another video: accepted, state reset
    assert pred.frame_index == 1


def test_video_default_predictor_refuses_clip_mode(d2_env):
    import vps_d2.d2 as vd2

    with pytest.raises(ValueError, match="MODEL.PGN_AEN.STREAM_MODE sliding"):
        vd2.VideoDefaultPredictor(_cfg("pgn_aen_sample"))


# ------------------------------------------------------------------ config
def _plain(a):
    if isinstance(a, dict):
        return {k: _plain(v) for k, v in a.items()}
    if isinstance(a, (list, tuple)):
        return [_plain(v) for v in a]
    return a


@pytest.mark.parametrize("config", ALL_CONFIGS, ids=lambda p: os.path.relpath(p, ROOT))
def test_plain_get_cfg_merges_every_config_after_import(config):
    from detectron2.config import get_cfg

    import vps_d2.d2 as vd2

    plain, ours = get_cfg(), vd2.get_cfg()
    plain.merge_from_file(config)
    ours.merge_from_file(config)
    assert _plain(plain) == _plain(ours)


@pytest.mark.parametrize("name", SAMPLE_CONFIGS)
def test_dump_round_trip(tmp_path, name):
    from detectron2.config import get_cfg

    import vps_d2.d2 as vd2
    from vps_d2.config import add_vps_config
    from vps_d2.config import get_cfg as vps_get_cfg

    vps = add_vps_config(vps_get_cfg())
    vps.merge_from_file(get_config_file(f"{name}.yaml"))
    d2 = vd2.get_cfg()
    d2.merge_from_file(get_config_file(f"{name}.yaml"))
    for i, dumped in enumerate((vps.dump(), d2.dump())):
        path = tmp_path / f"c{i}.yaml"
        path.write_text(dumped)
        for new in (vd2.get_cfg, get_cfg):
            back = new()
            back.merge_from_file(str(path))
            assert _plain(back) == _plain(d2), (i, new)


def test_build_model_after_import_in_a_fresh_process():
    code = (
        "import vps_d2.d2\n"
        "from detectron2.config import get_cfg\n"
        "from detectron2.modeling import build_model\n"
        "from vps_d2.model_zoo import get_config_file\n"
        "cfg = get_cfg(); cfg.merge_from_file(get_config_file('frame_baseline_sample.yaml'))\n"
        "m = build_model(cfg).eval()\n"
        "import torch\n"
        "o = m([{'image': torch.zeros(3, 40, 50, dtype=torch.uint8)}])[0]\n"
        "print(type(m).__name__, tuple(o['sem_seg'].shape))\n"
    )
    env = dict(os.environ, PYTHONPATH=ROOT)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.split() == ["FrameBaseline", "(2,", "40,", "50)"]


# ------------------------------------------------------------------ demo
def _write_video(path, frames):
    h, w = frames[0].shape[:2]
    out = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (w, h))
    for f in frames:
        out.write(f)
    out.release()


def test_detectron2_demo_renders_a_video(d2_env, tmp_path):
    d2_demo = importlib.import_module("vps_d2.cli.d2_demo")
    try:
        d2_demo.find_demo_dir()
    except FileNotFoundError:
        pytest.skip("Detectron2's demo/ folder not found (an installed wheel has none)")
    cfg = _weights(_cfg("diff_vps_sample"), str(tmp_path / "w.pth"))
    _, frames = _video()
    video = str(tmp_path / "case.mp4")
    _write_video(video, frames)
    out = tmp_path / "out"
    out.mkdir()
    p = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "tools", "d2_demo.py"),
            "--config-file",
            get_config_file("diff_vps_sample.yaml"),
            "--video-input",
            video,
            "--output",
            str(out),
            "--confidence-threshold",
            "0",
            "--opts",
            "MODEL.WEIGHTS",
            cfg.MODEL.WEIGHTS,
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=ROOT),
        timeout=600,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    (rendered,) = glob.glob(str(out / "case.*"))
    cap = cv2.VideoCapture(rendered)
    n = 0
    while True:
        ok, img = cap.read()
        if not ok:
            break
        n += 1
        assert img.shape == frames[0].shape
    assert n == len(frames)


def test_docs_snippets_run(d2_env, tmp_path, monkeypatch):
    """Every python block of docs/detectron2.md, in order, in one namespace."""
    import re

    text = open(os.path.join(ROOT, "docs", "detectron2.md"), encoding="utf-8").read()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    for i, block in enumerate(blocks):
        try:
            exec(compile(block, f"docs/detectron2.md block {i}", "exec"), namespace)
        except Exception as e:  # pragma: no cover - names the block that failed
            raise AssertionError(f"docs/detectron2.md python block {i} failed: {e!r}") from e
