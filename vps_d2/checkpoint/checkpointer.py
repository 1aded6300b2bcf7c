"""fvcore's Checkpointer with atomic writes and clear errors.

Every file (``model_XXXXXXX.pth``, ``model_final.pth``, ``last_checkpoint``) is written to
a temporary file in the same folder, flushed to disk and renamed over its target, so a
process killed mid-write never leaves a truncated checkpoint behind.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
from fvcore.common.checkpoint import Checkpointer

from vps_d2.utils.file_io import atomic_write_bytes

from .convert import ConversionError, detect_source, unwrap_state_dict

__all__ = [
    "AtomicSaveMixin",
    "CheckpointError",
    "LoadReport",
    "VPSCheckpointer",
    "load_model_weights",
    "load_report",
]

logger = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not fit the model (message names the file)."""


class AtomicSaveMixin:
    """``save`` / ``tag_last_checkpoint`` of an fvcore Checkpointer, written atomically;
    ``tag_last=False`` saves without moving ``last_checkpoint`` (model_best). Mixed into
    :class:`VPSCheckpointer` and into Detectron2's DetectionCheckpointer (vps_d2.d2)."""

    def save(self, name: str, *, tag_last: bool = True, **kwargs: Any) -> None:
        """Save ``name.pth`` atomically; ``tag_last`` also points last_checkpoint at it."""
        if not self.save_dir or not self.save_to_disk:
            return
        data: dict[str, Any] = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(getattr(self, "metadata", None) or {})  # e.g. the meta-architecture
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info("Saving checkpoint to %s", save_file)
        atomic_write_bytes(save_file, lambda f: torch.save(data, f))
        if tag_last:
            self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        path = os.path.join(self.save_dir, "last_checkpoint")
        atomic_write_bytes(path, last_filename_basename.encode())


def _raise_if_unconverted(data: dict, path: str) -> None:
    """One line naming ``tools/convert_weights.py --from ...`` when ``data`` is a published
    checkpoint in its original format (a registered converter recognises it)."""
    try:
        state = unwrap_state_dict(data)
    except ConversionError:
        return
    conv = detect_source(state)
    if conv is None:
        return
    out = os.path.splitext(os.path.basename(path))[0] + "_vps_d2.pth"
    if conv.target == "backbone":
        raise CheckpointError(
            f"MODEL.WEIGHTS {path!r} is a backbone file ({conv.description}), not a vps_d2 "
            f"model checkpoint: set MODEL.BACKBONE.WEIGHTS {path} instead"
        )
    raise CheckpointError(
        f"MODEL.WEIGHTS {path!r} is an unconverted checkpoint ({conv.description}): convert "
        f"it with python tools/convert_weights.py --from {conv.name} --input {path} --output "
        f"{out} and use --config-file configs/{conv.config} MODEL.WEIGHTS {out}"
    )


