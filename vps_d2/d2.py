"""Optional: register vps_d2's parts into a real Detectron2 installation.

vps_d2 never requires Detectron2. Where it is installed, ``import vps_d2.d2`` (or
``vps_d2.d2.register_all()``) adds vps_d2's meta-architectures to Detectron2's
``META_ARCH_REGISTRY`` and its datasets (loaders and metadata) to Detectron2's
``DatasetCatalog`` / ``MetadataCatalog``, so Detectron2 tools can build them from a config
that went through :func:`vps_d2.config.add_vps_config` (Detectron2's CfgNode is fvcore's
too). Video models need a video data loader: use :func:`vps_d2.data.build_train_loader`
in a ``DefaultTrainer`` subclass's ``build_train_loader``.
"""

from __future__ import annotations

import logging

__all__ = ["register_all"]

logger = logging.getLogger(__name__)


def register_all() -> dict[str, list[str]]:
    """Register every vps_d2 meta-architecture and dataset into Detectron2.

    Returns the names registered, ``{"meta_archs": [...], "datasets": [...]}``; names
    Detectron2 already has are skipped (and logged).

    Raises:
        ImportError: Detectron2 is not installed (it is not on PyPI: install it from its
            repository to use this module).
    """
    try:
        from detectron2.data import DatasetCatalog as D2DatasetCatalog
        from detectron2.data import MetadataCatalog as D2MetadataCatalog
        from detectron2.modeling import META_ARCH_REGISTRY as D2_META_ARCH_REGISTRY
    except ImportError as e:
        raise ImportError(
            "vps_d2.d2 needs Detectron2, which is not on PyPI: install it from "
            "https://github.com/facebookresearch/detectron2 (vps_d2 itself never needs it)"
        ) from e
    import vps_d2  # noqa: F401  (fills vps_d2's own registries)
    from vps_d2.data import DatasetCatalog, MetadataCatalog
    from vps_d2.modeling import META_ARCH_REGISTRY

    done: dict[str, list[str]] = {"meta_archs": [], "datasets": []}
    for name, cls in META_ARCH_REGISTRY:
        if name in D2_META_ARCH_REGISTRY:
            logger.info("Detectron2 already has a meta-architecture %s: skipped", name)
            continue
        D2_META_ARCH_REGISTRY.register(cls)
        done["meta_archs"].append(name)
    for name in DatasetCatalog.list():
        if name in D2DatasetCatalog.list():
            logger.info("Detectron2 already has a dataset %s: skipped", name)
            continue
        D2DatasetCatalog.register(name, DatasetCatalog[name])
        D2MetadataCatalog.get(name).set(**MetadataCatalog.get(name).as_dict_without_name())
        done["datasets"].append(name)
    return done
