"""ArSDM's training step: the diffusion (and, every REFINE.PERIOD-th iteration, the
refinement) losses minimised by the "main" optimizer, then the EMA update of the U-Net.

The refinement decision depends on the iteration only, so every DDP process takes the same
branch and a resumed run repeats an uninterrupted one; the EMA weights and their update
count are part of the model's state dict, so checkpoints hold them.
"""

from __future__ import annotations

import torch

from vps_d2.solver.train_step import TRAIN_STEP_REGISTRY, TrainStep

__all__ = ["ArSDMTrainStep"]


@TRAIN_STEP_REGISTRY.register()
class ArSDMTrainStep(TrainStep):
    def __call__(self, model, data, optim) -> dict[str, dict[str, torch.Tensor]]:
        raw = getattr(model, "module", model)  # Fabric / DDP wrappers expose the module
        refine = raw.refines and optim.iteration % raw.refine_period == 0
        losses = model(data, refine=refine)
        optim.minimize("main", losses)
        raw.update_ema()
        return {"main": losses}
