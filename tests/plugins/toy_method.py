"""A complete vps_d2 method kept outside the package (docs/adding_a_method.md).

Import it with ``--plugin tests/plugins/toy_method.py`` (tools/train_net.py, demo.py,
evaluate.py) and every part below is registered, in the main process and in spawned DDP
processes alike:

* a config section ``MODEL.TOY`` and a second optimizer section ``SOLVER.DISCRIMINATOR``;
* a dataset needing nothing on disk (``toy_discs_train``): its mapper draws each clip;
* a meta-architecture ``ToyAdversarialSegmenter``: a tiny segmenter (the generator) and,
  with ``MODEL.TOY.ADVERSARIAL``, a discriminator telling ground-truth masks from predicted
  ones, trained by its own optimizer in an alternating step (``ToyAdversarialStep``);
  without it, the default step of the engine trains the segmenter alone.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from vps_d2.config import CfgNode as CN
from vps_d2.config import configurable, register_config_section
from vps_d2.data import DatasetCatalog, MetadataCatalog
from vps_d2.data.mappers import MAPPER_REGISTRY
from vps_d2.modeling import META_ARCH_REGISTRY, VideoMetaArch
from vps_d2.modeling.layers import ConvNormAct
from vps_d2.modeling.losses import adversarial_d_loss, adversarial_g_loss, bce_loss, dice_loss
from vps_d2.solver import add_optimizer_config
from vps_d2.solver.train_step import TRAIN_STEP_REGISTRY, TrainStep


# --------------------------------------------------------------------------- config
@register_config_section
def add_toy_config(cfg: CN) -> None:
    if "TOY" in cfg.MODEL:
        return
    cfg.MODEL.TOY = CN()
    # Channels of the segmenter's hidden layers.
    cfg.MODEL.TOY.CHANNELS = 8
    # Train a discriminator on (frame, mask) pairs and add its adversarial loss.
    cfg.MODEL.TOY.ADVERSARIAL = True
    # Weight of the generator's adversarial loss.
    cfg.MODEL.TOY.ADV_WEIGHT = 0.1
    # The discriminator's optimizer (same keys as SOLVER; MAX_ITER is shared).
    add_optimizer_config(
        cfg,
        "DISCRIMINATOR",
        OPTIMIZER="Adam",
        BASE_LR=1e-3,
        LR_SCHEDULER_NAME="WarmupConstantLR",
        WEIGHT_DECAY=0.0,
    )


# --------------------------------------------------------------------------- data
def _toy_records(n_videos: int = 4, length: int = 12) -> list[dict]:
    names = [f"toy://{v}/{i}" for v in range(n_videos) for i in range(length)]
    return [
        {
            "dataset_name": "toy_discs_train",
            "split": "train",
            "video_id": f"toy{v}",
            "length": length,
            "file_names": names[v * length : (v + 1) * length],
            "gt_file_names": names[v * length : (v + 1) * length],
            "class_id": v % 6,
        }
        for v in range(n_videos)
    ]


DatasetCatalog.register("toy_discs_train", _toy_records)
MetadataCatalog.get("toy_discs_train").set(evaluator_type="vps", split="train")


@MAPPER_REGISTRY.register()
class ToyDiscMapper:
    """Draws a clip of a bright disc moving over noise (the record names no real file)."""

    def __init__(self, cfg, is_train: bool = True) -> None:
        self.size = tuple(cfg.INPUT.SIZE_TRAIN)
        self.length = int(cfg.INPUT.CLIP.LENGTH)

    def __call__(self, record: dict, rng: np.random.Generator, ref: int) -> dict:
        h, w = self.size
        yy, xx = np.mgrid[:h, :w]
        cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
        r = rng.uniform(0.15, 0.3) * min(h, w)
        images, masks = [], []
        for t in range(self.length):
            mask = ((yy - cy - t) ** 2 + (xx - cx) ** 2 <= r * r).astype(np.float32)
            noise = rng.integers(0, 80, size=(3, h, w))
            images.append((noise + 150 * mask[None]).clip(0, 255).astype(np.uint8))
            masks.append(mask)
        return {
            "image": torch.from_numpy(np.stack(images)),  # T, 3, H, W
            "sem_seg": torch.from_numpy(np.stack(masks)),  # T, H, W
            "class_id": int(record["class_id"]),
            "boxes": torch.zeros(self.length, 4),
            "box_valid": torch.zeros(self.length, dtype=torch.bool),
            "frame_indices": [ref] * self.length,
            "video_id": record["video_id"],
        }


# --------------------------------------------------------------------------- model
class MaskDiscriminator(nn.Module):
    """(frame, mask) pairs (N, 4, H, W) -> realism logits (N,)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            ConvNormAct(4, channels, 3, 2, norm=""), ConvNormAct(channels, channels, 3, 2, norm="")
        )
        self.head = nn.Linear(channels, 1)

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(pairs).mean(dim=(2, 3)))[:, 0]


