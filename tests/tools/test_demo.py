"""Video reading/writing, VideoPredictor and tools/demo.py on a synthetic video."""

from __future__ import annotations

import importlib.util
import logging
import os
import random
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn
from train_net_runner import ROOT

from vps_d2.checkpoint import VPSCheckpointer
from vps_d2.config import add_vps_config, configurable, get_cfg
from vps_d2.engine.predictor import VideoPredictor
from vps_d2.io import VideoReader, VideoWriter, readers, writers
from vps_d2.modeling import META_ARCH_REGISTRY, VideoMetaArch, build_model

N, H, W, FPS = 12, 64, 80, 7.0
BG = (90, 80, 180)  # BGR mucosa
SUN = "case_M_20181001100941_0U62372100109341_1_005_001-1_a2_ayy_image{}"


def _disk_x(i: int) -> int:
    return 14 + 5 * i


def _synthetic(i: int) -> np.ndarray:
    f = np.full((H, W, 3), BG, np.uint8)
    cv2.circle(f, (_disk_x(i), 32), 10, (255, 255, 255), -1)
    return f


def _read_video(path):
    cap = cv2.VideoCapture(path)
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return frames, fps


def _load_demo():
    return importlib.import_module("vps_d2.cli.demo")


class _DiskStub(VideoMetaArch):
    """prob = 1 where every channel is > 200 (the white disk), in the frame's own order."""

    @configurable
    def __init__(self, *, pixel_mean, pixel_std, test_size=(64, 64)) -> None:
        super().__init__(pixel_mean=pixel_mean, pixel_std=pixel_std, test_size=test_size)
        self.gain = nn.Parameter(torch.ones(()))

    @classmethod
    def from_config(cls, cfg):
        return cls.base_config(cfg)

    def step(self, frame):
        img = frame["image"].to(self.device)
        return {"prob": (img.min(0).values > 200).float() * self.gain}


class _ClipStub(_DiskStub):
    """A clip model: answers frame t only after seeing frame t + 2 (bounded window)."""

    online = False
    window = 3

    @torch.no_grad()
    def stream(self, frames):
        buf = []
        for f in frames:
            buf.append(f)
            self.max_buffer = max(getattr(self, "max_buffer", 0), len(buf))
            if len(buf) == self.window:
                yield self.step(buf.pop(0))
        for f in buf:
            yield self.step(f)


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    d = tmp_path_factory.mktemp("demo")
    video = str(d / "in.mp4")
    w = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"mp4v"), FPS, (W, H))
    for i in range(N):
        w.write(_synthetic(i))
    w.release()
    # SUN-named frame folder: image1..image12, lexical order (image1, image10, ...) is wrong
    frames = d / "Frame" / "case3_1"
    gts = d / "GT" / "case3_1"
    frames.mkdir(parents=True)
    gts.mkdir(parents=True)
    for i in range(N):
        stem = SUN.format(i + 1)
        cv2.imwrite(str(frames / f"{stem}.jpg"), _synthetic(i))
        gt = np.zeros((H, W), np.uint8)
        cv2.circle(gt, (_disk_x(i), 32), 10, 255, -1)
        cv2.imwrite(str(gts / f"{stem}.png"), gt)
    (frames / ".DS_Store").write_bytes(b"junk")
    # weights: the stub, and the real FrameBaseline + SmallCNN
    META_ARCH_REGISTRY.register(_DiskStub)
    META_ARCH_REGISTRY.register(_ClipStub)
    opts = ["MODEL.DEVICE", "cpu", "INPUT.SIZE_TEST", "(64, 64)"]
    cfg = get_cfg()
    add_vps_config(cfg)
    cfg.merge_from_list(opts + ["MODEL.META_ARCHITECTURE", "_DiskStub"])
    VPSCheckpointer(build_model(cfg), str(d / "stub")).save("model_final")
    cfg = get_cfg()
    add_vps_config(cfg)
    base_opts = opts + [
        "MODEL.BACKBONE.NAME",
        "SmallCNN",
        "MODEL.BACKBONE.SMALL_CNN_CHANNELS",
        "[8, 8, 8, 8]",
        "MODEL.FRAME_BASELINE.DECODER_CHANNELS",
        "8",
    ]
    cfg.merge_from_list(base_opts)
    VPSCheckpointer(build_model(cfg), str(d / "baseline")).save("model_final")
    yield {
        "dir": d,
        "video": video,
        "frames": str(frames),
        "gt": str(gts),
        "stub_opts": opts
        + [
            "MODEL.META_ARCHITECTURE",
            "_DiskStub",
            "MODEL.WEIGHTS",
            str(d / "stub" / "model_final.pth"),
        ],
        "baseline_opts": base_opts + ["MODEL.WEIGHTS", str(d / "baseline" / "model_final.pth")],
    }
    for name in ("_DiskStub", "_ClipStub"):
        META_ARCH_REGISTRY._obj_map.pop(name, None)