class VPSCheckpointer(AtomicSaveMixin, Checkpointer):
    """Checkpointer(model, save_dir, **checkpointables) with atomic saves and strict loads.

    ``metadata`` (a dict) is saved in every checkpoint next to the model, e.g.
    ``{"meta_architecture": "SALI"}`` (the trainer's), so that a load into another model
    can name the method the file belongs to. :meth:`load_weights` loads MODEL.WEIGHTS and
    reports (or refuses) a partial load.
    """

    def __init__(self, *args: Any, metadata: dict | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.metadata = dict(metadata or {})
        self.last_load: LoadReport | None = None

    def _load_model(self, checkpoint: Any):
        meta = checkpoint.get("meta_architecture") if isinstance(checkpoint, dict) else None
        keys = list(checkpoint["model"]) if isinstance(checkpoint, dict) else []
        incompatible = super()._load_model(checkpoint)
        self.last_load = load_report(self.model, incompatible, keys, meta)
        return incompatible

    def load_weights(self, path: str, min_loaded: float = 0.5) -> LoadReport:
        """Load the model weights of ``path`` (MODEL.WEIGHTS; no optimizer state) and log the
        fraction of the model's parameters they gave values to.

        Raises:
            CheckpointError: the fraction is below ``min_loaded`` (MODEL.WEIGHTS_MIN_LOADED;
                0 allows any partial load); the message names the checkpoint's method when
                the file records it, else its top-level modules.
        """
        self.load(path, checkpointables=[])
        report = self.last_load
        assert report is not None
        logger.info("MODEL.WEIGHTS %s: %s", path, report.summary())
        if report.fraction < min_loaded:
            raise CheckpointError(
                f"MODEL.WEIGHTS {path}: {report.summary()}, below MODEL.WEIGHTS_MIN_LOADED "
                f"({min_loaded:.0%}); {report.origin(type(self.model).__name__)}. Use a "
                f"checkpoint of {type(self.model).__name__}, or set MODEL.WEIGHTS_MIN_LOADED "
                "0.0 when a partial load is intended"
            )
        return report

    def _load_file(self, f: str) -> dict[str, Any]:
        try:
            data = torch.load(f, map_location=torch.device("cpu"), weights_only=False)
        except Exception as e:  # noqa: BLE001 - re-raised naming the file
            raise CheckpointError(
                f"Cannot read checkpoint {f!r} (corrupt or not a torch file): {e}"
            ) from e
        if isinstance(data, dict) and "conversion" not in data:
            _raise_if_unconverted(data, f)
        if isinstance(data, dict) and "model" not in data:
            if all(isinstance(v, torch.Tensor) for v in data.values()):
                data = {"model": data}  # a bare state dict
        if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
            raise CheckpointError(f"Checkpoint {f!r} holds no model state dict")
        return data

    def load(self, path: str, checkpointables: list[str] | None = None) -> dict[str, Any]:
        if not path:
            raise FileNotFoundError("No checkpoint path given (MODEL.WEIGHTS is empty)")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Checkpoint not found: {path!r} (MODEL.WEIGHTS)")
        return super().load(path, checkpointables=checkpointables)


@dataclass
class LoadReport:
    """What a load gave the model: parameter values (``loaded`` of ``total`` numbers, in
    ``tensors_loaded`` of ``tensors`` tensors), the method the file records (or None), and
    the file's top-level module names."""

    loaded: int
    total: int
    tensors_loaded: int
    tensors: int
    meta_architecture: str | None
    file_modules: list[str]

    @property
    def fraction(self) -> float:
        return self.loaded / self.total if self.total else 1.0

    def summary(self) -> str:
        return (
            f"{self.fraction:.1%} of the model's parameters loaded ({self.loaded:,} of "
            f"{self.total:,} values, {self.tensors_loaded} of {self.tensors} tensors)"
        )

    def origin(self, model_name: str) -> str:
        """Which method the file is of, as far as it says."""
        if self.meta_architecture:
            return f"the checkpoint is of {self.meta_architecture}, the model {model_name}"
        return (
            f"the checkpoint does not record its method; its top-level modules are "
            f"{', '.join(self.file_modules[:8]) or 'none'}"
        )


def load_report(model: torch.nn.Module, incompatible, file_keys, meta_architecture=None):
    """:class:`LoadReport` of a load into ``model`` from fvcore's incompatible keys."""
    not_loaded = set(incompatible.missing_keys) | {k for k, _, _ in incompatible.incorrect_shapes}
    params = list(model.named_parameters())
    total = sum(p.numel() for _, p in params)
    loaded = [(n, p) for n, p in params if n not in not_loaded]
    modules = list(dict.fromkeys(k.split(".")[0] for k in file_keys if k.split(".")[0] != "module"))
    return LoadReport(
        loaded=sum(p.numel() for _, p in loaded),
        total=total,
        tensors_loaded=len(loaded),
        tensors=len(params),
        meta_architecture=meta_architecture,
        file_modules=modules,
    )


def load_model_weights(model: torch.nn.Module, path: str, strict: bool = True) -> None:
    """Load a checkpoint's model weights for evaluation or the demo.

    Raises:
        FileNotFoundError: ``path`` is empty or does not exist.
        CheckpointError: unreadable file, or (``strict``) parameters missing from the file or
            with other shapes than the model's: the message lists them.
    """
    ckpt = VPSCheckpointer(model, save_to_disk=False)
    if not path:
        raise FileNotFoundError("MODEL.WEIGHTS is empty: pass the checkpoint to evaluate")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"MODEL.WEIGHTS file not found: {path!r}")
    checkpoint = ckpt._load_file(path)
    incompatible = ckpt._load_model(checkpoint)
    problems = []
    wrong_shape = {k for k, _, _ in incompatible.incorrect_shapes}
    missing = [k for k in incompatible.missing_keys if k not in wrong_shape]
    if missing:
        problems.append(f"missing in the file: {missing[:10]}")
    if incompatible.incorrect_shapes:
        shapes = [f"{k}: file {a} vs model {b}" for k, a, b in incompatible.incorrect_shapes[:10]]
        problems.append(f"shape mismatch: {shapes}")
    if strict and problems:
        report = ckpt.last_load
        origin = f" ({report.summary()}; {report.origin(type(model).__name__)})" if report else ""
        raise CheckpointError(
            f"MODEL.WEIGHTS {path!r} does not match the model "
            f"({type(model).__name__}){origin}: "
            + "; ".join(problems)
            + ". Was it trained with another config?"
        )
    if incompatible.unexpected_keys:
        logger.warning(
            "Keys in %s not used by the model: %s", path, incompatible.unexpected_keys[:10]
        )
    logger.info("Loaded model weights from %s", path)
