"""Registration of the built-in datasets, and ``configure_datasets(cfg)``.

Names (registered when this module is imported; the folders are read only when a dataset
is loaded, under the datasets root resolved at that moment):

* SUN-SEG, ``<root>/SUN-SEG``: ``sun_seg_train``, ``sun_seg_val`` (videos held out of
  TrainDataset when ``DATASETS.SUN_SEG.HOLDOUT_VAL`` > 0), ``sun_seg_easy_seen``,
  ``sun_seg_easy_unseen``, ``sun_seg_hard_seen``, ``sun_seg_hard_unseen``;
* the synthetic sample (same layout), ``<root>/vps-sample``: ``vps_sample_train``,
  ``vps_sample_easy_seen``, ``vps_sample_easy_unseen``, ``vps_sample_hard_seen``,
  ``vps_sample_hard_unseen``;
* CVC-612, ``<root>/CVC-612``: ``cvc612_train``, ``cvc612_val``, ``cvc612_test``
  (sequences from ``DATASETS.CVC612.*_SEQUENCES``);
* ``holdout_val``: the videos of DATASETS.TRAIN held out for model selection
  (``DATASETS.HOLDOUT_VAL``, when DATASETS.TEST lists it; :func:`exclude_holdout` removes
  them from the training records).

The datasets root is ``DATASETS.ROOT`` when :func:`configure_datasets` was given a
non-empty one, else ``$VPS_DATASETS``, else ``$DETECTRON2_DATASETS``, else ``datasets``
(relative to the current directory). The engine calls ``configure_datasets(cfg)`` in every
process; the settings are module state read by the loaders when they run.

Metadata of every name: ``evaluator_type`` ("vps"), ``root`` (the dataset's folder),
``split`` (e.g. "TestEasyDataset/Seen", "train"), ``class_names`` (CLASS_NAMES), and for
SUN-SEG layouts ``image_root`` / ``gt_root``. ``root`` and the folders are refreshed by
``configure_datasets`` and when the dataset is loaded (take ``MetadataCatalog.get(name)``
after those calls).
"""

from __future__ import annotations

import logging
import os

from ...config import get_cfg
from .. import CLASS_NAMES
from ..catalog import DatasetCatalog, MetadataCatalog
from .cvc612 import load_cvc612, validate_cvc612_splits
from .folder import update_metadata
from .root import get_datasets_root, set_datasets_root
from .sun_seg import SUN_SEG_SPLITS, holdout_videos, load_sun_seg
from .synthetic import register_synthetic_dataset

__all__ = [
    "BUILTIN_DATASETS",
    "HOLDOUT_VAL",
    "configure_datasets",
    "exclude_holdout",
    "get_datasets_root",
    "is_validation_split",
]

#: Name of the validation split held out of DATASETS.TRAIN (DATASETS.HOLDOUT_VAL).
HOLDOUT_VAL = "holdout_val"


def is_validation_split(name: str) -> bool:
    """Whether the dataset ``name`` is a validation split (model selection may use it):
    ``holdout_val`` and every name ending in ``_val`` (sun_seg_val, cvc612_val, ...)."""
    return name == HOLDOUT_VAL or name.endswith("_val")


logger = logging.getLogger(__name__)

# Settings applied by configure_datasets; until its first call, the config defaults, taken
# when a dataset is first loaded (no config is built at import).
_STATE: dict = {}

# name -> (dataset folder under the root, split) of every built-in dataset.
BUILTIN_DATASETS: dict[str, tuple[str, str]] = {}

_CVC_KEYS = {
    "train": "DATASETS.CVC612.TRAIN_SEQUENCES",
    "val": "DATASETS.CVC612.VAL_SEQUENCES",
    "test": "DATASETS.CVC612.TEST_SEQUENCES",
}


def _apply(cfg, set_root: bool = True) -> None:
    d = cfg.DATASETS
    holdout = float(d.SUN_SEG.HOLDOUT_VAL)
    if not 0.0 <= holdout < 1.0:
        raise ValueError(f"DATASETS.SUN_SEG.HOLDOUT_VAL must be in [0, 1), got {holdout}")
    seed = d.SUN_SEG.HOLDOUT_SEED
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"DATASETS.SUN_SEG.HOLDOUT_SEED must be an integer, got {seed!r}")
    cvc = {
        "train": list(d.CVC612.TRAIN_SEQUENCES),
        "val": list(d.CVC612.VAL_SEQUENCES),
        "test": list(d.CVC612.TEST_SEQUENCES),
    }
    validate_cvc612_splits({_CVC_KEYS[k]: v for k, v in cvc.items()})
    fraction = float(d.get("HOLDOUT_VAL", 0.0))
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"DATASETS.HOLDOUT_VAL must be in [0, 1), got {fraction}")
    if set_root:
        set_datasets_root(str(d.ROOT))
    _STATE.update(holdout_val=holdout, holdout_seed=seed, cvc612=cvc)
    _STATE["holdout"] = {
        "train": tuple(d.TRAIN),
        "fraction": fraction,
        "seed": int(d.get("HOLDOUT_SEED", 0)),
        "active": HOLDOUT_VAL in tuple(d.TEST) and fraction > 0,
    }


def configure_datasets(cfg) -> None:
    """Apply ``DATASETS.ROOT``, ``DATASETS.SUN_SEG.*`` and ``DATASETS.CVC612.*`` of ``cfg``.

    Also registers the synthetic datasets of ``DATASETS.SYNTHETIC`` (folders written by
    tools/synthesize.py, :mod:`.synthetic`) under their manifests' names.

    Raises:
        ValueError: naming the key of an invalid value (holdout fraction outside [0, 1),
            CVC-612 sequence indices outside 0..28 or shared by two splits).
    """
    _apply(cfg)
    for name in BUILTIN_DATASETS:
        _refresh_metadata(name)
    for folder in cfg.DATASETS.get("SYNTHETIC", ()):
        register_synthetic_dataset(str(folder))