@pytest.fixture(scope="module")
def demo():
    return _load_demo()


# ---------------------------------------------------------------------------- reading
def test_reader_video_file(assets):
    r = VideoReader(assets["video"], format="RGB")
    assert (r.kind, r.num_frames, r.fps, r.width, r.height) == ("video", N, FPS, W, H)
    frames = list(r)
    assert [f["frame_index"] for f in frames] == list(range(N))
    f = frames[3]
    assert f["image"].dtype == torch.uint8 and tuple(f["image"].shape) == (3, H, W)
    assert f["video_length"] == N and f["frame_name"] == "000003"
    bg_rgb = f["image"][:, 5, 5].int()
    assert abs(int(bg_rgb[0]) - BG[2]) < 15 and abs(int(bg_rgb[2]) - BG[0]) < 15  # RGB order
    bgr = next(iter(VideoReader(assets["video"], format="BGR")))["image"][:, 5, 5].int()
    assert abs(int(bgr[0]) - BG[0]) < 15
    # the disk moves right: brightest column follows it
    xs = [int(fr["image"].float().mean(0)[32].argmax()) for fr in frames]
    assert all(abs(x - _disk_x(i)) <= 8 for i, x in enumerate(xs))
    assert len(list(VideoReader(assets["video"], max_frames=5))) == 5


def test_reader_sun_frame_order_and_gt(assets):
    truth = [SUN.format(i + 1) for i in range(N)]
    assert sorted(truth) != truth  # lexical order is wrong for these stems
    r = VideoReader(assets["frames"], gt_dir=assets["gt"])
    frames = list(r)
    assert [f["frame_name"] for f in frames] == truth
    assert r.video_id == "case3_1" and r.fps == readers.DEFAULT_FPS
    assert [os.path.basename(f["gt_file_name"]) for f in frames] == [t + ".png" for t in truth]
    xs = [int(fr["image"].float().mean(0)[32].argmax()) for fr in frames]
    assert all(abs(x - _disk_x(i)) <= 8 for i, x in enumerate(xs))
    # a glob and a shuffled list of files come out in the same order
    glob_names = [f["frame_name"] for f in VideoReader(os.path.join(assets["frames"], "*.jpg"))]
    shuffled = [os.path.join(assets["frames"], t + ".jpg") for t in truth]
    random.Random(0).shuffle(shuffled)
    assert glob_names == truth
    assert [f["frame_name"] for f in VideoReader(shuffled)] == truth


def test_reader_errors(assets, tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        VideoReader(str(empty))
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"this is not a video file\n" * 160)  # random bytes may decode
    with pytest.raises(ValueError, match="garbage.mp4"):
        VideoReader(str(garbage))
    with pytest.raises(FileNotFoundError, match="nope"):
        VideoReader(str(tmp_path / "nope.mp4"))
    (tmp_path / "nothing").mkdir()
    with pytest.raises(ValueError, match="No image files"):
        VideoReader(str(tmp_path / "nothing"))
    with pytest.raises(ValueError, match="matches no image"):
        VideoReader(str(tmp_path / "*.jpg"))
    with pytest.raises(FileNotFoundError, match="Ground-truth"):
        VideoReader(assets["video"], gt_dir=str(tmp_path / "nogt"))


