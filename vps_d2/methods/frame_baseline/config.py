"""Config section of the frame-wise baseline (MODEL.FRAME_BASELINE)."""

from vps_d2.config import CfgNode as CN
from vps_d2.config import register_config_section, register_renamed_key

# Earlier names of this section and its loss weights: still read, with a deprecation line.
register_renamed_key("MODEL.BASELINE", "MODEL.FRAME_BASELINE", alias=True)
for _name in ("BCE", "DICE"):
    register_renamed_key(
        f"MODEL.FRAME_BASELINE.{_name}_WEIGHT",
        f"MODEL.FRAME_BASELINE.LOSS.{_name}_WEIGHT",
        alias=True,
    )


@register_config_section
def add_frame_baseline_config(cfg: CN) -> None:
    if "FRAME_BASELINE" in cfg.MODEL:
        return
    cfg.MODEL.FRAME_BASELINE = CN()
    # Backbone levels fed to the FPN-style decoder, finest first.
    cfg.MODEL.FRAME_BASELINE.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    # Channels of the decoder.
    cfg.MODEL.FRAME_BASELINE.DECODER_CHANNELS = 64
    # Loss weights: BCE + Dice on the mask logits (upsampled to the input size).
    cfg.MODEL.FRAME_BASELINE.LOSS = CN()
    cfg.MODEL.FRAME_BASELINE.LOSS.BCE_WEIGHT = 1.0
    cfg.MODEL.FRAME_BASELINE.LOSS.DICE_WEIGHT = 1.0
