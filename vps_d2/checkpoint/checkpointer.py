"""fvcore's Checkpointer with atomic writes and clear errors.

Every file (``model_XXXXXXX.pth``, ``model_final.pth``, ``last_checkpoint``) is written to
a temporary file in the same folder, flushed to disk and renamed over its target, so a
process killed mid-write never leaves a truncated checkpoint behind.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
from fvcore.common.checkpoint import Checkpointer

from vps_d2.utils.file_io import atomic_write_bytes

from .convert import ConversionError, detect_source, unwrap_state_dict

__all__ = ["AtomicSaveMixin", "CheckpointError", "VPSCheckpointer", "load_model_weights"]

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
    """Checkpointer(model, save_dir, **checkpointables) with atomic saves and strict loads."""

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
        raise CheckpointError(
            f"MODEL.WEIGHTS {path!r} does not match the model "
            f"({type(model).__name__}): "
            + "; ".join(problems)
            + ". Was it trained with another config?"
        )
    if incompatible.unexpected_keys:
        logger.warning(
            "Keys in %s not used by the model: %s", path, incompatible.unexpected_keys[:10]
        )
    logger.info("Loaded model weights from %s", path)
