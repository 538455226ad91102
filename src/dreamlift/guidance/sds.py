"""Score Distillation Sampling (DreamFusion, arXiv 2209.14988, Sec. 3; GE3D supp. Eq. 16), x0 forms.

Per view: t ~ U[t_min, t_max], z_t = sqrt(ᾱ_t) z + sqrt(1-ᾱ_t) eps, and the CFG epsilon
eps_cfg(z_t, t). Three ways to turn it into a gradient on the render:

* ``"eps"`` (classic): grad_z = w(t) (eps_cfg - eps), injected into z = E(x).
* ``"latent_x0"`` (MVDream, arXiv 2308.16512; Perturb-and-Revise, arXiv 2412.05279): the
  target is x̂0 of the CFG prediction, optionally std-rescaled toward the conditional x̂0,
  and L = 0.5 ||z - sg(x̂0)||^2 / B. Up to the weighting this is the eps form with
  w = sqrt((1-ᾱ)/ᾱ).
* ``"x0"`` (image space): decode the target and take 0.5 ||x - sg(D(x̂0))||^2 / B on the
  render itself. The toy-prior experiment found this stable where plain SDS through its
  encoder gave adversarial texture, because the encoder's Jacobian never enters.

Random draws, in order: t (one per view), then the noise. Either can be given in the
input instead (``GuidanceInput.t`` / ``.noise``; not drawn then); ``last_draws`` records both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from dreamlift.guidance.base import (
    Guidance,
    GuidanceDraws,
    GuidanceError,
    GuidanceInput,
    decoded_target_gradient,
    noise_or_draw,
    register_guidance,
    timesteps_or_draw,
)
from dreamlift.guidance.perpneg import PerpNegConfig, guided_eps
from dreamlift.guidance.schedules import sds_t_range
from dreamlift.priors import DiffusionPrior

SDSForm = Literal["eps", "x0", "latent_x0"]
Weighting = Literal["auto", "sds", "uniform"]


@dataclass
class SDSConfig:
    """Score distillation settings. Defaults follow what worked with the toy prior."""

    guidance_scale: float = 7.5
    """CFG scale. DreamFusion's 100 over-saturates a small sharp prior (toy runs: 3-7.5 best)."""
    t_range: tuple[float, float] = (0.02, 0.98)
    """(t_min, t_max) as fractions of the chain at step 0."""
    t_max_end: float | None = 0.5
    """t_max anneals linearly to this (None: fixed range); large t shapes, small t details."""
    anneal_fraction: float = 1.0
    """Fraction of the run over which t_max anneals."""
    t_min_end: float | None = None
    """t_min anneals linearly to this too (None: fixed); Perturb-and-Revise's revise stage."""
    weighting: Weighting = "auto"
    """w(t): "sds" 1-ᾱ_t (DreamFusion), "uniform" 1; "auto" = "sds" for the eps form and
    "uniform" for the x0 forms, whose residual already carries sqrt((1-ᾱ)/ᾱ)."""
    form: SDSForm = "eps"
    """Gradient form; see the module docstring."""
    recon_std_rescale: float = 0.0
    """x0 forms: blend toward the std of the conditional x̂0 (MVDream/PnR use 0.5)."""
    std_group: int = 1
    """Views per std-rescale group (MVDream: its 4 views); the batch must divide by it."""
    negative_prompt: str = ""
    """The uncond branch ("" = the empty prompt)."""
    perpneg: PerpNegConfig = field(default_factory=PerpNegConfig)
    """Perp-Neg instead of plain CFG (needs prompt and azimuths in the input)."""


def sds_weight(alpha_bar: Tensor, weighting: str) -> Tensor:
    """w(t) of SDS: 1 - ᾱ_t ("sds") or 1 ("uniform")."""
    if weighting == "sds":
        return 1.0 - alpha_bar
    if weighting == "uniform":
        return torch.ones_like(alpha_bar)
    raise GuidanceError(f"unknown SDS weighting {weighting!r}", hint="use sds or uniform")


