"""Denoising steps steered by an energy on UNet features (classifier-guidance style).

Diffusion Handles (arXiv 2312.02190, Sec. 5.2) re-generates an image while pulling the UNet's
decoder activations toward lifted-and-transformed copies of the recorded ones. The paper
adds lambda * grad G to eps (Eq. 3); its code instead takes a few explicit gradient steps on
the latent before each guided DDIM step. Both are available:

- ``mode="latent"`` (DH code): ``opt_steps`` times z ← z − weight · ∇_z G(features(z, t)),
  then one CFG DDIM step from the updated z.
- ``mode="eps"`` (DH paper, classifier guidance): eps ← eps_cfg + weight · ∇_z G, one step.

Features always come from a conditional-only UNet pass with gradient enabled, the same pass
type the recording uses (as in the authors' code: energies between activations of different
pass types would compare unlike things); the CFG step itself runs without gradient.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor

from dreamlift.priors.schedule import Timestep
from dreamlift.priors.text import TextEmbeddings

if TYPE_CHECKING:
    from dreamlift.priors.prior import DiffusionPrior

EnergyFn = Callable[[dict[str, Tensor], int], Tensor]
"""energy(features by layer name, inner step k) → scalar; k lets weights vary per step."""


@dataclass(frozen=True)
class EnergyGuidance:
    """How strongly and how an energy steers a step (DH: weight 0.1, 3 latent steps)."""

    weight: float = 0.1
    opt_steps: int = 3
    mode: Literal["latent", "eps"] = "latent"

    def __post_init__(self) -> None:
        if self.mode not in ("latent", "eps"):
            raise ValueError(f"mode must be 'latent' or 'eps', got {self.mode!r}")
        if self.opt_steps < 1:
            raise ValueError("opt_steps must be at least 1")


@dataclass
class GuidedStep:
    """The step's result, the latents the CFG step started from, and the energies seen."""

    latents: Tensor
    guided_latents: Tensor
    energies: list[float] = field(default_factory=list)


def energy_gradient(
    prior: DiffusionPrior,
    latents: Tensor,
    t: Timestep,
    text: TextEmbeddings,
    energy_fn: EnergyFn,
    layers: Sequence[str],
    step: int = 0,
    depth: Tensor | None = None,
) -> tuple[Tensor, float]:
    """∇_z G(features(z, t)) and G, from one conditional-only UNet pass with gradient."""
    z = latents.detach().float().requires_grad_(True)
    with torch.enable_grad():
        features = prior.features(z, t, text, layers, depth)
        energy = energy_fn(features, step)
        (grad,) = torch.autograd.grad(energy, z)
    return grad, float(energy.detach())


def guided_step(
    prior: DiffusionPrior,
    latents: Tensor,
    t: Timestep,
    t_next: Timestep,
    text: TextEmbeddings,
    guidance_scale: float,
    energy_fn: EnergyFn,
    layers: Sequence[str],
    config: EnergyGuidance | None = None,
    depth: Tensor | None = None,
) -> GuidedStep:
    """One DDIM step from ``t`` to ``t_next`` with energy guidance (see the module doc)."""
    cfg = config or EnergyGuidance()
    z = latents.detach().float()
    energies: list[float] = []
    if cfg.mode == "latent":
        for k in range(cfg.opt_steps):
            grad, energy = energy_gradient(prior, z, t, text, energy_fn, layers, k, depth)
            energies.append(energy)
            z = z - cfg.weight * grad
        with torch.no_grad():
            eps = prior.predict_eps(z, t, text, guidance_scale, depth)
    else:
        grad, energy = energy_gradient(prior, z, t, text, energy_fn, layers, 0, depth)
        energies.append(energy)
        with torch.no_grad():
            eps = prior.predict_eps(z, t, text, guidance_scale, depth) + cfg.weight * grad
    with torch.no_grad():
        z_next = prior.ddim_step(z, t, t_next, eps)
    return GuidedStep(latents=z_next, guided_latents=z, energies=energies)
