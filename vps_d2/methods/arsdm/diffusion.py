"""DDPM schedule and the DDIM sampler of ArSDM (pixel space, epsilon prediction).

* :func:`make_beta_schedule`: ``"scaled_linear"`` (the code's "linear":
  ``linspace(sqrt(b0), sqrt(b1), T) ** 2``) or ``"linear"`` (``linspace(b0, b1, T)``);
* :class:`GaussianDiffusion`: buffers ``betas`` (T,), ``alphas_cumprod`` (T,) with
  ``alphas_cumprod[i] = prod_{j <= i} (1 - betas[j])``; :meth:`~GaussianDiffusion.q_sample`
  ``x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) eps``; :meth:`~GaussianDiffusion.ddim_step` one
  DDIM update from step ``t`` to ``t_prev`` (``-1``: the chain's end, with the code's
  ``alphas_cumprod[0]``); :meth:`~GaussianDiffusion.ddim_timesteps` the uniform grid
  ``i * (T // S) + 1`` (the code's; without the + 1 when S = T);
* :meth:`~GaussianDiffusion.ddim_sample`: x_T -> x_0 along the grid, eta configurable,
  every random draw from ``noise_fn`` so a seeded generator fixes the result.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

__all__ = ["BETA_SCHEDULES", "GaussianDiffusion", "make_beta_schedule"]

BETA_SCHEDULES = ("scaled_linear", "linear")

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
NoiseFn = Callable[[tuple], torch.Tensor]


def make_beta_schedule(kind: str, timesteps: int, start: float, end: float) -> torch.Tensor:
    """(T,) float64 betas: ``"scaled_linear"`` ``linspace(sqrt(start), sqrt(end), T) ** 2``
    or ``"linear"`` ``linspace(start, end, T)``."""
    if kind == "scaled_linear":
        return torch.linspace(start**0.5, end**0.5, timesteps, dtype=torch.float64) ** 2
    if kind == "linear":
        return torch.linspace(start, end, timesteps, dtype=torch.float64)
    raise ValueError(
        f"MODEL.ARSDM.DIFFUSION.BETA_SCHEDULE must be one of {BETA_SCHEDULES}, got {kind!r}"
    )


class GaussianDiffusion(nn.Module):
    """The forward process and DDIM reverse steps (buffers only, no parameters)."""

    def __init__(self, betas: torch.Tensor) -> None:
        super().__init__()
        betas = betas.double()
        if betas.dim() != 1 or not ((betas > 0) & (betas < 1)).all():
            raise ValueError("MODEL.ARSDM.DIFFUSION: every beta must be in (0, 1)")
        self.num_timesteps = int(betas.numel())
        self.register_buffer("betas", betas.float(), persistent=False)
        self.register_buffer(
            "alphas_cumprod", torch.cumprod(1.0 - betas, dim=0).float(), persistent=False
        )

    @classmethod
    def from_config(cls, cfg) -> GaussianDiffusion:
        d = cfg.MODEL.ARSDM.DIFFUSION
        return cls(make_beta_schedule(d.BETA_SCHEDULE, d.TIMESTEPS, d.BETA_START, d.BETA_END))

    def _abar(self, t: torch.Tensor) -> torch.Tensor:
        """alphas_cumprod at integer steps t (N,) (-1 = the chain's end: alphas_cumprod[0])
        -> (N, 1, 1, 1)."""
        return self.alphas_cumprod[t.clamp(min=0)].view(-1, 1, 1, 1)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_0 (N, C, H, W), t (N,), eps (N, C, H, W) -> x_t = sqrt(a_t) x_0 + sqrt(1-a_t) eps."""
        a = self._abar(t).to(x0.dtype)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """The one-step estimate (x_t - sqrt(1 - a_t) eps) / sqrt(a_t)."""
        a = self._abar(t).to(x_t.dtype)
        return (x_t - (1 - a).sqrt() * eps) / a.sqrt()

    def ddim_timesteps(self, steps: int) -> list[int]:
        """The ascending uniform DDIM grid of ``steps`` steps: ``i * (T // steps) + 1``
        (``i`` without the + 1 when ``steps`` == T)."""
        T = self.num_timesteps
        if not 1 <= int(steps) <= T:
            raise ValueError(f"DDIM steps must be in [1, {T}] (MODEL.ARSDM.*.STEPS), got {steps}")
        c = T // int(steps)
        shift = 1 if c > 1 else 0
        return [i * c + shift for i in range(int(steps))]

    def ddim_step(
        self,
        x_t: torch.Tensor,
        eps: torch.Tensor,
        t: torch.Tensor,
        t_prev: torch.Tensor,
        eta: float,
        noise: torch.Tensor | None,
        clip: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One DDIM update: returns (x_{t_prev}, predicted x_0), all (N, C, H, W).

        ``x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev - sigma^2) eps + sigma z`` with
        ``sigma = eta sqrt((1 - a_prev) / (1 - a_t) (1 - a_t / a_prev))``; ``t_prev`` -1 is
        the end of the chain (a_prev = alphas_cumprod[0], the code's). ``clip``: x0 clamped
        to [-1, 1] and eps recomputed from it (guided diffusion's ``clip_denoised``).
        """
        a_t = self._abar(t).to(x_t.dtype)
        a_prev = self._abar(t_prev).to(x_t.dtype)
        x0 = (x_t - (1 - a_t).sqrt() * eps) / a_t.sqrt()
        if clip:
            x0 = x0.clamp(-1, 1)
            eps = (x_t - a_t.sqrt() * x0) / (1 - a_t).sqrt()
        sigma = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)).clamp(min=0).sqrt()
        x_prev = a_prev.sqrt() * x0 + (1 - a_prev - sigma**2).clamp(min=0).sqrt() * eps
        if eta > 0:
            x_prev = x_prev + sigma * noise
        return x_prev, x0

    def ddim_sample(
        self,
        eps_fn: EpsFn,
        x_T: torch.Tensor,
        steps: int,
        eta: float,
        noise_fn: NoiseFn | None = None,
        clip: bool = False,
    ) -> torch.Tensor:
        """x_T (N, C, H, W) -> x_0 along the DDIM grid of ``steps`` (``eps_fn(x, t)`` the
        noise prediction; ``noise_fn(shape)`` the step noises when eta > 0; ``clip`` each
        step's x0 to [-1, 1])."""
        grid = self.ddim_timesteps(steps)
        return self.reverse(eps_fn, x_T, grid[::-1], eta, noise_fn, clip=clip)

    def reverse(
        self,
        eps_fn: EpsFn,
        x: torch.Tensor,
        timesteps: list[int],
        eta: float,
        noise_fn: NoiseFn | None = None,
        eps_first: torch.Tensor | None = None,
        grad_steps: int = 0,
        clip: bool = False,
    ) -> torch.Tensor:
        """The DDIM chain from ``x`` at ``timesteps[0]`` down to the end, over the
        descending ``timesteps``. ``eps_first``: the noise prediction at the first step when
        already computed. ``grad_steps`` > 0: only the last ``grad_steps`` updates keep a
        graph (the others run under no_grad). ``clip``: see :meth:`ddim_step`."""
        n = x.shape[0]
        if eta > 0 and noise_fn is None:
            noise_fn = lambda shape: torch.randn(shape, device=x.device, dtype=x.dtype)  # noqa: E731
        total = len(timesteps)
        for i, t in enumerate(timesteps):
            t_prev = timesteps[i + 1] if i + 1 < total else -1
            keep_graph = grad_steps <= 0 or i >= total - grad_steps
            noise = noise_fn(tuple(x.shape)) if eta > 0 else None
            tt = torch.full((n,), t, device=x.device, dtype=torch.long)
            tp = torch.full((n,), t_prev, device=x.device, dtype=torch.long)
            with torch.set_grad_enabled(keep_graph and torch.is_grad_enabled()):
                eps = eps_first if (i == 0 and eps_first is not None) else eps_fn(x, tt)
                if not keep_graph:
                    eps = eps.detach()
                x, _ = self.ddim_step(x, eps, tt, tp, eta, noise, clip)
        return x
