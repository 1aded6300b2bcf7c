"""Diff-VPS's exportable streaming step: the temporal buffer as fixed-size state, the DDIM
loop unrolled, the per-frame seeded noise as an input.

State (with the temporal encoder, MODEL.DIFF_VPS.USE_TRM): ``buffer<j>`` (delta, C_j, h_j,
w_j) per level j, the temporal-encoder features of the previous delta frames (oldest first),
and ``valid`` (delta,) 0/1: slots not yet valid (the start of a video) take the current
frame's features, as the eager model fills its deque with frame 0. Frame input ``noise``
(C, h_1, w_1): the DDIM start, drawn outside the graph by the ``"diff_vps_noise"`` kind
from the frame's seed (:func:`~.model.frame_seed` of DIFFUSION.TEST_SEED, the video id and
the frame index), the same numbers as the eager model's.
"""

from __future__ import annotations

import torch

from vps_d2.modeling.export import (
    FRAME_INPUT_REGISTRY,
    STREAMING_STEP_REGISTRY,
    StreamingStep,
    TensorSpec,
)

from .model import frame_seed

__all__ = ["DiffVPSStep", "diff_vps_noise"]


@FRAME_INPUT_REGISTRY.register_as("diff_vps_noise")
def diff_vps_noise(params: dict, frame: dict, index: int) -> torch.Tensor:
    """One frame's DDIM start noise (C, h, w): ``params`` {"seed", "shape"}."""
    g = torch.Generator()
    g.manual_seed(frame_seed(int(params["seed"]), str(frame.get("video_id", "")), index))
    return torch.randn(tuple(params["shape"]), generator=g)


@STREAMING_STEP_REGISTRY.register_as("DiffVPS")
class DiffVPSStep(StreamingStep):
    """``forward(image (1, 3, H, W), [buffer0.., valid,] noise (1, C, h1, w1)) -> (prob
    (1, H, W)[, class_scores (1, K)][, box (1, 4), box_score (1,)], [next state])``."""

    def __init__(self, model) -> None:
        super().__init__(model)
        with torch.no_grad():
            x = torch.zeros(1, 3, *model.test_size, device=model.device)
            feats = model.backbone.frame_features(x) if model.use_trm else None
            h1 = model.priors(x, feats)[0]
        self._levels = [tuple(f.shape[1:]) for f in feats] if feats is not None else []
        self._noise = (model.mask_embed.embedding.embedding_dim, *h1.shape[-2:])
        names = ["prob"]
        if model.class_head is not None:
            names.append("class_scores")
        if model.box_head is not None:
            names += ["box", "box_score"]
        self.output_names = tuple(names)

    def state_specs(self) -> list[TensorSpec]:
        if not self._levels:
            return []
        d = self.model.delta
        specs = [TensorSpec(f"buffer{j}", (d, *s)) for j, s in enumerate(self._levels)]
        return specs + [TensorSpec("valid", (d,))]

    def frame_input_specs(self) -> list[TensorSpec]:
        params = {"seed": self.model.test_seed, "shape": list(self._noise)}
        return [TensorSpec("noise", self._noise, kind="diff_vps_noise", params=params)]

    def forward(self, image: torch.Tensor, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        m = self.model
        x = self.preprocess(image)
        n = len(self._levels)
        buffers, noise = list(args[:n]), args[-1]
        temporal, next_state = None, []
        if n:
            valid = args[n]
            feats = m.backbone.frame_features(x)
            filled = [
                torch.where(valid.view(-1, 1, 1, 1) > 0, b, f.expand_as(b))
                for b, f in zip(buffers, feats)
            ]
            temporal = [b.mean(0, keepdim=True) for b in filled]
            next_state = [torch.cat([b[1:], f]) for b, f in zip(filled, feats)]
            next_state.append(torch.ones_like(valid))
        out = m.sample_from_noise(x, m.priors(x, temporal), noise)
        prob = self.to_probs(out["mask_logits"], image)
        outputs = [prob]
        if "class_scores" in self.output_names:
            outputs.append(out["class_logits"].float().softmax(-1))
        if "box" in self.output_names:
            outputs += [out["box"].float().clamp(0, 1), prob.flatten(1).max(1).values]
        return (*outputs, *next_state)
