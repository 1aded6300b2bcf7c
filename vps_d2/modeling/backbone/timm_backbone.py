"""Backbones from timm (res2net50_26w_4s, hrnet_w48, pvt_v2_b0..b5, ...) and a tiny CNN.

Pretrained weights come only from a local file (MODEL.BACKBONE.WEIGHTS); nothing is
ever downloaded: timm is always called with ``pretrained=False``.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from typing import Any

import timm
import torch
import torch.nn as nn

from vps_d2.checkpoint.convert import ConversionError, read_state_dict
from vps_d2.config import configurable
from vps_d2.modeling.layers import ConvNormAct

from .build import BACKBONE_REGISTRY, Backbone, ShapeSpec
from .convert import remap_backbone_state

__all__ = ["SmallCNN", "TimmBackbone", "load_backbone_weights", "set_layer_norm_eps"]

logger = logging.getLogger(__name__)


def _level_name(stride: int) -> str:
    return f"res{int(round(math.log2(stride)))}"


def _parse_kwargs(pairs: Sequence[Any]) -> dict:
    if len(pairs) % 2:
        raise ValueError(f"MODEL.BACKBONE.TIMM_KWARGS must be KEY VALUE pairs, got {pairs}")
    return {str(k): v for k, v in zip(pairs[0::2], pairs[1::2])}


def load_backbone_weights(
    module: nn.Module, path: str, what: str = "backbone", model_name: str = ""
) -> None:
    """Load a local state dict into ``module``; errors name the file and the problem.

    The file may be timm's own (full model or features_only names) or an official release
    (e.g. the PVT authors' pvt_v2_b5.pth): with ``model_name`` (a timm name) it goes through
    timm's checkpoint filter of that family and timm's feature-extractor naming
    (:func:`~.convert.remap_backbone_state`). ``{"state_dict" | "model" | "net" | "module":
    ...}`` wrappers and DataParallel ``module.`` prefixes are removed."""
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{what} weights file not found: {path!r} (MODEL.BACKBONE.WEIGHTS). vps_d2 never "
            "downloads weights: fetch the ImageNet checkpoint once (e.g. with timm on a "
            "machine with internet: timm.create_model(name, pretrained=True) then "
            "torch.save(model.state_dict(), 'name.pth')) and point MODEL.BACKBONE.WEIGHTS "
            "at the local file."
        )
    try:
        state = read_state_dict(path)
    except ConversionError as e:
        raise RuntimeError(f"Cannot read {what} weights {path!r}: {e}") from e
    own = module.state_dict()
    state = remap_backbone_state(state, own, model_name, module)
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    wrong = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and own[k].shape != v.shape
    ]
    if wrong:
        logger.warning(
            "%s weights %s: %d tensor(s) have another shape than the model's and stay randomly "
            "initialised (another variant of the architecture? e.g. MLP ratios): %s",
            what,
            path,
            len(wrong),
            wrong[:5],
        )
    if not usable:
        raise RuntimeError(
            f"{what} weights {path!r} share no parameter name/shape with the model "
            f"(first keys in file: {list(state)[:5]}, in model: {list(own)[:5]})"
        )
    missing = [k for k in own if k not in usable]
    module.load_state_dict(usable, strict=False)
    logger.info(
        "Loaded %d/%d %s tensors from %s (%d not in the file, e.g. %s)",
        len(usable),
        len(own),
        what,
        path,
        len(missing),
        missing[:3],
    )


def set_layer_norm_eps(module: nn.Module, eps: float) -> int:
    """Set ``eps`` of every nn.LayerNorm in ``module`` (MODEL.BACKBONE.LAYER_NORM_EPS: e.g.
    1e-5 of transformers' SegFormer for timm's pvt_v2, whose LayerNorms use 1e-6). Returns
    how many were changed."""
    n = 0
    for m in module.modules():
        if isinstance(m, nn.LayerNorm):
            m.eps = float(eps)
            n += 1
    return n


@BACKBONE_REGISTRY.register()
class TimmBackbone(Backbone):
    """Any timm model created with ``features_only=True``.

    forward: images (B, 3, H, W) -> {"res<k>": (B, C_k, H / 2^k, W / 2^k)}.
    """

    @configurable
    def __init__(
        self,
        *,
        model_name: str,
        out_indices: Sequence[int] = (1, 2, 3, 4),
        weights: str = "",
        pretrained: bool = False,
        freeze_at: int = 0,
        timm_kwargs: dict | None = None,
        layer_norm_eps: float = 0.0,
        out_features: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        if pretrained and not weights:
            raise ValueError(
                f"MODEL.BACKBONE.PRETRAINED is True for {model_name} but MODEL.BACKBONE.WEIGHTS "
                "is empty. vps_d2 never downloads at run time: save the pretrained state dict "
                "to a local file and set MODEL.BACKBONE.WEIGHTS to it (or set PRETRAINED False "
                "for random init)."
            )
        self.body = self._create(model_name, out_indices, timm_kwargs)
        if out_features is not None:
            # Keep only the requested levels (timm then builds nothing after the deepest).
            names = [_level_name(r) for r in self.body.feature_info.reduction()]
            keep = [i for i, n in zip(out_indices, names) if n in out_features]
            if len(keep) != len(names) and keep:
                logger.info(
                    "TimmBackbone %s: levels %s instead of %s (the model uses %s)",
                    model_name,
                    keep,
                    list(out_indices),
                    list(out_features),
                )
                self.body = self._create(model_name, keep, timm_kwargs)
        if layer_norm_eps > 0:
            set_layer_norm_eps(self.body, layer_norm_eps)
        if weights:
            load_backbone_weights(self.body, weights, model_name=model_name)
        info = self.body.feature_info
        self._names = [_level_name(r) for r in info.reduction()]
        self._shapes = {
            n: ShapeSpec(channels=c, stride=r)
            for n, c, r in zip(self._names, info.channels(), info.reduction())
        }
        self.model_name = model_name
        self._freeze(freeze_at)

    @staticmethod
    def _create(model_name: str, out_indices: Sequence[int], timm_kwargs: dict | None):
        try:
            return timm.create_model(
                model_name,
                pretrained=False,
                features_only=True,
                out_indices=tuple(out_indices),
                **(timm_kwargs or {}),
            )
        except RuntimeError as e:
            raise ValueError(
                f"MODEL.BACKBONE.TIMM_NAME: timm cannot build {model_name!r}: {e}"
            ) from e

    def _freeze(self, freeze_at: int) -> None:
        if freeze_at <= 0:
            return
        # Freeze every parameter computed before the end of the freeze_at-th level.
        stop = self.body.feature_info.module_name()[min(freeze_at, len(self._names)) - 1]
        for name, module in self.body.named_children():
            for p in module.parameters():
                p.requires_grad_(False)
            if name == stop.split(".")[0]:
                break

    @classmethod
    def from_config(cls, cfg, out_features: Sequence[str] | None = None) -> dict:
        b = cfg.MODEL.BACKBONE
        return {
            "model_name": b.TIMM_NAME,
            "out_indices": tuple(b.OUT_INDICES),
            "weights": b.WEIGHTS,
            "pretrained": b.PRETRAINED,
            "freeze_at": b.FREEZE_AT,
            "timm_kwargs": _parse_kwargs(b.TIMM_KWARGS),
            "layer_norm_eps": b.LAYER_NORM_EPS,
            "out_features": out_features,
        }

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.body(x)
        return dict(zip(self._names, feats))

    def output_shape(self) -> dict[str, ShapeSpec]:
        return dict(self._shapes)


@BACKBONE_REGISTRY.register()
class SmallCNN(Backbone):
    """Four-stage CNN (strides 4, 8, 16, 32) for tests and CPU runs on the sample data.

    forward: (B, 3, H, W) -> {"res2": (B, C0, H/4, W/4), ..., "res5": (B, C3, H/32, W/32)},
    restricted to the levels of ``out_indices`` (1 -> res2, ..., 4 -> res5, as for timm's
    ResNets). Stages after the deepest requested level are not kept; they are still
    initialised, so the random initialisation (and every result under a seed) of the kept
    stages does not depend on ``out_indices``.
    """

    @configurable
    def __init__(
        self,
        *,
        channels: Sequence[int] = (16, 32, 64, 128),
        out_indices: Sequence[int] = (1, 2, 3, 4),
        weights: str = "",
    ) -> None:
        super().__init__()
        if len(channels) != 4:
            raise ValueError(f"MODEL.BACKBONE.SMALL_CNN_CHANNELS needs 4 values, got {channels}")
        out_indices = [int(i) for i in out_indices]
        if not out_indices or any(i not in (1, 2, 3, 4) for i in out_indices):
            raise ValueError(
                f"MODEL.BACKBONE.OUT_INDICES for SmallCNN must be in 1..4 (res2..res5), "
                f"got {out_indices}"
            )
        c = list(channels)
        self.stem = nn.Sequential(ConvNormAct(3, c[0], 3, 2), ConvNormAct(c[0], c[0], 3, 2))
        stages = [
            nn.Sequential(ConvNormAct(c[i], c[i + 1], 3, 2), ConvNormAct(c[i + 1], c[i + 1]))
            for i in range(3)
        ]
        self.stages = nn.ModuleList(stages[: max(out_indices) - 1])
        self._out = [f"res{i + 1}" for i in sorted(set(out_indices))]
        self._shapes = {
            f"res{i + 2}": ShapeSpec(c[i], 2 ** (i + 2))
            for i in range(4)
            if f"res{i + 2}" in self._out
        }
        if weights:
            load_backbone_weights(self, weights)

    @classmethod
    def from_config(cls, cfg, out_features: Sequence[str] | None = None) -> dict:
        indices = cfg.MODEL.BACKBONE.OUT_INDICES
        if out_features is not None:
            names = [f"res{i}" for i in range(2, 6)]
            bad = [f for f in out_features if f not in names]
            if bad:
                raise ValueError(
                    f"SmallCNN produces {names}, not {bad} (asked for by the model's IN_FEATURES)"
                )
            indices = [names.index(f) + 1 for f in out_features]
        return {
            "channels": tuple(cfg.MODEL.BACKBONE.SMALL_CNN_CHANNELS),
            "out_indices": tuple(indices),
            "weights": cfg.MODEL.BACKBONE.WEIGHTS,
        }

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        x = self.stem(x)
        if "res2" in self._out:
            out["res2"] = x
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if f"res{i + 3}" in self._out:
                out[f"res{i + 3}"] = x
        return out

    def output_shape(self) -> dict[str, ShapeSpec]:
        return dict(self._shapes)
