"""The frozen segmenter of the refinement stage and of the mask-fidelity measure: ANY vps_d2
meta-architecture, built from its config and checkpoint.

Frozen: every parameter ``requires_grad = False``, eval mode, never in an optimizer and
never saved in ArSDM's checkpoints (it is held outside the module tree). Differentiable:
:meth:`FrozenSegmenter.frame_probs` runs each image as a one-frame video through the
model's own streaming path (``reset()`` then ``process_frames([frame])``, the path its test
protocol uses, without the no_grad of ``inference``), so gradients reach the images (and
from there the U-Net) while the segmenter's weights stay as loaded.
"""

from __future__ import annotations

import logging
import os

import torch

from vps_d2.checkpoint import load_model_weights
from vps_d2.config import add_vps_config, get_cfg
from vps_d2.model_zoo import resolve_config_path
from vps_d2.modeling import build_model

__all__ = ["FrozenSegmenter", "build_frozen_segmenter"]

logger = logging.getLogger(__name__)


class FrozenSegmenter:
    """A frozen vps_d2 meta-architecture with a differentiable frame-wise path.

    Not an ``nn.Module`` on purpose: a model holding it does not register its parameters
    (no optimizer, no checkpoint, no DDP); :meth:`apply` follows the holder's device and
    dtype changes.
    """

    def __init__(self, model: torch.nn.Module, name: str = "") -> None:
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.name = name or type(model).__name__

    def apply(self, fn) -> None:
        """Apply a tensor function to the segmenter's parameters and buffers (``nn.Module.
        _apply``: ``.to(device)``, ``.half()``, ...)."""
        self.model._apply(fn)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def frame_probs(self, images: torch.Tensor) -> torch.Tensor:
        """Images (N, 3, H, W) float in 0-255 (may carry a graph) -> foreground
        probabilities (N, H, W), each image a video of one frame."""
        self.model.eval()
        h, w = images.shape[-2:]
        out = []
        for img in images:
            self.model.reset()
            frame = {"image": img, "height": int(h), "width": int(w)}
            out.append(self.model.process_frames([frame])[0]["prob"])
        self.model.reset()
        return torch.stack(out)


def build_frozen_segmenter(config: str, weights: str, opts=(), device: str = "cpu"):
    """``FrozenSegmenter`` of the model of ``config`` (a file or a shipped config name) with
    the weights of ``weights``, merged ``opts`` (KEY VALUE ...) applied to its config.

    Raises:
        FileNotFoundError: naming the key whose file is missing.
    """
    if not weights:
        raise FileNotFoundError(
            "MODEL.ARSDM.REFINE.SEGMENTER_WEIGHTS is empty: the refinement segmenter must be a "
            "trained model (train one, e.g. configs/frame_baseline_sample.yaml, and pass its "
            "model_final.pth)"
        )
    if not os.path.isfile(weights):
        raise FileNotFoundError(
            f"MODEL.ARSDM.REFINE.SEGMENTER_WEIGHTS {weights!r}: no such file (train the "
            "segmenter first or fix the path)"
        )
    try:
        path = resolve_config_path(config)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"MODEL.ARSDM.REFINE.SEGMENTER_CONFIG: {e}") from None
    cfg = add_vps_config(get_cfg())
    cfg.merge_from_file(path)
    cfg.merge_from_list([str(x) for x in opts])
    cfg.MODEL.DEVICE = device
    cfg.MODEL.WEIGHTS = weights
    model = build_model(cfg)
    load_model_weights(model, weights)
    logger.info("Frozen segmenter %s from %s (%s)", type(model).__name__, weights, path)
    return FrozenSegmenter(model.to(device), name=os.path.basename(path))
