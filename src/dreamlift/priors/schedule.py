"""The DDPM noise schedule and deterministic DDIM moves, as pure tensor functions.

All schedule arithmetic runs in float32 whatever the model's dtype: in fp16, 1 - abar_t
near t=0 and sqrt(abar_t) near t=999 lose most of their digits.

Timestep convention (diffusers' ``DDIMScheduler`` with ``set_alpha_to_one=False``): a
negative timestep (e.g. ``t=-1``, or ``1 - 1000 // num_steps`` after the last step) stands
for the clean end of the chain, whose abar is ``final_alpha_cumprod`` — abar_0 when
``set_alpha_to_one`` is False (SD's setting), 1 when it is True.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")

Timestep = int | Tensor


@dataclass(frozen=True)
class NoiseSchedule:
    """abar_t over the training timesteps plus what the model predicts."""

    alphas_cumprod: Tensor
    final_alpha_cumprod: float
    prediction_type: str = "epsilon"
    timestep_spacing: str = "leading"
    steps_offset: int = 0

    @classmethod
    def from_scheduler_config(cls, config: dict[str, Any], device: torch.device) -> NoiseSchedule:
        """Build from any diffusers scheduler config (DDIM, PNDM, ... share these keys)."""
        from diffusers import DDIMScheduler

        # Keep only DDIM's own keys: a PNDM or Euler config carries others DDIM would warn about.
        keys = set(inspect.signature(DDIMScheduler.__init__).parameters) - {"self"}
        scheduler = DDIMScheduler(**{k: v for k, v in config.items() if k in keys})
        ac = scheduler.alphas_cumprod.to(device=device, dtype=torch.float32)
        final = 1.0 if scheduler.config.set_alpha_to_one else float(ac[0])
        prediction = scheduler.config.prediction_type
        if prediction not in PREDICTION_TYPES:
            raise ValueError(f"unsupported prediction_type {prediction!r}")
        return cls(
            alphas_cumprod=ac,
            final_alpha_cumprod=final,
            prediction_type=prediction,
            timestep_spacing=scheduler.config.timestep_spacing,
            steps_offset=int(scheduler.config.steps_offset),
        )

    @property
    def num_train_timesteps(self) -> int:
        return int(self.alphas_cumprod.shape[0])

    def timesteps(self, num_steps: int) -> Tensor:
        """The descending DDIM grid of ``DDIMScheduler.set_timesteps`` (int64)."""
        n, total = num_steps, self.num_train_timesteps
        if not 0 < n <= total:
            raise ValueError(f"num_steps must be in 1..{total}, got {n}")
        if self.timestep_spacing == "linspace":
            grid = torch.linspace(0, total - 1, n, dtype=torch.float64).round().flip(0)
        elif self.timestep_spacing == "trailing":
            ratio = total / n
            grid = torch.arange(total, 0, -ratio, dtype=torch.float64).round() - 1
        else:
            grid = (torch.arange(n, dtype=torch.float64) * (total // n)).flip(0) + self.steps_offset
        return grid.long().to(self.alphas_cumprod.device)

    def previous_timestep(self, t: Timestep, num_steps: int) -> Timestep:
        """The timestep a DDIM step from ``t`` lands on (``t - T // n``, as diffusers does)."""
        return t - self.num_train_timesteps // num_steps

    def alpha(self, t: Timestep, ndim: int = 4) -> Tensor:
        """abar_t (float32) shaped to broadcast over a batch of ``ndim``-dimensional tensors.

        Negative timesteps give ``final_alpha_cumprod`` (the clean end of the chain).
        """
        ac = self.alphas_cumprod
        t = torch.as_tensor(t, device=ac.device).long()
        final = torch.full_like(ac[:1], self.final_alpha_cumprod)
        a = torch.where(t >= 0, ac[t.clamp(min=0)], final)
        if a.ndim == 0:
            return a
        return a.reshape(-1, *([1] * (ndim - 1)))

    def add_noise(self, x0: Tensor, noise: Tensor, t: Timestep) -> Tensor:
        """The forward process: x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps."""
        a = self.alpha(t, x0.ndim)
        return (a.sqrt() * x0.float() + (1 - a).sqrt() * noise.float()).to(x0.dtype)

    def predict_x0(self, x_t: Tensor, t: Timestep, eps: Tensor) -> Tensor:
        """x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)."""
        a = self.alpha(t, x_t.ndim)
        return ((x_t.float() - (1 - a).sqrt() * eps.float()) / a.sqrt()).to(x_t.dtype)

    def eps_from_output(self, output: Tensor, x_t: Tensor, t: Timestep) -> Tensor:
        """Turn the UNet's output into an epsilon prediction, in float32.

        v-prediction (SD 2.x 768): v = sqrt(abar) eps - sqrt(1-abar) x0, so
        eps = sqrt(abar) v + sqrt(1-abar) x_t. Sample prediction: eps from x_t and x0.
        """
        out, x = output.float(), x_t.float()
        if self.prediction_type == "epsilon":
            return out
        a = self.alpha(t, x.ndim)
        if self.prediction_type == "v_prediction":
            return a.sqrt() * out + (1 - a).sqrt() * x
        return (x - a.sqrt() * out) / (1 - a).sqrt()

    def ddim_step(self, x_t: Tensor, t: Timestep, t_next: Timestep, eps: Tensor) -> Tensor:
        """Deterministic DDIM (eta=0) from ``t`` to ``t_next``, either direction.

        x_next = sqrt(abar_next) x0_hat + sqrt(1 - abar_next) eps. Denoising has
        ``t_next < t``; inversion ``t_next > t`` (with eps taken at the upper timestep, the
        usual approximation). A step and its reverse with the same eps cancel exactly.
        """
        a, a_next = self.alpha(t, x_t.ndim), self.alpha(t_next, x_t.ndim)
        e = eps.float()
        x0 = (x_t.float() - (1 - a).sqrt() * e) / a.sqrt()
        return (a_next.sqrt() * x0 + (1 - a_next).sqrt() * e).to(x_t.dtype)