def resolve_weighting(config: SDSConfig) -> str:
    """The weighting "auto" stands for: "sds" for the eps form, "uniform" for x0 forms."""
    if config.weighting != "auto":
        return config.weighting
    return "sds" if config.form == "eps" else "uniform"


def std_rescaled_x0(x0_cfg: Tensor, x0_cond: Tensor, rescale: float, group: int) -> Tensor:
    """MVDream's target: r f x̂0_cfg + (1 - r) x̂0_cfg, f = std(x̂0_cond) / std(x̂0_cfg).

    The std is taken over each group of ``group`` consecutive views (MVDream-threestudio's
    ``multiview_diffusion_guidance.py``, ``recon_std_rescale``, as Perturb-and-Revise runs
    it); it undoes the over-saturation a large CFG scale puts into x̂0.
    """
    if rescale == 0.0:
        return x0_cfg
    b = x0_cfg.shape[0]
    if b % group:
        raise GuidanceError(f"batch {b} does not split into std groups of {group}")
    shape = (b // group, -1)
    factor = x0_cond.reshape(shape).std(1) / (x0_cfg.reshape(shape).std(1) + 1e-8)
    factor = factor.repeat_interleave(group).reshape(-1, *([1] * (x0_cfg.ndim - 1)))
    return rescale * factor * x0_cfg + (1.0 - rescale) * x0_cfg


@register_guidance("sds", SDSConfig)
class SDSGuidance(Guidance[SDSConfig]):
    """Score distillation sampling; returns ``{"loss_sds": ...}``."""

    def losses(self, prior: DiffusionPrior, inp: GuidanceInput) -> dict[str, Tensor]:
        cfg = self.config
        self.refuse_draws(inp, "nodes")
        image_form = cfg.form == "x0"
        if image_form:
            self.require_images(inp, "SDS form 'x0'", "form 'latent_x0'")
        if cfg.form not in ("eps", "x0", "latent_x0"):
            raise GuidanceError(f"unknown SDS form {cfg.form!r}", hint="eps, x0 or latent_x0")
        text = self.guided_text(prior, inp, cfg.negative_prompt, cfg.perpneg)
        z = self.latents(prior, inp, grad=not image_form)
        b, total = z.shape[0], prior.num_train_timesteps
        t_min, t_max = sds_t_range(
            inp.step,
            inp.total_steps,
            cfg.t_range,
            cfg.t_max_end,
            cfg.anneal_fraction,
            cfg.t_min_end,
        )
        lo, hi = round(total * t_min), min(round(total * t_max), total - 1)
        t = timesteps_or_draw(inp, lo, hi + 1, b, total, self.name).to(z.device)
        noise = noise_or_draw(inp, z, self.name)
        self.last_draws = GuidanceDraws(t=t, noise=noise)
        w = sds_weight(prior.alphas_cumprod[t], resolve_weighting(cfg)).reshape(
            -1, *([1] * (z.ndim - 1))
        )

        with torch.no_grad():
            z_t = prior.add_noise(z.detach(), noise, t)
            eps, eps_cond = guided_eps(prior, z_t, t, text, cfg.guidance_scale, inp.depth)
            if cfg.form == "eps":
                grad = w * (eps - noise)
            else:
                x0 = std_rescaled_x0(
                    prior.predict_x0(z_t, t, eps),
                    prior.predict_x0(z_t, t, eps_cond),
                    cfg.recon_std_rescale,
                    cfg.std_group,
                )
                if image_form:
                    grad = decoded_target_gradient(prior, inp.images, x0, w)
                else:
                    grad = w * (z.detach() - x0)

        loss = self.inject(inp.images if image_form else z, grad)
        self.last_info.update(
            {
                "t": float(t.float().mean()),
                "t_min": t_min,
                "t_max": t_max,
                "w": float(w.mean()),
                "grad_norm": float(grad.flatten(1).norm(dim=1).mean()),
            }
        )
        return {"loss_sds": loss}
