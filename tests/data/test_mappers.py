"""Clip augmentation consistency, boxes, the training mapper and the test frames."""

import itertools
import os

import cv2
import numpy as np
import pytest
import torch

from vps_d2.config import add_vps_config, get_cfg
from vps_d2.data.mappers import VideoClipDatasetMapper, VideoTestFrames
from vps_d2.data.transforms import ClipAugmentation, ClipAugParams, masks_to_boxes
from vps_d2.methods.sali.sampling import TripletClipSampler

BG, FG = (40, 90, 40), (220, 30, 30)  # RGB


def write_video(root, video_id, n=6, size=(60, 80), missing_gt=(), class_id=2):
    """Write n frames (a red square moving right on green, RGB) + masks; return the record.

    Frame i has the square at rows [10, 30) and columns [10 + 2i, 30 + 2i).
    """
    h, w = size
    d = os.path.join(str(root), video_id)
    os.makedirs(d, exist_ok=True)
    files, gts, names = [], [], []
    for i in range(n):
        img = np.empty((h, w, 3), np.uint8)
        img[:] = BG
        mask = np.zeros((h, w), np.uint8)
        img[10:30, 10 + 2 * i : 30 + 2 * i] = FG
        mask[10:30, 10 + 2 * i : 30 + 2 * i] = 255
        stem = f"{i:05d}"
        files.append(os.path.join(d, stem + ".png"))
        cv2.imwrite(files[-1], img[..., ::-1])  # cv2 writes BGR
        if i in missing_gt:
            gts.append(None)
        else:
            gts.append(os.path.join(d, stem + "_gt.png"))
            cv2.imwrite(gts[-1], mask)
        names.append(stem)
    return {
        "dataset_name": "tiny",
        "split": "train",
        "video_id": video_id,
        "length": n,
        "file_names": files,
        "gt_file_names": gts,
        "frame_names": names,
        "class_id": class_id,
        "class_name": "",
        "boxes": [None] * n,
    }


def _cfg(**aug):
    cfg = add_vps_config(get_cfg())
    cfg.INPUT.SIZE_TRAIN = (48, 64)
    cfg.INPUT.CLIP.LENGTH = 3
    cfg.INPUT.CLIP.MAX_SKIP = 2
    for k, v in aug.items():
        setattr(cfg.INPUT.AUG, k, v)
    return cfg


STRONG = dict(
    HFLIP_PROB=0.5,
    VFLIP_PROB=0.5,
    ROTATION=30.0,
    ROTATION_PROB=1.0,
    SCALE_RANGE=(0.7, 1.4),
    SCALE_PROB=1.0,
)


def test_identical_frames_stay_identical():
    aug = ClipAugmentation(_cfg(**STRONG))
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, size=(50, 70, 3), dtype=np.uint8)
    mask = (rng.random((50, 70)) > 0.5).astype(np.uint8)
    for seed in range(10):
        params = aug.get_params(np.random.default_rng(seed), 50, 70)
        frames, masks = aug.apply([frame.copy() for _ in range(4)], [mask] * 4, params)
        assert frames[0].shape == (48, 64, 3) and masks[0].shape == (48, 64)
        for f, m in zip(frames[1:], masks[1:]):
            np.testing.assert_array_equal(f, frames[0])
            np.testing.assert_array_equal(m, masks[0])


def test_parameters_drawn_once_per_clip_vary_between_clips():
    aug = ClipAugmentation(_cfg(**STRONG))
    params = {aug.get_params(np.random.default_rng(s), 50, 70) for s in range(20)}
    assert len(params) == 20
    assert {p.hflip for p in params} == {False, True}
    assert all(-30 <= p.angle <= 30 and 0.7 <= p.scale <= 1.4 for p in params)


@pytest.mark.parametrize("border", ["constant", "reflect"])
def test_mask_stays_aligned_with_the_square(border):
    no_jitter = dict(BRIGHTNESS=0.0, CONTRAST=0.0, SATURATION=0.0, HUE=0.0)
    aug = ClipAugmentation(_cfg(**STRONG, **no_jitter))
    aug.border_mode = border
    img = np.empty((60, 80, 3), np.uint8)
    img[:] = BG
    img[15:40, 20:50] = FG
    mask = np.zeros((60, 80), np.uint8)
    mask[15:40, 20:50] = 1
    for seed in range(15):
        params = aug.get_params(np.random.default_rng(seed), 60, 80)
        (out,), (m,) = aug.apply([img], [mask], params)
        assert set(np.unique(m)) <= {0, 1}
        # Bilinear image vs nearest mask: a mask pixel samples the square at least partly
        # (red well above the background's 40), a pixel outside the mask at most half
        # (red below the square's 220); a one-pixel shift would break both.
        red = out[..., 0].astype(int)
        assert m.sum() > 100
        assert red[m == 1].min() > 80
        assert red[m == 0].max() < 150


