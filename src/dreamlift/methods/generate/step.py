"""One step of score distillation: the loop body of generate's algorithm box (GE3D, arXiv
2412.05929, Sec. 3; SDS and ISM are the same step with another guidance)::

    cameras, azimuths ← orbit curriculum(τ)              (azimuth range widens)
    x ← render(field, cameras) at resolution warm-up(τ), resized to the prior's size
    prompts ← view-dependent prompts of the caption from the azimuths
    losses ← guidance(prior, x, prompts, τ)              (t / node schedules inside)
    L ← weight · Σ losses + field regularisers           (the loop: backward, Adam, densify)
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor

from dreamlift.cameras import Cameras, OrbitRange, orbit_cameras, sample_orbit
from dreamlift.errors import DreamliftError
from dreamlift.fields.base import Field
from dreamlift.fields.gaussians import GaussianField
from dreamlift.guidance import GuidanceInput, make_guidance
from dreamlift.guidance.base import Guidance
from dreamlift.methods.common.losses import LossTerms
from dreamlift.methods.generate.config import GenerateConfig, azimuth_half_range, render_scale
from dreamlift.priors import DiffusionPrior, view_prompts
from dreamlift.utils.timing import SectionTimer


def orbit_range(cfg: GenerateConfig, step: int) -> OrbitRange:
    half = azimuth_half_range(step, cfg.azimuth_start, cfg.azimuth_growth, cfg.azimuth_every)
    return OrbitRange(cfg.radius, cfg.elevation, (-half, half), cfg.fov)


def sample_views(
    n: int, size: int, ranges: OrbitRange, generator: torch.Generator, group: int = 1
) -> tuple[Cameras, Tensor, Tensor]:
    """``n`` orbit cameras; with ``group`` > 1, whole groups (n rounded up) of ``group``
    azimuths evenly spaced from a random start within ``ranges``, sharing one camera's
    elevation, radius and field of view (MVDream's camera groups, arXiv 2308.16512 Sec. 3.1)."""
    if group <= 1:
        return sample_orbit(n, size, ranges, generator)
    lead, start, elevation = sample_orbit(-(-n // group), size, ranges, generator)
    spread = start[:, None] + torch.arange(group) * (360.0 / group)
    azimuth = ((spread + 180.0) % 360.0 - 180.0).reshape(-1)
    radius = lead.centers.norm(dim=-1).repeat_interleave(group)
    fov = torch.rad2deg(2 * torch.atan(0.5 * size / lead.fx)).repeat_interleave(group)
    elevation = elevation.repeat_interleave(group)
    return orbit_cameras(azimuth, elevation, radius, fov, size), azimuth, elevation


def render_views(
    fld: Field, cams: Cameras, size: int, background: Tensor
) -> tuple[Tensor, dict[str, Tensor]]:
    """Render and bring to the prior's size: images (B, 3, size, size) in [0, 1]."""
    out = fld.render(cams, background)
    images = out["rgb"].permute(0, 3, 1, 2)
    if images.shape[-1] != size:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    return images.clamp(0, 1), out


def image_total_variation(images: Tensor) -> Tensor:
    """TV of (B, C, H, W) images: 2 × (mean squared vertical + horizontal neighbour
    difference), the form GE3D's λ_tv multiplies (its code's LucidDreamer ``tv_loss``)."""
    dy = (images[..., 1:, :] - images[..., :-1, :]).square().mean()
    dx = (images[..., 1:] - images[..., :-1]).square().mean()
    return 2.0 * (dy + dx)


class TextTo3D:
    """One optimisation step of score distillation: ``step_loss(τ) -> (L, logs, render)``.

    :meth:`backward` is the loss's backward pass in two timed stages. ``timer`` accumulates
    the step's sections (``render_forward``, ``guidance``, ``vae_backward``,
    ``render_backward``). All randomness comes from the two generators the loop checkpoints:
    cameras and augmentations from ``cameras_gen``, the guidance's t / noise / nodes from
    ``guidance_gen``.

    The guidance's logged terms (``loss_sds``, ``loss_ism``, ``loss_ge3d``) are surrogates
    (:mod:`dreamlift.guidance.base`): their gradient is the guidance's update g, but their
    value is 0.5‖g‖²/B summed over what the guidance injects — how hard the prior pulls on
    the views, not a loss the run drives towards zero. The field's terms (``loss_reg``,
    ``loss_tv``, ``loss_opacity``, ``loss_scale``) are true losses, logged unweighted.
    """

    def __init__(
        self,
        cfg: GenerateConfig,
        fld: Field,
        prior: DiffusionPrior,
        prompt: str,
        template: str,
        cameras_gen: torch.Generator,
        guidance_gen: torch.Generator,
        timer: SectionTimer | None = None,
    ):
        self.cfg, self.field, self.prior, self.prompt = cfg, fld, prior, prompt
        self.template = template
        gcfg = cfg.guidance_config()
        if hasattr(gcfg, "perpneg"):
            gcfg = dataclasses.replace(
                gcfg, perpneg=dataclasses.replace(gcfg.perpneg, template=template)
            )
        if prior.num_views > 1 and cfg.guidance != "mvsds":
            raise DreamliftError(
                f"{cfg.guidance} guidance denoises one view at a time; {prior.folder.name} is a "
                f"multi-view prior ({prior.num_views} views denoised together)",
                "use --guidance mvsds (the default with a multi-view prior), or a single-view "
                "prior such as toy-sd-camera",
            )
        self.guidance = make_guidance(cfg.guidance, gcfg)
        self.cameras_gen, self.guidance_gen = cameras_gen, guidance_gen
        self.size = prior.image_size
        self.full = cfg.resolution or self.size
        self.background = torch.ones(3, device=prior.device)
        self.timer = timer or SectionTimer()
        self._parts: StepParts | None = None
        self.resolution = 0
        self.last_cameras: Cameras | None = None
        """The last step's cameras and background (a method comparing with another field's
        renders at the same views reads them)."""
        self.last_background: Tensor | None = None

    def __call__(self, step: int) -> tuple[Tensor, dict[str, float], dict[str, Tensor]]:
        inp, out = self.views(step)
        with self.timer.section("guidance"):
            losses = self.guidance(self.prior, inp)
        guidance_loss = self.cfg.guidance_weight * sum(losses.values())
        # 3. the field's regulariser and the weighted priors on the render
        assert inp.images is not None
        terms = self.field_terms(inp.images, out)
        field_loss = terms.total()
        loss = guidance_loss if field_loss is None else guidance_loss + field_loss
        self._parts = (loss, guidance_loss, [inp.images], [field_loss])
        return loss, self.logs(losses, self.guidance, terms, inp.images), out

    def views(self, step: int) -> tuple[GuidanceInput, dict[str, Tensor]]:
        """Steps 1-2 of the box: the curriculum's cameras, the renders at the warm-up
        resolution brought to the prior's size, and the guidance's input for them."""
        cfg = self.cfg
        # 1. cameras of the orbit curriculum; renders at the warm-up resolution, at the
        #    prior's size (a mirrored view is what a camera mirrored about the front sees)
        res = max(8, round(self.full * render_scale(step, cfg.resolution_warmup)))
        with self.timer.section("render_forward"):
            cams, azimuth, elevation = sample_views(
                cfg.views_per_step,
                res,
                orbit_range(cfg, step),
                self.cameras_gen,
                self.prior.num_views,
            )
            background = self.step_background()
            self.last_cameras, self.last_background = cams, background
            images, out = render_views(
                self.field, cams.to(self.prior.device), self.size, background
            )
            if cfg.flip_views > 0 and self._draw() < cfg.flip_views:
                images, azimuth = images.flip(-1), -azimuth
        self.resolution = res
        # 2. the guidance on the views, told their prompts and cameras
        inp = GuidanceInput(
            images=images,
            prompts=view_prompts(self.prompt, azimuth, elevation, self.template),
            prompt=self.prompt,
            azimuths=azimuth,
            elevations=elevation,
            step=step,
            total_steps=cfg.steps,
            generator=self.guidance_gen,
        )
        return inp, out

    def logs(
        self, losses: dict[str, Tensor], guidance: Guidance, terms: LossTerms, images: Tensor
    ) -> dict[str, float]:
        """A step's record: the guidance's terms and diagnostics, the field's terms, the
        render size."""
        logs = {k: float(v.detach()) for k, v in losses.items()}
        logs.update({f"info_{k}": v for k, v in guidance.last_info.items()})
        logs.update(terms.logs())
        logs["resolution"] = float(self.resolution)
        return logs

    def field_terms(self, images: Tensor, out: dict[str, Tensor]) -> LossTerms:
        """The field's regulariser and the priors on the render that are on (TV, opacity,
        splat scale), with their weights."""
        cfg, terms = self.cfg, LossTerms()
        regularizer = getattr(self.field, "regularizer", None)
        if regularizer is not None:
            terms.add("loss_reg", 1.0, regularizer())
        if cfg.tv_weight > 0:
            depth = out["depth"].permute(0, 3, 1, 2)
            tv = image_total_variation(images) + image_total_variation(depth)
            terms.add("loss_tv", cfg.tv_weight, tv)
        opacity_weight = cfg.resolved_opacity_weight()
        if opacity_weight > 0:
            # Per view, summed over the prior's pixels (the render may be smaller in warm-up).
            sparsity = (out["opacity"].square() + 0.01).sqrt().mean() * self.size**2
            terms.add("loss_opacity", opacity_weight, sparsity)
        if cfg.scale_weight > 0 and isinstance(self.field, GaussianField):
            terms.add("loss_scale", cfg.scale_weight, torch.exp(self.field.log_scales).mean())
        return terms

    def _draw(self) -> float:
        """One uniform draw from the camera generator (checkpointed with the run, so the
        augmentations of a resumed run are the uninterrupted run's)."""
        return float(torch.rand((), generator=self.cameras_gen))

    def step_background(self) -> Tensor:
        """White, or with probability ``background_aug`` a random colour for all views."""
        if self.cfg.background_aug > 0 and self._draw() < self.cfg.background_aug:
            colour = torch.rand(3, generator=self.cameras_gen)
            return colour.to(self.background.device)
        return self.background

    def add_render_loss(self, loss: Tensor, term: Tensor) -> Tensor:
        """``loss + term`` for a term on this step's renders (a method's own, such as an edit's
        identity terms), kept with the field's terms so that :meth:`backward` still times the
        step in two stages rather than falling back to one pass."""
        total = loss + term
        if self._parts is not None and self._parts[0] is loss:
            _, guidance_loss, images, field_losses = self._parts
            self._parts = (total, guidance_loss, images, [*field_losses, term])
        return total

    def backward(self, loss: Tensor) -> None:
        """``loss.backward()`` in two timed stages (:func:`two_stage_backward`)."""
        parts, self._parts = self._parts, None
        two_stage_backward(self.timer, loss, parts)


StepParts = tuple[Tensor, Tensor, list[Tensor], list[Tensor | None]]
"""(loss, guidance loss, the renders the guidance saw, the field losses) of a step."""


def two_stage_backward(timer: SectionTimer, loss: Tensor, parts: StepParts | None) -> None:
    """``loss.backward()`` in two stages, timed apart: the guidance loss back to the renders
    (``vae_backward``: the VAE encoder's backward, when the guidance differentiates it), then
    the renders' gradients and the field regularisers back to the fields
    (``render_backward``). The gradient is the one-pass gradient (to rounding when a
    regulariser such as TV also reads the render); a loss other than the step's (``parts``
    of another step, or None) gets the one-pass backward."""
    if parts is None or parts[0] is not loss:
        loss.backward()
        return
    _, guidance_loss, images, field_losses = parts
    with timer.section("vae_backward"):
        needs = guidance_loss.requires_grad
        grads = list(torch.autograd.grad(guidance_loss, images)) if needs else []
    with timer.section("render_backward"):
        pairs: list[tuple[Tensor, Tensor | None]] = list(zip(images, grads, strict=False))
        pairs += [(f, None) for f in field_losses if f is not None]
        if pairs:
            torch.autograd.backward([t for t, _ in pairs], [g for _, g in pairs])
