"""Diff-VPS's training step: the generator ("main") and the discriminator, alternating.

Order per iteration (the public code's, without its bugs):

1. generator forward (``mode="generator"``): the weighted L_MDM and reconstruction losses,
   the real target frames and the reconstructions (with their graph);
2. discriminator step (``mode="discriminator"``): L_D on the real frames and the DETACHED
   reconstructions, minimised by the "discriminator" optimizer only;
3. adversarial forward (``mode="adversarial"``) through the UPDATED discriminator: the
   generator's losses + ADV x (-log D(fake)), whose gradient flows into the reconstruction
   decoder and the temporal encoder; minimised by the "main" optimizer only.

Every forward goes through the (DDP-)wrapped model; step 3 takes the generator's losses as
input and returns them, so the one backward of the generator loss starts from tensors of
that forward and DDP (with SOLVER.DDP.FIND_UNUSED_PARAMETERS) reduces every parameter once.
Without a discriminator (ablations) only the "main" step runs.
"""

from __future__ import annotations

import torch

from vps_d2.solver.train_step import TRAIN_STEP_REGISTRY, TrainStep

__all__ = ["DiffVPSTrainStep"]


@TRAIN_STEP_REGISTRY.register()
class DiffVPSTrainStep(TrainStep):
    def __call__(self, model, data, optim) -> dict[str, dict[str, torch.Tensor]]:
        out = model(data, mode="generator")
        if out.get("fake") is None:
            optim.minimize("main", out["losses"])
            return {"main": out["losses"]}
        d_losses = model({"real": out["real"], "fake": out["fake"].detach()}, mode="discriminator")
        optim.minimize("discriminator", d_losses)
        g_losses = model({"fake": out["fake"], "losses": out["losses"]}, mode="adversarial")
        optim.minimize("main", g_losses)
        return {"main": g_losses, "discriminator": d_losses}
