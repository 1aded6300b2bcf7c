"""Diffusion of the mask latent: embedding, continuous-time cosine schedule, DDIM sampling.

The segmentation mask lives in a latent space (DDP-style, continuous time t in [0, 1]):

* :class:`MaskLatentEmbedding`: the 1/4-resolution mask (0/1) -> ``Embedding(2, C)``
  -> ``(sigmoid(e) * 2 - 1) * bit_scale``: a (B, C, h, w) latent z_0;
* :func:`cosine_log_snr`: ``logSNR(t) = -log(max(cos((t + 2e-4) / 1.00025 * pi / 2)^-2 - 1,
  1e-5))``; :func:`alpha_sigma`: ``alpha = sqrt(sigmoid(logSNR))``,
  ``sigma = sqrt(sigmoid(-logSNR))`` (so alpha^2 + sigma^2 = 1);
* :func:`q_sample`: ``z_t = alpha(t) z_0 + sigma(t) eps``;
* :class:`DDIMSampler`: deterministic DDIM (eta = 0) from z ~ N(0, I) at t = 1 to t = 0 in
  ``steps`` equal time steps. At each step the model predicts x_0 (mask logits); the
  prediction is re-embedded as a latent (:meth:`MaskLatentEmbedding.reembed`) and the next
  latent is ``alpha_next x0 + sigma_next eps_hat`` with ``eps_hat = (z_t - alpha_now x0) /
  sigma_now``, so every step really feeds back the previous step's prediction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn as nn

__all__ = [
    "DDIMSampler",
    "MaskLatentEmbedding",
    "REEMBED_MODES",
    "SAMPLER_OUTPUTS",
    "alpha_sigma",
    "cosine_log_snr",
    "noise_from_generators",
    "q_sample",
]

REEMBED_MODES = ("threshold", "prob")
SAMPLER_OUTPUTS = ("mean", "last")

# Offsets of the cosine schedule (t + _NS) / (1 + _DS) and the floor of cos^-2 - 1.
_NS, _DS, _FLOOR = 0.0002, 0.00025, 1e-5


def cosine_log_snr(t: torch.Tensor) -> torch.Tensor:
    """Continuous-time cosine schedule: t (any shape) in [0, 1] -> log-SNR (same shape).

    ``-log(clamp(cos((t + 0.0002) / 1.00025 * pi / 2) ** -2 - 1, min=1e-5))``: about
    +11.5 at t = 0 (almost clean) and -18.9 at t = 1 (pure noise), decreasing in t.
    """
    if t.dtype != torch.float64:
        t = t.float()
    c = torch.cos((t + _NS) / (1 + _DS) * math.pi * 0.5)
    return -torch.log(torch.clamp(c.pow(-2) - 1, min=_FLOOR))


def alpha_sigma(log_snr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log-SNR -> (alpha, sigma) = (sqrt(sigmoid(logSNR)), sqrt(sigmoid(-logSNR)))."""
    return torch.sigmoid(log_snr).sqrt(), torch.sigmoid(-log_snr).sqrt()


def _per_sample(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, 1, ...) broadcastable against ``like`` (B, ...), in like's dtype."""
    return v.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))


