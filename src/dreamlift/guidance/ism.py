"""Interval Score Matching (LucidDreamer, arXiv 2311.11284) — GE3D's baseline and code base.

SDS compares eps_cfg with the random noise it added; ISM compares it with the model's own
unconditional eps one interval earlier on a DDIM-inversion trajectory:

    z_0 → … → z_s  (DDIM inversion, uncond, steps of ``xs_delta_t``, at most ``xs_inv_steps``)
    z_s → z_t      (one more inversion step, s = t - delta_t)
    grad = w(t) (eps_cfg(z_t, t) - eps_u(z_s, s)),   w(t) = sqrt((1 - ᾱ_t) / ᾱ_t).

The inversion is GE3D's noising trajectory over the nodes [start, …, s, t], so with s = 0
and the same clean-end convention ISM is GE3D with one node (GE3D Sec. 3.2, Eq. 6-7).

Random draws, in order: t (one for the batch), then the noise. Either can be given in the
input instead (``GuidanceInput.t``, one value for every view, / ``.noise``, channel offset
included; not drawn then); ``last_draws`` records both, t repeated per view.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dreamlift.guidance.base import (
    Guidance,
    GuidanceDraws,
    GuidanceError,
    GuidanceInput,
    given_timesteps,
    noise_or_draw,
    randint,
    register_guidance,
    start_latent,
)
from dreamlift.guidance.ge3d import noising_trajectory
from dreamlift.guidance.perpneg import guided_eps
from dreamlift.guidance.schedules import ism_interval, ism_t_max
from dreamlift.priors import DiffusionPrior


@dataclass
class ISMConfig:
    """ISM settings; defaults are LucidDreamer's (``arguments/__init__.py``, ``sd_utils.py``)."""

    guidance_scale: float = 7.5
    """CFG scale of eps_cfg(z_t, t); LucidDreamer's 7.5 (lower suits small priors)."""
    delta_t: int = 80
    """Interval t - s after warm-up."""
    delta_t_start: int = 100
    """Interval at step 0; anneals to ``delta_t`` over warm-up (``annealing_intervals``)."""
    xs_delta_t: int = 200
    """Step of the DDIM inversion from the clean latent to z_s."""
    xs_inv_steps: int = 5
    """Most inversion steps to z_s; the inversion starts at max(s - 200·5, 0)."""
    t_range: tuple[float, float] = (0.02, 0.5)
    """(t_min, t_max) as fractions of the chain after warm-up."""
    t_max_warmup: float = 0.98
    """t_max at step 0: the range starts wide for coarse shape and narrows over warm-up."""
    warmup_steps: int = 1500
    """Warm-up length in steps (LucidDreamer's ``warmup_iter``)."""
    negative_prompt: str = ""
    """The uncond branch of CFG and of the inversion."""
    noise_offset: float = 0.0
    """Per-channel noise offset shared across views (GE3D's code uses 0.1)."""
    exact_clean_end: bool = False
    """Start the inversion at the clean latent (ᾱ = 1) rather than add_noise(z, eps, 0)."""


def ism_weight(alpha_bar: Tensor) -> Tensor:
    """w(t) = sqrt((1 - ᾱ_t) / ᾱ_t): the factor that turns an eps gap into an x̂0 gap."""
    return ((1.0 - alpha_bar) / alpha_bar).sqrt()


def inversion_nodes(s: int, xs_delta_t: int, xs_inv_steps: int) -> list[int]:
    """[start, start + Δ, …, s] with start = max(s - Δ·steps, 0); the last step may be short."""
    nodes = [max(s - xs_delta_t * xs_inv_steps, 0)]
    while nodes[-1] < s:
        nodes.append(min(nodes[-1] + xs_delta_t, s))
    return nodes


@register_guidance("ism", ISMConfig)
class ISMGuidance(Guidance[ISMConfig]):
    """Interval score matching; returns ``{"loss_ism": ...}``."""

    def losses(self, prior: DiffusionPrior, inp: GuidanceInput) -> dict[str, Tensor]:
        cfg = self.config
        self.refuse_draws(inp, "nodes")
        text = self.text(prior, inp, cfg.negative_prompt)
        z = self.latents(prior, inp)
        total = prior.num_train_timesteps
        t_max = ism_t_max(inp.step, cfg.warmup_steps, cfg.t_range[1], cfg.t_max_warmup)
        lo, hi = round(total * cfg.t_range[0]), min(round(total * t_max), total - 1)
        if inp.t is None:
            t = int(randint(max(lo, 1), hi, 1, inp.generator))
        else:
            given = given_timesteps(inp.t, z.shape[0], total, self.name)
            if bool((given != given[0]).any()):
                raise GuidanceError(
                    f"ism guidance takes one t for all views, got {given.tolist()}",
                    hint="give GuidanceInput.t as a single timestep",
                )
            t = int(given[0])
        s = max(t - ism_interval(inp.step, cfg.warmup_steps, cfg.delta_t, cfg.delta_t_start), 0)
        noise = noise_or_draw(inp, z, self.name, cfg.noise_offset)
        self.last_draws = GuidanceDraws(
            t=torch.full((z.shape[0],), t, dtype=torch.long, device=z.device), noise=noise
        )

        with torch.no_grad():
            nodes = [*inversion_nodes(s, cfg.xs_delta_t, cfg.xs_inv_steps), t]
            x_start = start_latent(prior, z, noise, nodes[0], cfg.exact_clean_end)
            inv = noising_trajectory(
                prior,
                x_start,
                nodes,
                text.uncond,
                exact_clean_end=cfg.exact_clean_end,
                depth=inp.depth,
            )
            eps_uncond_s = inv.eps[-1]
            eps_cfg, _ = guided_eps(prior, inv.latents[-1], t, text, cfg.guidance_scale, inp.depth)
            w = ism_weight(prior.alphas_cumprod[t])
            grad = w * (eps_cfg - eps_uncond_s)

        self.last_info.update(
            {
                "t": float(t),
                "s": float(s),
                "t_max": t_max,
                "w": float(w),
                "grad_norm": float(grad.flatten(1).norm(dim=1).mean()),
            }
        )
        return {"loss_ism": self.inject(z, grad)}
