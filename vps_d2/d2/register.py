"""Register vps_d2's meta-architectures, backbones and datasets into Detectron2."""

from __future__ import annotations

import logging

from detectron2.layers import ShapeSpec as D2ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY as D2_BACKBONE_REGISTRY
from detectron2.modeling import META_ARCH_REGISTRY as D2_META_ARCH_REGISTRY
from detectron2.modeling import Backbone as D2Backbone

from vps_d2.data.datasets import configure_datasets
from vps_d2.modeling import BACKBONE_REGISTRY, META_ARCH_REGISTRY

from .config import extend_detectron2_defaults
from .datasets import register_frame_datasets
from .modeling import d2_meta_arch

__all__ = ["D2BackboneAdapter", "register_all"]

logger = logging.getLogger(__name__)


class D2BackboneAdapter(D2Backbone):
    """A vps_d2 backbone as a Detectron2 ``Backbone`` (for Detectron2's own models).

    forward: (B, 3, H, W) -> {"res<k>": (B, C_k, H / 2^k, W / 2^k)}, as the wrapped backbone.
    """

    def __init__(self, body) -> None:
        super().__init__()
        self.body = body
        self._out_features = list(body.output_shape())

    def forward(self, x):
        return self.body(x)

    def output_shape(self) -> dict[str, D2ShapeSpec]:
        return {
            k: D2ShapeSpec(channels=s.channels, stride=s.stride)
            for k, s in self.body.output_shape().items()
        }

    @property
    def size_divisibility(self) -> int:
        return max(s.stride for s in self.body.output_shape().values())


def _backbone_builder(name: str, builder):
    def build(cfg, input_shape=None):
        return D2BackboneAdapter(builder(cfg))

    build.__name__ = name
    build.__doc__ = f"vps_d2's {name} as a Detectron2 backbone (``build(cfg, input_shape)``)."
    return build


def register_all(cfg=None) -> dict[str, list[str]]:
    """Register every vps_d2 meta-architecture, backbone and dataset into Detectron2.

    ``import vps_d2.d2`` calls it once (no cfg); call it again with a cfg to apply the
    cfg's dataset options, or after loading a plug-in.

    Args:
        cfg: a config (vps_d2's or Detectron2's after :func:`add_vps_config`) whose dataset
            options (DATASETS.ROOT, DATASETS.SUN_SEG.*, DATASETS.CVC612.*) apply first.

    Meta-architectures keep every name they have in vps_d2 (e.g. ``PGNAEN`` and ``EUVPS``),
    as their subclass with Detectron2 outputs (:func:`vps_d2.d2.modeling.d2_meta_arch`: same
    parameters, "sem_seg" and "instances" added); backbones are registered as builders
    ``fn(cfg, input_shape)`` returning a :class:`D2BackboneAdapter`; datasets as their
    per-frame view with Detectron2's metadata (:mod:`vps_d2.d2.datasets`); Detectron2's
    default config gets vps_d2's keys (:func:`~vps_d2.d2.config.extend_detectron2_defaults`).
    Names Detectron2 already has for something else are skipped (logged). Idempotent.

    Returns:
        The names newly registered, ``{"meta_archs", "backbones", "datasets"}``.
    """
    if cfg is not None:
        configure_datasets(cfg)
    extend_detectron2_defaults()
    done: dict[str, list[str]] = {"meta_archs": [], "backbones": [], "datasets": []}
    for name, cls in META_ARCH_REGISTRY:
        d2_cls = d2_meta_arch(cls)
        if name in D2_META_ARCH_REGISTRY:
            if D2_META_ARCH_REGISTRY.get(name) is not d2_cls:
                logger.info("Detectron2 already has a meta-architecture %s: skipped", name)
            continue
        D2_META_ARCH_REGISTRY._do_register(name, d2_cls)
        done["meta_archs"].append(name)
    for name, builder in BACKBONE_REGISTRY:
        if name in D2_BACKBONE_REGISTRY:
            continue
        D2_BACKBONE_REGISTRY._do_register(name, _backbone_builder(name, builder))
        done["backbones"].append(name)
    done["datasets"] = register_frame_datasets()
    return done
