"""Offline measures of a synthetic dataset (no download, ever).

* :func:`mask_fidelity`: a frozen vps_d2 segmenter streams every synthetic video (its own
  test path, ``model.stream``); the Dice of its prediction (probability > 0.5) against the
  conditioning mask, averaged over the frames whose mask is not empty (``mask_fidelity_dice``);
  the same on the real frames (``real_dice``) for scale;
* :func:`frechet_distance` of Gaussian fits of image features, with features from
  :class:`RandomConvFeatures` (a fixed 4-level conv net, random weights from seed 0: the
  mean-pooled ReLU maps of each level, 32 + 64 + 128 + 256 = 480 dimensions, images resized
  to 128 x 128; "rFD"), from the segmenter's backbone (the mean-pooled outputs of its
  ``backbone``, when it has one) and, only when a local file with torchvision's Inception-v3
  ImageNet weights is given, Inception pool features (2048-d, 299 x 299: FID). Each distance
  comes with the same distance between two halves of the real frames (videos split
  alternately) as its scale;
* :func:`temporal_difference`: mean absolute difference (0-255) of consecutive frames of a
  video, at 64 x 64, averaged over every consecutive pair: synthetic vs real.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import cv2
import numpy as np
import scipy.linalg
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from vps_d2.data.io import read_image, read_mask

__all__ = [
    "RandomConvFeatures",
    "frechet_distance",
    "inception_features",
    "mask_fidelity",
    "segmenter_backbone_features",
    "temporal_difference",
]

logger = logging.getLogger(__name__)


def _frames(video: dict, key: str, image_format: str = "RGB") -> Iterator[dict]:
    for i, path in enumerate(video[key]):
        img = read_image(path, image_format)
        yield {
            "image": torch.from_numpy(img).permute(2, 0, 1).contiguous(),
            "height": img.shape[0],
            "width": img.shape[1],
            "video_id": video["video_id"],
            "frame_index": i,
        }


def _dice(pred: np.ndarray, gt: np.ndarray) -> float:
    inter = float(np.logical_and(pred, gt).sum())
    return 2 * inter / (float(pred.sum()) + float(gt.sum()))


@torch.no_grad()
def mask_fidelity(
    segmenter: torch.nn.Module, videos: list[dict], key: str, image_format: str = "RGB"
) -> dict:
    """Mean Dice (threshold 0.5) of ``segmenter`` on the frames ``video[key]`` against
    ``video["gt_file_names"]``, over frames with a non-empty mask: ``{"dice", "frames"}``."""
    segmenter.eval()
    scores = []
    for video in videos:
        outs = segmenter.stream(_frames(video, key, image_format))
        for out, gt_path in zip(outs, video["gt_file_names"]):
            gt = read_mask(gt_path)
            if gt.any():
                scores.append(_dice(out["prob"].numpy() > 0.5, gt))
    return {"dice": float(np.mean(scores)) if scores else float("nan"), "frames": len(scores)}


class RandomConvFeatures(nn.Module):
    """Images (N, 3, H, W) in [0, 1] -> (N, 480): four stride-2 conv3x3 + ReLU levels (32,
    64, 128, 256 channels), random weights from ``torch.Generator`` seed ``seed`` (Kaiming
    normal, zero bias), each level mean-pooled. Fixed by the seed alone: no download."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        chans = [3, 32, 64, 128, 256]
        self.convs = nn.ModuleList(
            nn.Conv2d(a, b, 3, stride=2, padding=1) for a, b in zip(chans, chans[1:])
        )
        for c in self.convs:
            fan_in = c.in_channels * 9
            c.weight.data = torch.randn(c.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5
            c.bias.data.zero_()

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - 0.5) / 0.25
        feats = []
        for c in self.convs:
            x = F.relu(c(x))
            feats.append(x.mean(dim=(2, 3)))
        return torch.cat(feats, dim=1)


def _load_batches(paths: list[str], size: tuple[int, int], batch: int = 32):
    for i in range(0, len(paths), batch):
        imgs = [
            cv2.resize(read_image(p, "RGB"), size[::-1], interpolation=cv2.INTER_AREA)
            for p in paths[i : i + batch]
        ]
        yield torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255.0


def _features(fn: Callable, paths: list[str], size: tuple[int, int]) -> np.ndarray:
    return np.concatenate([fn(b).double().numpy() for b in _load_batches(paths, size)])


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance of Gaussian fits of features a (N, D) and b (M, D):
    ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))``."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s_a @ s_b)
    covmean = np.real(covmean)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a + s_b - 2 * covmean))


def segmenter_backbone_features(segmenter: torch.nn.Module) -> Callable | None:
    """Images (N, 3, H, W) in [0, 1] -> the mean-pooled outputs of ``segmenter.backbone``
    concatenated (its normalisation and test size), or None without a backbone."""
    backbone = getattr(segmenter, "backbone", None)
    if backbone is None:
        return None

    @torch.no_grad()
    def fn(x: torch.Tensor) -> torch.Tensor:
        feats = backbone(segmenter.prepare_test_images(x * 255.0))
        return torch.cat([f.float().mean(dim=(2, 3)).cpu() for _, f in sorted(feats.items())], 1)

    return fn


def inception_features(weights: str) -> Callable:
    """Images in [0, 1] -> Inception-v3 pool features (2048-d) with torchvision's ImageNet
    weights read from the local file ``weights`` (nothing is downloaded)."""

    net = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    net.fc = nn.Identity()
    net.eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    @torch.no_grad()
    def fn(x: torch.Tensor) -> torch.Tensor:
        return net((x - mean) / std)

    return fn


def distances(
    synthetic: list[str], real_videos: list[list[str]], extractors: dict[str, tuple]
) -> dict:
    """For each ``name: (fn, size)``: ``fd_<name>`` (synthetic vs every real frame) and
    ``fd_<name>_real_halves`` (real frames of even vs odd videos), as floats."""
    real = [p for v in real_videos for p in v]
    half_a = [p for i, v in enumerate(real_videos) if i % 2 == 0 for p in v]
    half_b = [p for i, v in enumerate(real_videos) if i % 2 == 1 for p in v]
    out = {}
    for name, (fn, size) in extractors.items():
        f_real = _features(fn, real, size)
        out[f"fd_{name}"] = frechet_distance(_features(fn, synthetic, size), f_real)
        if half_a and half_b:
            fa, fb = _features(fn, half_a, size), _features(fn, half_b, size)
            out[f"fd_{name}_real_halves"] = frechet_distance(fa, fb)
    return out


def temporal_difference(videos: list[list[str]], size: int = 64) -> float:
    """Mean |frame_t - frame_(t-1)| (0-255, frames resized to size x size), over every
    consecutive pair of every video."""
    diffs = []
    for paths in videos:
        prev = None
        for p in paths:
            img = cv2.resize(read_image(p, "RGB"), (size, size), interpolation=cv2.INTER_AREA)
            img = img.astype(np.float32)
            if prev is not None:
                diffs.append(float(np.abs(img - prev).mean()))
            prev = img
    return float(np.mean(diffs)) if diffs else float("nan")
