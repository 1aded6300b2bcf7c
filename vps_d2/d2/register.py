"""Register vps_d2's meta-architectures, backbones and datasets into Detectron2."""

from __future__ import annotations

import logging

from detectron2.data import DatasetCatalog as D2DatasetCatalog
from detectron2.data import MetadataCatalog as D2MetadataCatalog
from detectron2.layers import ShapeSpec as D2ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY as D2_BACKBONE_REGISTRY
from detectron2.modeling import META_ARCH_REGISTRY as D2_META_ARCH_REGISTRY
from detectron2.modeling import Backbone as D2Backbone

from vps_d2.data import DatasetCatalog, MetadataCatalog
from vps_d2.data.datasets import configure_datasets
from vps_d2.modeling import BACKBONE_REGISTRY, META_ARCH_REGISTRY

__all__ = ["D2BackboneAdapter", "register_all"]

logger = logging.getLogger(__name__)

# vps_d2 metadata key -> Detectron2's name for it (Detectron2 warns on the old names).
_D2_METADATA_NAMES = {"class_names": "thing_classes"}


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


def _d2_metadata(name: str) -> dict:
    md = MetadataCatalog.get(name).as_dict_without_name()
    return {_D2_METADATA_NAMES.get(k, k): v for k, v in md.items()}


def register_all(cfg=None) -> dict[str, list[str]]:
    """Register every vps_d2 meta-architecture, backbone and dataset into Detectron2.

    Args:
        cfg: a config (vps_d2's or Detectron2's after :func:`add_vps_config`) whose dataset
            options (DATASETS.ROOT, DATASETS.SUN_SEG.*, DATASETS.CVC612.*) apply first.

    Meta-architectures keep every name they have in vps_d2 (e.g. ``PGNAEN`` and ``EUVPS``);
    backbones are registered as builders ``fn(cfg, input_shape)`` returning a
    :class:`D2BackboneAdapter`; dataset loaders are vps_d2's, and Detectron2's metadata is
    re-synchronised with vps_d2's at every call (``class_names`` is given as
    ``thing_classes``). Names Detectron2 already has for something else are skipped (logged).
    Idempotent.

    Returns:
        The names newly registered, ``{"meta_archs", "backbones", "datasets"}``.
    """
    if cfg is not None:
        configure_datasets(cfg)
    done: dict[str, list[str]] = {"meta_archs": [], "backbones": [], "datasets": []}
    for name, cls in META_ARCH_REGISTRY:
        if name in D2_META_ARCH_REGISTRY:
            if D2_META_ARCH_REGISTRY.get(name) is not cls:
                logger.info("Detectron2 already has a meta-architecture %s: skipped", name)
            continue
        D2_META_ARCH_REGISTRY._do_register(name, cls)
        done["meta_archs"].append(name)
    for name, builder in BACKBONE_REGISTRY:
        if name in D2_BACKBONE_REGISTRY:
            continue
        D2_BACKBONE_REGISTRY._do_register(name, _backbone_builder(name, builder))
        done["backbones"].append(name)
    for name in DatasetCatalog.list():
        if name not in D2DatasetCatalog.list():
            D2DatasetCatalog.register(name, DatasetCatalog[name])
            done["datasets"].append(name)
        elif D2DatasetCatalog[name] is not DatasetCatalog[name]:
            logger.info("Detectron2 already has a dataset %s: skipped", name)
            continue
        wanted = _d2_metadata(name)
        current = D2MetadataCatalog.get(name).as_dict()
        current.pop("name", None)
        if current != wanted:
            D2MetadataCatalog.remove(name)
            D2MetadataCatalog.get(name).set(**wanted)
    return done
