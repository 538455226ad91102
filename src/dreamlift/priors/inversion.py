"""DDIM inversion (Song et al., arXiv 2010.02502) and null-text inversion (Mokady et al.,
CVPR 2023, arXiv 2211.09794, Sec. 3: pivotal inversion, then null-text optimisation).

Plain DDIM inversion with the prompt at guidance 1 reconstructs well at guidance 1 but
drifts at guidance 7.5, which editing needs. Null-text inversion keeps the inverted noise
and instead optimises the unconditional embedding at each step so that the guided DDIM
trajectory passes through the inversion's latents.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from dreamlift.priors.text import TextEmbeddings

if TYPE_CHECKING:
    from dreamlift.priors.prior import DiffusionPrior


@torch.no_grad()
def ddim_invert(
    prior: DiffusionPrior,
    latents: Tensor,
    text: TextEmbeddings,
    num_steps: int = 50,
    guidance_scale: float = 1.0,
    depth: Tensor | None = None,
) -> list[Tensor]:
    """Run DDIM from the clean latents up the ``num_steps`` grid: [z_0, z_t1, …, z_T].

    Each move from t_prev to t uses eps evaluated at (z_{t_prev}, t) — the same pairing of
    latents and timestep that the matching denoising step uses, so invert-then-denoise with
    an exact eps would cancel. z_0 sits at the chain's clean end (abar = final_alpha_cumprod).
    """
    z = latents.float()
    trajectory = [z]
    for t in prior.timesteps(num_steps).flip(0):
        eps = prior.predict_eps(z, t, text, guidance_scale, depth)
        z = prior.ddim_step(z, prior.previous_timestep(t, num_steps), t, eps)
        trajectory.append(z)
    return trajectory


def null_text_lr(step: int) -> float:
    """Mokady et al.'s Adam learning rate for outer step i: 1e-2 (1 - i/100), floored at 1e-4.

    The floor only matters beyond 99 steps, where the paper's formula would turn negative.
    """
    return max(1e-2 * (1.0 - step / 100.0), 1e-4)


def null_text_inversion(
    prior: DiffusionPrior,
    latents: Tensor,
    text: TextEmbeddings,
    num_steps: int = 50,
    guidance_scale: float = 7.5,
    inner_steps: int = 10,
    depth: Tensor | None = None,
    early_stop_eps: float = 1e-5,
) -> tuple[Tensor, list[Tensor]]:
    """Invert ``latents`` so that guided DDIM sampling reproduces them.

    1. DDIM-invert with the prompt at guidance 1 → pivots z*_0 … z*_T.
    2. From z_T down, for each step i keep an unconditional embedding phi_i (initialised from
       the previous step's, first from ``text.uncond``), and take up to ``inner_steps`` Adam
       steps (lr 1e-2 (1 - i/100)) on ``mse(DDIM_step(z_t, eps_cfg(phi_i)), z*_{t-1})``,
       stopping once the loss is below ``early_stop_eps + i * 2e-5``.
    3. Advance z_t with the optimised phi_i.

    Returns z*_T and the ``num_steps`` embeddings for ``sample(..., null_embeddings=…)``.
    Diffusion Handles uses ``inner_steps=5``.
    """
    pivots = ddim_invert(prior, latents, text, num_steps, 1.0, depth)
    b = latents.shape[0]
    text = text.expand(b)
    z = pivots[-1]
    phi = text.uncond.detach().float().clone()
    phis: list[Tensor] = []
    for i, t in enumerate(prior.timesteps(num_steps)):
        t_prev = prior.previous_timestep(t, num_steps)
        target = pivots[num_steps - i - 1]
        with torch.no_grad():
            eps_cond = prior.unet_eps(z, t, text.cond, depth)
        # A fresh leaf per step: Adam updates in place, and earlier steps' phis must not move.
        phi = phi.detach().clone().requires_grad_(True)
        optimizer = torch.optim.Adam([phi], lr=null_text_lr(i))
        threshold = early_stop_eps + i * 2e-5
        for _ in range(inner_steps):
            with torch.enable_grad():
                eps_uncond = prior.unet_eps(z, t, phi, depth)
                eps = eps_uncond + guidance_scale * (eps_cond - eps_uncond)
                loss = F.mse_loss(prior.ddim_step(z, t, t_prev, eps), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if loss.item() < threshold:
                break
        phi = phi.detach()
        phis.append(phi.to(text.cond.dtype))
        with torch.no_grad():
            eps = prior.predict_eps(z, t, text.with_uncond(phi), guidance_scale, depth)
            z = prior.ddim_step(z, t, t_prev, eps)
    return pivots[-1], phis
