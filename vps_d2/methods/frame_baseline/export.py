"""FrameBaseline's exportable streaming step: frame-wise, so no state."""

from __future__ import annotations

import torch

from vps_d2.modeling.export import STREAMING_STEP_REGISTRY, StreamingStep

__all__ = ["FrameBaselineStep"]


@STREAMING_STEP_REGISTRY.register_as("FrameBaseline")
class FrameBaselineStep(StreamingStep):
    """``forward(image uint8 (1, 3, H, W)) -> (prob (1, H, W),)``."""

    def forward(self, image: torch.Tensor, *inputs: torch.Tensor) -> tuple[torch.Tensor]:
        logits = self.model.predict_logits(self.preprocess(image))
        return (self.to_probs(logits, image),)