def q_sample(z0: torch.Tensor, log_snr: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Forward process: z0 (B, C, h, w), log_snr (B,), noise like z0 -> z_t (B, C, h, w)."""
    alpha, sigma = alpha_sigma(log_snr)
    return _per_sample(alpha, z0) * z0 + _per_sample(sigma, z0) * noise


def noise_from_generators(
    shape: Sequence[int], generators: Sequence[torch.Generator], device, dtype=torch.float32
) -> torch.Tensor:
    """Standard normal noise (len(generators), *shape) on ``device``, sample i drawn from
    generators[i] alone: a sample's noise does not depend on the other samples of the batch.

    Drawn on each generator's own device, then moved: with CPU generators (what
    ``DiffVPS.frame_generator`` makes) the noise, hence the output, is the same on the CPU
    and on a GPU (a CUDA generator draws other numbers from the same seed).
    """
    noise = [torch.randn(tuple(shape), generator=g, device=g.device) for g in generators]
    return torch.stack(noise).to(device=device, dtype=dtype, non_blocking=True)


class MaskLatentEmbedding(nn.Module):
    """Mask <-> latent: ``Embedding(2, channels)``, latent = (sigmoid(e) * 2 - 1) * bit_scale.

    forward: mask (B, h, w) with values 0/1 (any dtype) -> latent (B, channels, h, w).
    """

    def __init__(self, channels: int = 64, bit_scale: float = 0.01) -> None:
        super().__init__()
        if bit_scale <= 0:
            raise ValueError(f"MODEL.DIFF_VPS.DIFFUSION.BIT_SCALE must be > 0, got {bit_scale}")
        self.embedding = nn.Embedding(2, channels)
        self.bit_scale = float(bit_scale)

    def codes(self) -> torch.Tensor:
        """The two latent codes (2, channels): row 0 background, row 1 polyp."""
        return (self.embedding.weight.sigmoid() * 2 - 1) * self.bit_scale

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        idx = (mask > 0.5).long()  # B, h, w
        return self.codes()[idx].permute(0, 3, 1, 2).contiguous()  # B, C, h, w

    def embed_prob(self, prob: torch.Tensor) -> torch.Tensor:
        """Foreground probabilities (B, h, w) -> p * code_1 + (1 - p) * code_0 (B, C, h, w)."""
        c = self.codes()
        p = prob[:, None].to(c.dtype)
        return p * c[1].view(1, -1, 1, 1) + (1 - p) * c[0].view(1, -1, 1, 1)

    def reembed(self, logits: torch.Tensor, mode: str = "threshold") -> torch.Tensor:
        """A step's x0 prediction, mask logits (B, 1, h, w) -> latent (B, C, h, w):
        ``"threshold"`` embeds the mask sigmoid > 0.5, ``"prob"`` the probabilities."""
        prob = logits[:, 0].sigmoid()
        if mode == "threshold":
            return self(prob)
        if mode == "prob":
            return self.embed_prob(prob)
        raise ValueError(
            f"MODEL.DIFF_VPS.DIFFUSION.REEMBED must be one of {REEMBED_MODES}, got {mode!r}"
        )


class DDIMSampler:
    """DDIM (eta = 0) over ``steps`` equal steps of continuous time from 1 to 0.

    ``sample(predict, noise)``: ``predict(z_t (B, C, h, w), log_snr (B,)) -> dict`` with
    ``"x0"`` (B, C, h, w), the re-embedded x0 prediction, and any other tensors (mask
    logits, class logits, box). Returns a dict with, for every key but ``"x0"``, the
    ``output`` reduction over steps ("mean" or "last"), plus ``"latents"``: the list of the
    ``steps + 1`` latents visited (the noise first) and ``"x0"``: the per-step x0 list.
    """

    def __init__(self, steps: int = 3, output: str = "mean") -> None:
        if int(steps) < 1:
            raise ValueError(f"MODEL.DIFF_VPS.DIFFUSION.SAMPLE_STEPS must be >= 1, got {steps}")
        if output not in SAMPLER_OUTPUTS:
            raise ValueError(
                f"MODEL.DIFF_VPS.DIFFUSION.OUTPUT must be one of {SAMPLER_OUTPUTS}, got {output!r}"
            )
        self.steps = int(steps)
        self.output = output

    def times(self) -> list[float]:
        """The ``steps + 1`` times visited, 1 -> 0."""
        return [1.0 - i / self.steps for i in range(self.steps + 1)]

    @staticmethod
    def step(
        z: torch.Tensor, x0: torch.Tensor, log_snr_now: torch.Tensor, log_snr_next: torch.Tensor
    ) -> torch.Tensor:
        """One DDIM update (eta = 0): z_t (B, C, h, w), predicted x0, log-SNRs (B,) -> z_next."""
        a_now, s_now = alpha_sigma(log_snr_now)
        a_next, s_next = alpha_sigma(log_snr_next)
        eps = (z - _per_sample(a_now, z) * x0) / _per_sample(s_now.clamp(min=1e-8), z)
        return _per_sample(a_next, z) * x0 + _per_sample(s_next, z) * eps

    def sample(
        self, predict: Callable[[torch.Tensor, torch.Tensor], dict], noise: torch.Tensor
    ) -> dict:
        b = noise.shape[0]
        times = self.times()
        z = noise
        latents, x0s, outs = [z], [], []
        for t_now, t_next in zip(times[:-1], times[1:]):
            ls_now = cosine_log_snr(torch.full((b,), t_now, device=z.device))
            ls_next = cosine_log_snr(torch.full((b,), t_next, device=z.device))
            pred = predict(z, ls_now)
            x0 = pred["x0"]
            z = self.step(z, x0, ls_now, ls_next)
            latents.append(z)
            x0s.append(x0)
            outs.append(pred)
        result: dict = {"latents": latents, "x0": x0s}
        for key in outs[0]:
            if key == "x0":
                continue
            vals = [o[key] for o in outs]
            result[key] = vals[-1] if self.output == "last" else torch.stack(vals).mean(0)
        return result
