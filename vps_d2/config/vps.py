"""``add_vps_config``: the video sections, plus every registered method's own section.

Method packages (``vps_d2/methods/<name>``, or a plug-in outside the package) register their
``add_<method>_config(cfg)`` with :func:`register_config_section` when they are imported;
this module never imports a method: :mod:`vps_d2` registers, with
:func:`register_section_provider`, the import of its built-in methods, which
:func:`add_vps_config` runs first.
"""

from __future__ import annotations

from collections.abc import Callable

from .config import CfgNode as CN

__all__ = ["add_vps_config", "register_config_section", "register_section_provider"]

_SECTION_ADDERS: list[Callable[[CN], None]] = []
# Callables importing the packages that register sections (vps_d2: its built-in methods).
_SECTION_PROVIDERS: list[Callable[[], object]] = []


def register_section_provider(fn: Callable[[], object]) -> Callable[[], object]:
    """Register ``fn()``, which imports packages registering config sections; add_vps_config
    calls every provider before adding the sections (the methods load on first use)."""
    if fn not in _SECTION_PROVIDERS:
        _SECTION_PROVIDERS.append(fn)
    return fn


def register_config_section(fn: Callable[[CN], None]) -> Callable[[CN], None]:
    """Decorator for a method's ``add_<method>_config(cfg)``; add_vps_config calls it."""
    if fn not in _SECTION_ADDERS:
        _SECTION_ADDERS.append(fn)
    return fn


def add_vps_config(cfg: CN) -> CN:
    """Add the VPS sections to ``cfg`` in place (idempotent) and return it."""
    for provider in _SECTION_PROVIDERS:
        provider()
    if "CLIP" not in cfg.INPUT:
        _add_video_sections(cfg)
    for adder in _SECTION_ADDERS:
        adder(cfg)
    return cfg


def _add_video_sections(cfg: CN) -> None:
    # Training clips.
    cfg.INPUT.CLIP = CN()
    # Frames per training clip (T). 0 (unset) = what the model's clip contract declares
    # (``clip_contract(cfg)`` of the meta-architecture: SALI 3, Diff-VPS DELTA + 1, PGN+AEN
    # 3 x MODEL.PGN_AEN.CLIP_LENGTH; 1 for models that take any length). The engine's setup
    # (vps_d2.engine.setup_cfg) writes the resolved value before the config is frozen; a
    # value that contradicts the contract is an error naming the key.
    cfg.INPUT.CLIP.LENGTH = 0
    # Name in CLIP_SAMPLER_REGISTRY (vps_d2.data.clip_sampling) of the rule that picks a
    # clip's frames: "online": the reference frame is the last of the clip and the others
    # precede it (what an online method may see); "window": the reference frame is anywhere
    # in a window of neighbouring frames (clip methods). Methods register their own
    # (SALI: "triplet", keys in MODEL.SALI.TRIPLET). "" (unset) = what the model's clip
    # contract declares ("online" for models that take any), resolved like LENGTH.
    cfg.INPUT.CLIP.SAMPLING = ""
    # Largest gap, in frames, between two consecutive frames of a clip (1 = adjacent).
    cfg.INPUT.CLIP.MAX_SKIP = 1

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
    # Read ground truth exactly as the SUN-SEG toolbox: foreground = gray > 128, so masks
    # saved as 0/1 are scored as EMPTY. False: a GT file whose maximum value is 1 is read
    # as a 0/1 mask (foreground = 1), with one warning per dataset naming some of the files;
    # 0/255 masks give the toolbox's numbers either way. tools/evaluate.py: --literal-gt.
    cfg.TEST.VPS.LITERAL_GT = False
    # Metric used to keep the best checkpoint (model_best.pth) during training.
    cfg.TEST.VPS.BEST_METRIC = "maxDice"
    # Dataset whose BEST_METRIC is tracked; "" = the first of DATASETS.TEST.
    cfg.TEST.VPS.BEST_DATASET = ""
