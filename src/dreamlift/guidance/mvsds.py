"""Multi-view score distillation (MVDream, arXiv 2308.16512, Sec. 3.3; Perturb-and-Revise,
arXiv 2412.05279, Sec. 3) on a multi-view prior (:class:`~dreamlift.priors.MultiViewPrior`).

The views come in groups of V = 4 (generate renders them 90° apart in azimuth). Per group:
one t ~ U[t_min, t_max] shared by its views (the group is one diffusion state), eps ~ N(0, I)
per view, z_t = sqrt(ᾱ_t) z + sqrt(1-ᾱ_t) eps, and the 4 views denoised together, told their
cameras, in one CFG call (uncond branch: the negative prompt). The target is the
x0-reconstruction x̂0 of the CFG epsilon, std-rescaled toward the conditional x̂0 over each
group (``recon_std_rescale``, MVDream-threestudio's ``multiview_diffusion_guidance.py``), and

    L = 0.5 ||z - sg(x̂0)||² / B                  (form "latent_x0", MVDream's)
    L = 0.5 ||x - sg(D(x̂0))||² / B               (form "x0", on the renders)

(:mod:`dreamlift.guidance.base`'s reduction). The prompt is the view-free one for every view
(MVDream's guidance does not use view-dependent prompts: the camera says where the view is).
t bounds anneal linearly (MVDream's source stage: both from 0.98, to [0.02, 0.40] over 80 %
of the run; Perturb-and-Revise's revise stage: from 0.75).

Random draws, in order: t (one per group), then the noise. Either can be given
(``GuidanceInput.t``: one value, or one per view equal within each group; ``.noise``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from dreamlift.guidance.base import (
    Guidance,
    GuidanceDraws,
    GuidanceError,
    GuidanceInput,
    decoded_target_gradient,
    given_timesteps,
    noise_or_draw,
    randint,
    register_guidance,
)
from dreamlift.guidance.perpneg import guided_eps
from dreamlift.guidance.schedules import sds_t_range
from dreamlift.guidance.sds import std_rescaled_x0
from dreamlift.priors import DiffusionPrior, TextEmbeddings


@dataclass
class MVSDSConfig:
    """MV-SDS settings; defaults are MVDream's source-stage schedule with a toy-sized CFG."""

    guidance_scale: float = 7.5
    """CFG scale (MVDream and Perturb-and-Revise use 50 with the real model)."""
    t_range: tuple[float, float] = (0.98, 0.98)
    """(t_min, t_max) as fractions of the chain at step 0."""
    t_max_end: float | None = 0.40
    """t_max anneals linearly to this (None: fixed)."""
    t_min_end: float | None = 0.02
    """t_min anneals linearly to this (None: fixed)."""
    anneal_fraction: float = 0.8
    """Fraction of the run over which t anneals (MVDream: 8,000 of 10,000 steps)."""
    recon_std_rescale: float = 0.5
    """Blend toward the std of the conditional x̂0, per group (MVDream / PnR: 0.5)."""
    form: Literal["latent_x0", "x0"] = "latent_x0"
    """"latent_x0" (MVDream's, on the encoded latents) or "x0" (decoded, on the renders)."""
    negative_prompt: str = ""
    """The uncond branch ("" = the empty prompt)."""
    view_prompts: bool = False
    """Use the per-view prompts (view words) instead of the view-free prompt for all views."""


@register_guidance("mvsds", MVSDSConfig)
class MVSDSGuidance(Guidance[MVSDSConfig]):
    """Multi-view SDS in x0-reconstruction form; returns ``{"loss_mvsds": ...}``."""

    def losses(self, prior: DiffusionPrior, inp: GuidanceInput) -> dict[str, Tensor]:
        cfg = self.config
        self.refuse_draws(inp, "nodes")
        views = int(getattr(prior, "num_views", 1))
        if views < 2 or not hasattr(prior, "views"):
            raise GuidanceError(
                "mvsds guidance needs a multi-view prior",
                "use --prior toy-mvdream or a folder with MVDream's checkpoint",
            )
        if inp.azimuths is None:
            raise GuidanceError("mvsds guidance needs each view's azimuth (and elevation)")
        if cfg.form not in ("latent_x0", "x0"):
            raise GuidanceError(f"unknown MV-SDS form {cfg.form!r}", hint="latent_x0 or x0")
        image_form = cfg.form == "x0"
        if image_form:
            self.require_images(inp, "MV-SDS form 'x0'", "form 'latent_x0'")
        z = self.latents(prior, inp, grad=not image_form)
        b, total = z.shape[0], prior.num_train_timesteps
        if b % views:
            raise GuidanceError(
                f"mvsds guidance got {b} views, not groups of {views}",
                f"render views in groups of {views} (90° apart)",
            )
        text = self.view_text(prior, inp, b)
        t_min, t_max = sds_t_range(
            inp.step,
            inp.total_steps,
            cfg.t_range,
            cfg.t_max_end,
            cfg.anneal_fraction,
            cfg.t_min_end,
        )
        lo, hi = round(total * t_min), min(round(total * t_max), total - 1)
        t = self.group_timesteps(inp, lo, hi, b, views, total).to(z.device)
        noise = noise_or_draw(inp, z, self.name)
        self.last_draws = GuidanceDraws(t=t, noise=noise)
        elevations = inp.elevations
        if elevations is None:
            elevations = torch.zeros_like(inp.azimuths, dtype=torch.float32)

        with torch.no_grad(), prior.views(inp.azimuths, elevations):
            z_t = prior.add_noise(z.detach(), noise, t)
            eps, eps_cond = guided_eps(prior, z_t, t, text, cfg.guidance_scale)
            x0 = std_rescaled_x0(
                prior.predict_x0(z_t, t, eps),
                prior.predict_x0(z_t, t, eps_cond),
                cfg.recon_std_rescale,
                views,
            )
            if image_form:
                grad = decoded_target_gradient(prior, inp.images, x0, 1.0)
            else:
                grad = z.detach() - x0

        loss = self.inject(inp.images if image_form else z, grad)
        self.last_info.update(
            {
                "t": float(t.float().mean()),
                "t_min": t_min,
                "t_max": t_max,
                "grad_norm": float(grad.flatten(1).norm(dim=1).mean()),
            }
        )
        return {"loss_mvsds": loss}

    def view_text(self, prior: DiffusionPrior, inp: GuidanceInput, batch: int) -> TextEmbeddings:
        """The view-free prompt for every view (unless ``view_prompts``), negative as uncond."""
        cfg = self.config
        if inp.text is None and not cfg.view_prompts and inp.prompt:
            return prior.embed_text([inp.prompt] * batch, negative=cfg.negative_prompt)
        return self.text(prior, inp, cfg.negative_prompt)

    def group_timesteps(
        self, inp: GuidanceInput, lo: int, hi: int, batch: int, views: int, total: int
    ) -> Tensor:
        """(batch,) timesteps, one value per group of ``views``: drawn, or given and checked."""
        if inp.t is None:
            return randint(lo, hi + 1, batch // views, inp.generator).repeat_interleave(views)
        t = given_timesteps(inp.t, batch, total, self.name)
        grouped = t.reshape(-1, views)
        if bool((grouped != grouped[:, :1]).any()):
            raise GuidanceError(
                f"mvsds guidance takes one t per group of {views} views, got {t.tolist()}",
                hint="give GuidanceInput.t as one value, or the same value within each group",
            )
        return t