def test_flip_and_resize_match_numpy():
    aug = ClipAugmentation(_cfg(BRIGHTNESS=0.0, CONTRAST=0.0, SATURATION=0.0, HUE=0.0))
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8)  # already SIZE_TRAIN
    mask = (rng.random((48, 64)) > 0.5).astype(np.uint8)
    (f,), (m,) = aug.apply([frame], [mask], ClipAugParams(hflip=True, vflip=True))
    np.testing.assert_array_equal(f, frame[::-1, ::-1])
    np.testing.assert_array_equal(m, mask[::-1, ::-1])
    big = cv2.resize(frame, (128, 96), interpolation=cv2.INTER_NEAREST)
    (f,), _ = aug.apply([big], None, ClipAugParams())
    np.testing.assert_array_equal(f, cv2.resize(big, (64, 48), interpolation=cv2.INTER_LINEAR))


def test_rotation_by_180_equals_double_flip():
    aug = ClipAugmentation(_cfg())
    frame = np.random.default_rng(2).integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
    (rot,), _ = aug.apply([frame], None, ClipAugParams(angle=180.0))
    np.testing.assert_array_equal(rot, frame[::-1, ::-1])


def test_scale_up_crops_inside_the_frame():
    aug = ClipAugmentation(_cfg())
    frame = np.random.default_rng(4).integers(1, 256, size=(50, 70, 3), dtype=np.uint8)
    for sx, sy in itertools.product((-1.0, 1.0), repeat=2):
        params = ClipAugParams(scale=1.3, shift_x=sx, shift_y=sy)
        (f,), _ = aug.apply([frame], None, params)
        assert (f.max(axis=2) > 0).all()  # no border pixel: the crop stays inside
    # Scaling down leaves a black border, on the side opposite to the shift.
    (f,), _ = aug.apply([frame], None, ClipAugParams(scale=0.5, shift_x=1.0, shift_y=0.0))
    assert (f[:, :20] == 0).all() and (f[:, -5:] > 0).any()


def test_colour_jitter_images_only_and_channel_order():
    cfg = _cfg(**STRONG)
    aug = ClipAugmentation(cfg)
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
    mask = (rng.random((48, 64)) > 0.5).astype(np.uint8)
    geo = ClipAugParams(hflip=True, angle=10.0, scale=1.2, shift_x=0.3)
    jit = ClipAugParams(
        hflip=True,
        angle=10.0,
        scale=1.2,
        shift_x=0.3,
        brightness=1.2,
        contrast=0.8,
        saturation=1.3,
        hue=0.05,
    )
    (f0,), (m0,) = aug.apply([frame], [mask], geo)
    (f1,), (m1,) = aug.apply([frame], [mask], jit)
    np.testing.assert_array_equal(m0, m1)
    assert np.abs(f0.astype(int) - f1.astype(int)).mean() > 5
    # Brightness alone: x * b, rounded and clipped.
    (fb,), _ = aug.apply([frame], None, ClipAugParams(brightness=1.5))
    expect = np.clip(np.rint(frame.astype(np.float32) * 1.5), 0, 255)
    assert np.abs(fb.astype(int) - expect).max() <= 1
    # Half a turn of hue maps pure red to cyan.
    red = np.zeros((48, 64, 3), np.uint8)
    red[..., 0] = 255
    (cyan,), _ = aug.apply([red], None, ClipAugParams(hue=0.5))
    np.testing.assert_allclose(cyan[0, 0], [0, 255, 255], atol=1)
    # The same jitter in BGR is the channel-reversed RGB result.
    cfg.INPUT.FORMAT = "BGR"
    (fbgr,), _ = ClipAugmentation(cfg).apply([np.ascontiguousarray(frame[..., ::-1])], None, jit)
    assert np.abs(fbgr[..., ::-1].astype(int) - f1.astype(int)).max() <= 1


def test_masks_to_boxes_against_rectangle():
    masks = np.zeros((2, 60, 80), np.uint8)
    masks[0, 10:20, 20:40] = 1
    boxes, valid = masks_to_boxes(masks)
    np.testing.assert_allclose(boxes[0], [30 / 80, 15 / 60, 20 / 80, 10 / 60], rtol=1e-6)
    np.testing.assert_array_equal(valid, [True, False])
    np.testing.assert_array_equal(boxes[1], [0, 0, 0, 0])


def test_mapper_output_format(tmp_path):
    rec = write_video(tmp_path, "case1_1", n=8)
    mapper = VideoClipDatasetMapper(_cfg(**STRONG), is_train=True)
    out = mapper(rec, rng=np.random.default_rng(0))
    assert set(out) == {
        "image",
        "sem_seg",
        "class_id",
        "boxes",
        "box_valid",
        "frame_names",
        "frame_indices",
        "video_id",
    }
    assert out["image"].dtype == torch.uint8 and out["image"].shape == (3, 3, 48, 64)
    assert out["sem_seg"].dtype == torch.float32 and out["sem_seg"].shape == (3, 48, 64)
    assert set(out["sem_seg"].unique().tolist()) <= {0.0, 1.0}
    assert out["boxes"].shape == (3, 4) and out["box_valid"].dtype == torch.bool
    assert out["class_id"] == 2 and out["video_id"] == "case1_1"
    assert out["frame_names"] == [f"{i:05d}" for i in out["frame_indices"]]
    idx = out["frame_indices"]
    assert all(1 <= b - a <= 2 for a, b in zip(idx, idx[1:]))
    for t in range(3):
        box, ok = masks_to_boxes(out["sem_seg"][t : t + 1].numpy())
        assert bool(out["box_valid"][t]) == bool(ok[0])
        np.testing.assert_allclose(out["boxes"][t].numpy(), box[0])


