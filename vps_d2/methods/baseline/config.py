"""Config section of the frame-wise baseline (MODEL.BASELINE)."""

from vps_d2.config import CfgNode as CN
from vps_d2.config import register_config_section


@register_config_section
def add_baseline_config(cfg: CN) -> None:
    if "BASELINE" in cfg.MODEL:
        return
    cfg.MODEL.BASELINE = CN()
    # Backbone levels fed to the FPN-style decoder, finest first.
    cfg.MODEL.BASELINE.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    # Channels of the decoder.
    cfg.MODEL.BASELINE.DECODER_CHANNELS = 64
    # Loss weights: BCE + Dice on the mask logits (upsampled to the input size).
    cfg.MODEL.BASELINE.BCE_WEIGHT = 1.0
    cfg.MODEL.BASELINE.DICE_WEIGHT = 1.0