def _settings() -> dict:
    """The settings of the last :func:`configure_datasets`, or the config defaults (the
    datasets root is left to the environment variables then)."""
    if not _STATE:
        _apply(get_cfg(), set_root=False)
    return _STATE


def _refresh_metadata(name: str) -> str:
    """Update ``name``'s metadata to the current root; return the dataset folder."""
    folder, split = BUILTIN_DATASETS[name]
    root = os.path.join(get_datasets_root(), folder)
    values = {"root": root}
    if not name.startswith("cvc612"):
        values.update(
            image_root=os.path.join(root, split, "Frame"), gt_root=os.path.join(root, split, "GT")
        )
    update_metadata(name, **values)
    return root


def _register(name: str, folder: str, split: str, loader) -> None:
    BUILTIN_DATASETS[name] = (folder, split)
    DatasetCatalog.register(name, loader)
    MetadataCatalog.get(name).set(evaluator_type="vps", split=split, class_names=list(CLASS_NAMES))
    _refresh_metadata(name)


def _sun_seg_loader(name: str, folder: str, split_dir: str, holdout: str | None):
    """Loader of one SUN-SEG-layout split; ``holdout`` "train"/"val" filters TrainDataset."""

    def load() -> list[dict]:
        root = _refresh_metadata(name)
        settings = _settings()
        frac, seed = settings["holdout_val"], settings["holdout_seed"]
        if holdout == "val" and frac == 0.0:
            raise ValueError(
                f"Dataset '{name}' is empty: it holds out videos of TrainDataset only when "
                f"DATASETS.SUN_SEG.HOLDOUT_VAL > 0 (e.g. 0.2); set it (and "
                f"DATASETS.SUN_SEG.HOLDOUT_SEED) in the config"
            )
        # the real SUN-SEG test splits fall back to the packaged positive-case class table
        packaged = folder == "SUN-SEG" and split_dir != SUN_SEG_SPLITS["train"]
        records = load_sun_seg(root, split_dir, name, packaged_case_classes=packaged)
        if holdout is None or frac == 0.0:
            return records
        held = holdout_videos([r["video_id"] for r in records], frac, seed)
        keep = [r for r in records if (r["video_id"] in held) == (holdout == "val")]
        logger.info(
            "%s: %d of %d clips (HOLDOUT_VAL=%s, HOLDOUT_SEED=%s)",
            name,
            len(keep),
            len(records),
            frac,
            seed,
        )
        return keep

    return load


def _cvc612_loader(name: str, split: str):
    def load() -> list[dict]:
        root = _refresh_metadata(name)
        seqs = _settings()["cvc612"][split]
        if not seqs:
            raise ValueError(f"Dataset '{name}' is empty: {_CVC_KEYS[split]} lists no sequence")
        return load_cvc612(root, seqs, name, split)

    return load


def _held_out_ids(records: list[dict]) -> set[str]:
    h = _settings()["holdout"]
    ids = [r["video_id"] for r in records]
    return holdout_videos(ids, h["fraction"], h["seed"], key="DATASETS.HOLDOUT_VAL")


def _holdout_loader() -> list[dict]:
    h = _settings()["holdout"]
    if not h["active"]:
        raise ValueError(
            f"Dataset '{HOLDOUT_VAL}' holds out videos of DATASETS.TRAIN only when "
            "DATASETS.HOLDOUT_VAL > 0 and DATASETS.TEST lists it (the training set-up adds it)"
        )
    records = [r for name in h["train"] for r in DatasetCatalog.get(name)]
    held = _held_out_ids(records)
    keep = [r for r in records if r["video_id"] in held]
    logger.info(
        "%s: %d of %d training clips held out for model selection (DATASETS.HOLDOUT_VAL=%s)",
        HOLDOUT_VAL,
        len(keep),
        len(records),
        h["fraction"],
    )
    return keep


def exclude_holdout(records: list[dict]) -> list[dict]:
    """``records`` (of DATASETS.TRAIN) without the videos held out as ``holdout_val``, when
    the hold-out is active (else unchanged)."""
    if not _settings()["holdout"]["active"]:
        return records
    held = _held_out_ids(records)
    return [r for r in records if r["video_id"] not in held]


def _register_all() -> None:
    for prefix, folder in (("sun_seg", "SUN-SEG"), ("vps_sample", "vps-sample")):
        for key, split_dir in SUN_SEG_SPLITS.items():
            name = f"{prefix}_{key}"
            holdout = "train" if name == "sun_seg_train" else None
            _register(name, folder, split_dir, _sun_seg_loader(name, folder, split_dir, holdout))
        if prefix == "sun_seg":
            train_dir = SUN_SEG_SPLITS["train"]
            loader = _sun_seg_loader("sun_seg_val", folder, train_dir, "val")
            _register("sun_seg_val", folder, train_dir, loader)
    for split in ("train", "val", "test"):
        name = f"cvc612_{split}"
        _register(name, "CVC-612", split, _cvc612_loader(name, split))
    DatasetCatalog.register(HOLDOUT_VAL, _holdout_loader)
    MetadataCatalog.get(HOLDOUT_VAL).set(
        evaluator_type="vps", split="holdout_val", class_names=list(CLASS_NAMES)
    )


_register_all()