# ---------------------------------------------------------------------------- writing
def _write(path, n=3, **kw):
    with VideoWriter(str(path), fps=5.0, frame_size=(W, H), **kw) as w:
        for i in range(n):
            w.write(_synthetic(i))
    return w


def test_writer_roundtrip_and_no_leftovers(tmp_path):
    w = _write(tmp_path / "a.mp4")
    frames, fps = _read_video(w.path)
    assert w.path == str(tmp_path / "a.mp4") and len(frames) == 3 and fps == 5.0
    with pytest.raises(ValueError, match="shape"):
        with VideoWriter(str(tmp_path / "b.mp4"), fps=5.0, frame_size=(W, H)) as w2:
            w2.write(_synthetic(0))
            w2.write(np.zeros((H, W + 1, 3), np.uint8))
    assert sorted(os.listdir(tmp_path)) == ["a.mp4"]  # no partial b.mp4, no temp file


class _SilentWriter:
    """Opens fine but writes nothing: the failure isOpened() alone does not catch."""

    def isOpened(self):
        return True

    def write(self, frame):
        pass

    def release(self):
        pass


class _ClosedWriter(_SilentWriter):
    def isOpened(self):
        return False


@pytest.mark.parametrize("broken", [_SilentWriter, _ClosedWriter])
def test_writer_codec_fallback_really_fires(tmp_path, monkeypatch, caplog, broken):
    real = writers._create_cv_writer

    def fake(path, fourcc, fps, size):
        return broken() if fourcc == "mp4v" else real(path, fourcc, fps, size)

    monkeypatch.setattr(writers, "_create_cv_writer", fake)
    with caplog.at_level(logging.WARNING, logger="vps_d2.io.writers"):
        w = _write(tmp_path / "out.mp4", n=4)
    assert w.path == str(tmp_path / "out.avi") and w.fourcc == "MJPG"
    assert "fallback" in caplog.text and "mp4v" in caplog.text
    assert sorted(os.listdir(tmp_path)) == ["out.avi"]
    assert len(_read_video(w.path)[0]) == 4

    monkeypatch.setattr(writers, "_create_cv_writer", lambda *a: broken())
    with pytest.raises(RuntimeError, match="No video codec works"):
        _write(tmp_path / "none.mp4")
    assert sorted(os.listdir(tmp_path)) == ["out.avi"]


def test_writer_unwritable_locations(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="parent is a file"):
        VideoWriter(str(tmp_path / "file" / "o.mp4"), fps=5.0, frame_size=(W, H))
    with pytest.raises(IsADirectoryError):
        VideoWriter(str(tmp_path), fps=5.0, frame_size=(W, H))
    with pytest.raises(ValueError, match="fps"):
        VideoWriter(str(tmp_path / "o.mp4"), fps=0.0, frame_size=(W, H))
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(PermissionError, match="not writable"):
            VideoWriter(str(locked / "o.mp4"), fps=5.0, frame_size=(W, H))


# ---------------------------------------------------------------------------- predictor
def _cfg(opts):
    cfg = get_cfg()
    add_vps_config(cfg)
    cfg.merge_from_list(opts)
    return cfg


def test_predictor_pairs_frames_and_bounds_memory(assets):
    cfg = _cfg(assets["stub_opts"])
    cfg.MODEL.META_ARCHITECTURE = "_ClipStub"
    pred = VideoPredictor(cfg)
    pulled = []

    def frames():  # a long video, generated lazily
        for i in range(200):
            pulled.append(i)
            img = _synthetic(i % N)
            yield {
                "image": torch.from_numpy(img.transpose(2, 0, 1).copy()),
                "height": H,
                "width": W,
                "frame_index": i,
            }

    for k, out in enumerate(pred(frames())):
        assert out["frame_index"] == k
        assert len(pulled) - k <= _ClipStub.window  # never more than the window ahead
        mask = out["prob"] > 0.5
        assert abs(int(mask.float().mean(0).argmax()) - _disk_x(k % N)) <= 10
        assert out["latency_ms"] >= 0
    assert k == 199 and pred.latency.count == 200 and pred.model.max_buffer == 3
    missing = _cfg(assets["stub_opts"] + ["MODEL.WEIGHTS", "/no/such/model.pth"])
    with pytest.raises(FileNotFoundError, match="/no/such/model.pth"):
        VideoPredictor(missing)


