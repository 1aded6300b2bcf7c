"""FrameBaseline: backbone + light FPN decoder + 1-channel head, frame by frame.

The image-only ablation every VPS paper compares against (no temporal information),
and the engine's first real model. Loss (:class:`FrameBaselineCriterion`): BCE + Dice on
every frame of the clip, weighted by MODEL.FRAME_BASELINE.LOSS.{BCE,DICE}_WEIGHT. Clips:
any length and sampler (the default clip contract: frame-wise, 1 frame and "online").
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from vps_d2.config import configurable
from vps_d2.modeling.backbone import Backbone, build_backbone
from vps_d2.modeling.criterion import Criterion
from vps_d2.modeling.fpn_decoder import LightFPNDecoder
from vps_d2.modeling.losses import bce_loss, dice_loss
from vps_d2.modeling.meta_arch import META_ARCH_REGISTRY, VideoMetaArch

__all__ = ["FrameBaseline", "FrameBaselineCriterion"]


class FrameBaselineCriterion(Criterion):
    """Unweighted ``loss_bce`` and ``loss_dice`` of mask logits (N, 1, H, W) against masks
    (N, H, W); weights (``weight_dict``) from MODEL.FRAME_BASELINE.LOSS.<NAME>_WEIGHT."""

    @classmethod
    def from_config(cls, cfg) -> FrameBaselineCriterion:
        loss = cfg.MODEL.FRAME_BASELINE.LOSS
        return cls({"loss_bce": loss.BCE_WEIGHT, "loss_dice": loss.DICE_WEIGHT})

    def forward(self, logits: torch.Tensor, masks: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        if self.is_active("loss_bce"):
            out["loss_bce"] = bce_loss(logits, masks)
        if self.is_active("loss_dice"):
            out["loss_dice"] = dice_loss(logits, masks)
        return out


@META_ARCH_REGISTRY.register()
class FrameBaseline(VideoMetaArch):
    online = True
    config_sections = ("FRAME_BASELINE",)

    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        in_features: list[str],
        decoder_channels: int = 64,
        criterion: Criterion | None = None,
        pixel_mean,
        pixel_std,
        test_size=(352, 352),
    ) -> None:
        super().__init__(pixel_mean=pixel_mean, pixel_std=pixel_std, test_size=test_size)
        self.backbone = backbone
        shapes = backbone.output_shape()
        missing = [f for f in in_features if f not in shapes]
        if missing:
            raise KeyError(
                f"MODEL.FRAME_BASELINE.IN_FEATURES {missing} not produced by the backbone "
                f"(it gives {list(shapes)})"
            )
        self.in_features = list(in_features)
        self.decoder = LightFPNDecoder([shapes[f].channels for f in in_features], decoder_channels)
        self.predictor = nn.Conv2d(decoder_channels, 1, 1)
        self.criterion = criterion or FrameBaselineCriterion({"loss_bce": 1.0, "loss_dice": 1.0})

    @classmethod
    def from_config(cls, cfg) -> dict:
        b = cfg.MODEL.FRAME_BASELINE
        return {
            "backbone": build_backbone(cfg, out_features=list(b.IN_FEATURES)),
            "in_features": list(b.IN_FEATURES),
            "decoder_channels": b.DECODER_CHANNELS,
            "criterion": FrameBaselineCriterion.from_config(cfg),
            **cls.base_config(cfg),
        }

    def predict_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images (N, 3, H, W) -> mask logits (N, 1, H, W)."""
        feats = self.backbone(x)
        y = self.predictor(self.decoder([feats[f] for f in self.in_features]))
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)

    def losses(self, batched_inputs: list[dict]) -> dict[str, torch.Tensor]:
        images = torch.cat([b["image"] for b in batched_inputs])  # B*T, 3, H, W
        masks = torch.cat([b["sem_seg"] for b in batched_inputs]).to(self.device)  # B*T, H, W
        logits = self.predict_logits(self.normalize(images))
        return self.criterion.apply_weights(self.criterion(logits, masks))

    def step(self, frame: dict) -> dict:
        image = frame["image"]
        h, w = int(frame.get("height", image.shape[-2])), int(frame.get("width", image.shape[-1]))
        logits = self.predict_logits(self.prepare_test_images(image[None]))
        return {"prob": self.logits_to_probs(logits, h, w)[0]}