@META_ARCH_REGISTRY.register()
class ToyAdversarialSegmenter(VideoMetaArch):
    """Frame-wise segmenter (+ optional discriminator), online.

    Training forward modes: ``None``/"generator" -> the segmenter's losses (with the
    adversarial term when a discriminator exists); "discriminator" -> the discriminator's
    loss on ground-truth vs detached predicted masks.
    """

    @configurable
    def __init__(
        self,
        *,
        segmenter: nn.Module,
        discriminator: nn.Module | None,
        adv_weight: float,
        pixel_mean,
        pixel_std,
        test_size,
    ) -> None:
        super().__init__(pixel_mean=pixel_mean, pixel_std=pixel_std, test_size=test_size)
        self.segmenter = segmenter
        self.discriminator = discriminator
        self.adv_weight = float(adv_weight)
        # The training step this model needs: its own when adversarial, else the default.
        self.train_step = "ToyAdversarialStep" if discriminator is not None else "DefaultTrainStep"

    @classmethod
    def from_config(cls, cfg) -> dict:
        c = cfg.MODEL.TOY.CHANNELS
        segmenter = nn.Sequential(ConvNormAct(3, c), ConvNormAct(c, c), nn.Conv2d(c, 1, 1))
        disc = MaskDiscriminator(c) if cfg.MODEL.TOY.ADVERSARIAL else None
        return {
            "segmenter": segmenter,
            "discriminator": disc,
            "adv_weight": cfg.MODEL.TOY.ADV_WEIGHT,
            **cls.base_config(cfg),
        }

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        groups = {"main": list(self.segmenter.parameters())}
        if self.discriminator is not None:
            groups["discriminator"] = list(self.discriminator.parameters())
        return groups

    def forward(self, batched_inputs: list[dict], mode: str | None = None):
        if not self.training:
            return self.inference(batched_inputs)
        x = self.normalize(torch.cat([b["image"] for b in batched_inputs]))  # B*T, 3, H, W
        masks = torch.cat([b["sem_seg"] for b in batched_inputs]).to(self.device)[:, None]
        if mode == "discriminator":
            with torch.no_grad():
                fake = self.segmenter(x).sigmoid()
            real_logits = self.discriminator(torch.cat([x, masks], 1))
            fake_logits = self.discriminator(torch.cat([x, fake], 1))
            return {"loss_d": adversarial_d_loss(real_logits, fake_logits)}
        logits = self.segmenter(x)
        losses = {"loss_bce": bce_loss(logits, masks), "loss_dice": dice_loss(logits, masks)}
        if self.discriminator is not None:
            fake_logits = self.discriminator(torch.cat([x, logits.sigmoid()], 1))
            losses["loss_adv"] = self.adv_weight * adversarial_g_loss(fake_logits)
        return losses

    def step(self, frame: dict) -> dict:
        h, w = self.frame_size(frame)
        logits = self.segmenter(self.prepare_test_images(frame["image"][None]))
        return {"prob": self.logits_to_probs(logits, h, w)[0]}


@TRAIN_STEP_REGISTRY.register()
class ToyAdversarialStep(TrainStep):
    """Discriminator step on ground-truth vs detached predictions, then the generator step
    against the updated discriminator (each through the DDP-wrapped model's forward)."""

    def __call__(self, model, data, optim):
        d_losses = model(data, mode="discriminator")
        optim.minimize("discriminator", d_losses)
        g_losses = model(data, mode="generator")
        optim.minimize("main", g_losses)
        return {"main": g_losses, "discriminator": d_losses}