# ---------------------------------------------------------------------------- demo
def test_demo_video_overlay(assets, demo, tmp_path):
    out = tmp_path / "o" / "demo.mp4"
    rc = demo.main(
        ["--video-input", assets["video"], "--output", str(out), "--opts", *assets["stub_opts"]]
    )
    assert rc == 0
    frames, fps = _read_video(str(out))
    assert len(frames) == N and fps == FPS and frames[0].shape == (H, W, 3)
    for i, f in enumerate(frames):
        f = f.astype(int)
        centre, far = f[32, _disk_x(i)], f[56, (_disk_x(i) + 40) % W]
        assert centre[2] < 200 and centre[0] > 200  # white disk tinted cyan (R drops)
        assert abs(far - np.array(BG)).max() < 30  # background left as it was
    sheet = cv2.imread(str(tmp_path / "o" / "demo_contact_sheet.png"))
    assert sheet is not None and sheet.shape[0] > H
    assert sorted(os.listdir(tmp_path / "o")) == ["demo.mp4", "demo_contact_sheet.png"]


def test_demo_frames_with_gt_to_folder(assets, demo, tmp_path):
    out = tmp_path / "frames_out"
    sheet = tmp_path / "sheet.png"
    rc = demo.main(
        [
            "--input",
            assets["frames"],
            "--gt",
            assets["gt"],
            "--output",
            str(out),
            "--overlay",
            "contour",
            "--max-frames",
            "5",
            "--contact-sheet",
            str(sheet),
            "--opts",
            *assets["stub_opts"],
        ]
    )
    assert rc == 0
    names = sorted(os.listdir(out))
    assert names == sorted(SUN.format(i + 1) + ".jpg" for i in range(5))
    img = cv2.imread(str(out / (SUN.format(3) + ".jpg"))).astype(int)
    assert img.shape == (H, 2 * W, 3)  # prediction | ground truth
    gt_side = img[:, W:]
    edge = gt_side[32, _disk_x(2) - 10 : _disk_x(2) - 7]
    assert (edge[:, 1] - edge[:, 2]).max() > 40  # a green contour on the GT side
    assert cv2.imread(str(sheet)).shape[1] > 2 * W


@pytest.mark.parametrize("case", ["garbage", "empty", "weights", "parent_is_file", "image_out"])
def test_demo_errors(assets, demo, tmp_path, capsys, case):
    video, out = assets["video"], tmp_path / "out" / "o.mp4"
    opts = list(assets["stub_opts"])
    expect = {
        "garbage": "garbage.mp4",
        "empty": "empty",
        "weights": "missing.pth",
        "parent_is_file": "parent is a file",
        "image_out": "image file",
    }[case]
    if case == "garbage":
        video = tmp_path / "garbage.mp4"
        video.write_bytes(b"this is not a video file\n" * 80)  # random bytes may decode
    elif case == "empty":
        video = tmp_path / "empty.mp4"
        video.write_bytes(b"")
    elif case == "weights":
        opts += ["MODEL.WEIGHTS", str(tmp_path / "missing.pth")]
    elif case == "parent_is_file":
        (tmp_path / "out").write_text("x")
    else:
        out = tmp_path / "o.png"
    rc = demo.main(["--video-input", str(video), "--output", str(out), "--opts", *opts])
    assert rc == 1
    assert expect in capsys.readouterr().err
    left = [p for p in os.listdir(tmp_path) if p not in ("garbage.mp4", "empty.mp4", "out")]
    assert left == [] and not out.exists()
    if (tmp_path / "out").is_dir():
        assert os.listdir(tmp_path / "out") == []


@pytest.mark.skipif(os.path.exists("/dev/video0"), reason="a camera is present")
def test_demo_webcam_without_camera(assets, demo, tmp_path, capsys):
    rc = demo.main(
        ["--webcam", "--output", str(tmp_path / "w.mp4"), "--opts", *assets["stub_opts"]]
    )
    assert rc == 1 and "camera" in capsys.readouterr().err
    assert not (tmp_path / "w.mp4").exists()


