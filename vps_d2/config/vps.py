"""``add_vps_config``: the video sections, plus every method's own section."""

from __future__ import annotations

from collections.abc import Callable

from .config import CfgNode as CN

__all__ = ["add_vps_config", "register_config_section"]

_SECTION_ADDERS: list[Callable[[CN], None]] = []


def register_config_section(fn: Callable[[CN], None]) -> Callable[[CN], None]:
    """Decorator for a method's ``add_<method>_config(cfg)``; add_vps_config calls it."""
    if fn not in _SECTION_ADDERS:
        _SECTION_ADDERS.append(fn)
    return fn


def add_vps_config(cfg: CN) -> CN:
    """Add the VPS sections to ``cfg`` in place (idempotent) and return it."""
    if "CLIP" not in cfg.INPUT:
        _add_video_sections(cfg)
    import vps_d2.methods  # noqa: F401  (registers every method's config section)

    for adder in _SECTION_ADDERS:
        adder(cfg)
    return cfg


def _add_video_sections(cfg: CN) -> None:
    # Training clips.
    cfg.INPUT.CLIP = CN()
    # Frames per training clip (T). Methods with their own sampling (SALI's triplet)
    # read their own keys instead.
    cfg.INPUT.CLIP.LENGTH = 1
    # "online": the reference frame is the last of the clip and the others precede it
    # (what an online method may see); "window": the reference frame is anywhere in a
    # window of neighbouring frames (clip methods); "triplet": (memory, neighbour,
    # current) as SALI trains, LENGTH must be 3.
    cfg.INPUT.CLIP.SAMPLING = "online"
    # Largest gap, in frames, between two consecutive frames of a clip (1 = adjacent).
    cfg.INPUT.CLIP.MAX_SKIP = 1
    # "triplet" sampling (SALI): the first frame of the clip is a memory frame drawn from
    # the MEMORY_RANGE frames before the neighbour/current pair ...
    cfg.INPUT.CLIP.MEMORY_RANGE = 5
    # ... and the neighbour is current + NEIGHBOUR_OFFSET (-1: previous frame, online;
    # +1: next frame, as SALI's public code).
    cfg.INPUT.CLIP.NEIGHBOUR_OFFSET = -1

    # Evaluation (SUN-SEG toolbox protocol).
    cfg.TEST.VPS = CN()
    # Write every prediction as an 8-bit PNG in the toolbox layout
    # OUTPUT_DIR/predictions/<MODEL_NAME>/<dataset>/<case>/<gt name>.png.
    cfg.TEST.VPS.SAVE_PREDICTIONS = False
    # Model name used in that layout.
    cfg.TEST.VPS.MODEL_NAME = "vps_d2"
    # Draw the K frames with the lowest Dice at 0.5 of each test split (prediction | GT) in
    # OUTPUT_DIR/worst_cases/<dataset>/ after each evaluation (0 = off).
    cfg.TEST.VPS.DUMP_WORST_CASES = 0
    # Metric used to keep the best checkpoint (model_best.pth) during training.
    cfg.TEST.VPS.BEST_METRIC = "maxDice"
    # Dataset whose BEST_METRIC is tracked; "" = the first of DATASETS.TEST.
    cfg.TEST.VPS.BEST_DATASET = ""