def test_mapper_without_augmentation_gives_exact_frames_and_boxes(tmp_path):
    rec = write_video(tmp_path, "v", n=6)
    cfg = _cfg(ENABLED=False)
    cfg.INPUT.SIZE_TRAIN = (60, 80)  # original size: no resampling at all
    out = VideoClipDatasetMapper(cfg, is_train=True)(rec, rng=np.random.default_rng(0), ref=4)
    assert out["frame_indices"][-1] == 4  # online sampling: reference last
    for t, i in enumerate(out["frame_indices"]):
        img = out["image"][t].permute(1, 2, 0).numpy()
        assert tuple(img[20, 11 + 2 * i]) == FG and tuple(img[5, 5]) == BG  # RGB order
        expect = [(20 + 2 * i) / 80, 20 / 60, 20 / 80, 20 / 60]
        np.testing.assert_allclose(out["boxes"][t].numpy(), expect, rtol=1e-6)
        assert out["sem_seg"][t].sum() == 400


def test_mapper_is_deterministic_under_a_seed(tmp_path):
    rec = write_video(tmp_path, "v", n=10)
    mapper = VideoClipDatasetMapper(_cfg(**STRONG), is_train=True)
    a = mapper(rec, rng=np.random.default_rng(7))
    b = mapper(rec, rng=np.random.default_rng(7))
    assert a["frame_indices"] == b["frame_indices"]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["sem_seg"], b["sem_seg"])
    others = [mapper(rec, rng=np.random.default_rng(s))["image"] for s in range(8, 12)]
    assert not all(torch.equal(a["image"], o) for o in others)


def test_frames_without_gt_are_avoided_then_reported(tmp_path):
    rec = write_video(tmp_path, "v", n=10, missing_gt=(2, 3))
    mapper = VideoClipDatasetMapper(_cfg(), is_train=True)
    for s in range(30):
        out = mapper(rec, rng=np.random.default_rng(s))
        assert not {2, 3} & set(out["frame_indices"])
    # Every other frame unannotated: no clip of adjacent frames can be complete.
    rec = write_video(tmp_path, "case_bad", n=6, missing_gt=(0, 2, 4))
    cfg = _cfg()
    cfg.INPUT.CLIP.MAX_SKIP = 1
    with pytest.raises(ValueError, match="case_bad"):
        VideoClipDatasetMapper(cfg, is_train=True)(rec, rng=np.random.default_rng(0))


def test_mask_size_mismatch_names_the_files(tmp_path):
    rec = write_video(tmp_path, "v", n=3)
    cv2.imwrite(rec["gt_file_names"][1], np.zeros((10, 10), np.uint8))
    cfg = _cfg()
    cfg.INPUT.CLIP.LENGTH = 1
    mapper = VideoClipDatasetMapper(cfg, is_train=True)
    with pytest.raises(ValueError, match="00001_gt.png"):
        mapper(rec, rng=np.random.default_rng(0), ref=1)


def test_triplet_mapper_order(tmp_path):
    rec = write_video(tmp_path, "v", n=12)
    cfg = _cfg()
    cfg.INPUT.CLIP.SAMPLING = "triplet"
    cfg.MODEL.SALI.TRIPLET.NEIGHBOUR_OFFSET = 1
    mapper = VideoClipDatasetMapper(cfg, is_train=True)
    assert isinstance(mapper.clip_sampler, TripletClipSampler)
    out = mapper(rec, rng=np.random.default_rng(0), ref=6)
    memory, neighbour, current = out["frame_indices"]
    assert (neighbour, current) == (7, 6) and 1 <= memory <= 5


def test_test_frames_in_order_at_original_size(tmp_path):
    rec = write_video(tmp_path, "v", n=4, size=(37, 53), missing_gt=(0,))
    frames = list(VideoTestFrames(rec, "BGR"))
    assert [f["frame_index"] for f in frames] == [0, 1, 2, 3]
    for i, f in enumerate(frames):
        assert f["image"].dtype == torch.uint8 and f["image"].shape == (3, 37, 53)
        assert (f["height"], f["width"], f["video_length"]) == (37, 53, 4)
        assert f["file_name"] == rec["file_names"][i] and f["frame_name"] == f"{i:05d}"
        assert tuple(f["image"][:, 20, 11 + 2 * i].tolist()) == FG[::-1]  # BGR order
    assert frames[0]["gt_file_name"] is None and frames[1]["gt_file_name"].endswith("_gt.png")