def test_demo_script_runs_frame_baseline(assets, tmp_path):
    out = tmp_path / "baseline.avi"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        os.path.join(ROOT, "tools", "demo.py"),
        "--video-input",
        assets["video"],
        "--output",
        str(out),
        "--max-frames",
        "5",
        "--opts",
        *assets["baseline_opts"],
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    frames, fps = _read_video(str(out))
    assert len(frames) == 5 and fps == FPS and frames[0].shape == (H, W, 3)


# ------------------------------------------------------- GT matching (issue 23, item 5)
def test_video_with_sun_gt_folder_matches_by_order(assets):
    """A video beside its SUN-SEG case's GT folder (masks named ..._image1 ... image12, not
    by 0-based frame index): matched by order; before, frame 0 had none and frame i the
    mask of frame i - 1."""
    r = VideoReader(assets["video"], gt_dir=assets["gt"])
    assert r.gt_matching == "order" and "by order" in r.describe_gt_matching()
    got = [os.path.basename(f["gt_file_name"]) for f in r]
    assert got == [SUN.format(i + 1) + ".png" for i in range(N)]  # SUN order, not lexical


def test_gt_matching_by_number_and_by_name(assets, tmp_path):
    gt = tmp_path / "gt0"
    gt.mkdir()
    for i in range(3):  # masks numbered by the 0-based frame index
        cv2.imwrite(str(gt / f"mask_{i:04d}.png"), np.zeros((H, W), np.uint8))
    r = VideoReader(assets["video"], gt_dir=str(gt))
    assert r.gt_matching == "number"
    got = [f["gt_file_name"] for f in r]
    assert [os.path.basename(p) for p in got[:3]] == [f"mask_{i:04d}.png" for i in range(3)]
    assert got[3:] == [None] * (N - 3)
    assert VideoReader(assets["frames"], gt_dir=assets["gt"]).gt_matching == "name"
    # frames whose names the masks do not share: by order too
    assert VideoReader(assets["frames"], gt_dir=str(gt)).gt_matching == "order"


def test_demo_warns_when_frames_lack_a_mask(assets, demo, tmp_path, caplog):
    gt = tmp_path / "few"
    gt.mkdir()
    for i in range(2):
        cv2.imwrite(str(gt / f"{i:06d}.png"), np.zeros((H, W), np.uint8))
    out = tmp_path / "o.mp4"
    argv = ["--video-input", assets["video"], "--gt", str(gt), "--output", str(out)]
    with caplog.at_level(logging.INFO):
        assert demo.main([*argv, "--opts", *assets["stub_opts"]]) == 0
    text = caplog.text
    assert f"2 of the {N} frames have a mask (matched by the number" in text
    assert "(+ GT side by side, matched by the number" in text


def test_demo_contact_sheet_tiles_name_case_frame_and_dice(assets, demo, tmp_path, monkeypatch):
    """Issue 23, item 10: the contact sheet's panels were unlabelled."""
    from vps_d2.visualization import ContactSheet

    labels = {}
    real = ContactSheet.add

    def add(self, index, image, label=None):
        if self.wants(index):
            labels[index] = label
        return real(self, index, image, label=label)

    monkeypatch.setattr(ContactSheet, "add", add)
    argv = ["--input", assets["frames"], "--gt", assets["gt"], "--output", str(tmp_path / "o")]
    assert demo.main([*argv, "--opts", *assets["stub_opts"]]) == 0
    assert labels and all(v.startswith(f"case3_1 #{k}  Dice ") for k, v in labels.items())
    # the stub finds the white disk the GT draws: Dice close to 1, computed per frame
    assert all(float(v.split("Dice ")[1]) > 0.7 for v in labels.values()), labels
    gt = np.zeros((4, 4), bool)
    gt[:2] = True
    prob = np.zeros((4, 4), np.float32)
    prob[:1] = 0.9
    assert demo.frame_dice(prob, gt) == pytest.approx(2 * 4 / (4 + 8))
    assert demo.frame_dice(np.zeros((2, 2)), np.zeros((4, 4), bool)) == 1.0
