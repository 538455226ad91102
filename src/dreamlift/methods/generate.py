"""Generate: text-to-3D by distilling a 2D diffusion prior into a field (GE3D by default).

The algorithm box (GE3D, METHODS 2.3; SDS and ISM are the same loop with another guidance)::

    field ← init (Gaussians: sphere / random ball / .ply; NeRF: a density blob)
    for τ in 0 … T-1:
        cameras, azimuths ← orbit curriculum(τ)              (azimuth range widens)
        x ← render(field, cameras) at resolution warm-up(τ), resized to the prior's size
        prompts ← view-dependent prompts of the caption from the azimuths
        losses ← guidance(prior, x, prompts, τ)              (t / node schedules inside)
        L ← Σ weight · loss + field regularisers; Adam step; densify (Gaussians)

Every schedule is a pure function of the step and sits in the config
(:mod:`dreamlift.methods.generate_config`). Runs write the run contract, a checkpoint that
``resume`` continues exactly, a turntable and the 3D file; when the prompt is a world caption,
``summary.json`` also scores the result against ground truth
(:mod:`dreamlift.methods.generate_scoring`). Every run records where an iteration's time
goes (``iteration_split`` in ``summary.json``): render forward and backward, VAE encode, its
backward and decode, UNet calls, optimiser and densification.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from dreamlift.cameras import Cameras, OrbitRange, sample_orbit
from dreamlift.errors import DataError, OutputError
from dreamlift.fields.base import Field
from dreamlift.fields.gaussians import GaussianField
from dreamlift.fields.nerf import NerfField
from dreamlift.fields.registry import make_field
from dreamlift.fields.splat_gsplat import gsplat_available
from dreamlift.guidance import GuidanceInput, make_guidance
from dreamlift.io.run import RunDir
from dreamlift.loop import LoopSettings, checkpoint_path, optimize
from dreamlift.methods.generate_config import (
    FAST_GAUSSIANS,
    PRESETS,
    GenerateConfig,
    azimuth_half_range,
    build_config,
    config_fields,
    config_from_dict,
    render_scale,
    resume_config,
)
from dreamlift.methods.generate_outputs import write_outputs
from dreamlift.methods.generate_prompts import (
    TOY_PRIORS,
    check_prompt,
    resolve_prompt,
    world_description,
)
from dreamlift.methods.generate_scoring import quick_iou, world_scores
from dreamlift.priors import DiffusionPrior, view_prompts
from dreamlift.utils.timing import SectionTimer
from dreamlift.world import parse

__all__ = [
    "FAST_GAUSSIANS",
    "GenerateConfig",
    "PRESETS",
    "TextTo3D",
    "azimuth_half_range",
    "build_config",
    "config_fields",
    "config_from_dict",
    "generate",
    "image_total_variation",
    "initial_field",
    "iteration_split",
    "load_prior",
    "render_scale",
    "render_views",
    "resolve_prompt",
    "resume_config",
    "world_description",
    "world_scores",
    "write_outputs",
]

PRIOR_PARTS = ("unet", "vae_encode", "vae_backward", "vae_decode")
"""The prior's own work in the iteration split (the text encoder is cached after step 0)."""
SPLIT_PARTS = (
    "render_forward",
    "render_backward",
    *PRIOR_PARTS,
    "text_encoder",
    "optimizer",
    "densify",
)


# ---------------------------------------------------------------------- parts
log = logging.getLogger(__name__)


def backend_warnings(cfg: GenerateConfig, device: torch.device) -> list[str]:
    """Said before training, not after: on a GPU the pure-torch rasteriser was 140-650x
    slower than gsplat's kernels (H200, 4 views of 512², 4k-82k Gaussians,
    benchmarks/results/gpu_h200/rasterize_cuda.json): a paper-preset step took 3.1 s instead
    of 0.6 s, hours for a run that gsplat does in half an hour."""
    if cfg.field != "gaussians" or device.type != "cuda" or cfg.gaussians.backend != "auto":
        return []
    if gsplat_available():
        return []
    message = (
        "gsplat is not installed: Gaussians render through the pure-torch rasteriser, "
        "140-650x slower on a GPU (pip install 'dreamlift[cuda]')"
    )
    log.warning(message)
    return [message]


def initial_field(cfg: GenerateConfig, generator: torch.Generator) -> Field:
    """Gaussians on a sphere / in a ball / from a .ply; NeRF with a central density blob."""
    if cfg.field == "gaussians":
        # The position learning rate decays over the run, whatever the start.
        fcfg = dataclasses.replace(cfg.gaussians, lr_means_decay_steps=cfg.steps)
        if cfg.init in ("sphere", "random"):
            mode = "sphere_surface" if cfg.init == "sphere" else "random"
            fcfg = dataclasses.replace(fcfg, init_mode=mode, init_radius=cfg.init_radius)
            return make_field("gaussians", fcfg, generator)
        path = Path(cfg.init)
        if not path.is_file():
            raise DataError(f"--init {cfg.init}: no such .ply file", "use sphere, random or PATH")
        return GaussianField.from_ply(path, fcfg)
    fld = make_field("nerf", dataclasses.replace(cfg.nerf, train_steps=cfg.steps), generator)
    assert isinstance(fld, NerfField)
    peak, r = cfg.nerf_blob_density, cfg.nerf_blob_radius
    fld.set_from_functions(
        lambda p: peak * torch.exp(-p.square().sum(-1) / (2 * r * r)) + 1e-3,
        lambda p: torch.full((p.shape[0], 3), 0.5),
    )
    return fld


def orbit_range(cfg: GenerateConfig, step: int) -> OrbitRange:
    half = azimuth_half_range(step, cfg.azimuth_start, cfg.azimuth_growth, cfg.azimuth_every)
    return OrbitRange(cfg.radius, cfg.elevation, (-half, half), cfg.fov)


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
    """One optimisation step of score distillation: the loop body of the algorithm box.

    Calling it renders and returns the loss; :meth:`backward` is the loss's backward pass in
    two timed stages. ``timer`` accumulates the step's sections (``render_forward``,
    ``guidance``, ``vae_backward``, ``render_backward``); the prior's modules are timed by
    :meth:`timing_prior`.
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
        self.guidance = make_guidance(cfg.guidance, gcfg)
        self.cameras_gen, self.guidance_gen = cameras_gen, guidance_gen
        self.size = prior.image_size
        self.full = cfg.resolution or self.size
        self.background = torch.ones(3, device=prior.device)
        self.timer = timer or SectionTimer()
        self._parts: tuple[Tensor, Tensor, Tensor, Tensor | None] | None = None

    def __call__(self, step: int) -> tuple[Tensor, dict[str, float], dict[str, Tensor]]:
        cfg, timer = self.cfg, self.timer
        res = max(8, round(self.full * render_scale(step, cfg.resolution_warmup)))
        with timer.section("render_forward"):
            cams, azimuth, elevation = sample_orbit(
                cfg.views_per_step, res, orbit_range(cfg, step), self.cameras_gen
            )
            images, out = render_views(
                self.field, cams.to(self.prior.device), self.size, self.step_background()
            )
            if cfg.flip_views > 0 and self._draw() < cfg.flip_views:
                # A mirrored view is what a camera mirrored about the front plane sees.
                images, azimuth = images.flip(-1), -azimuth
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
        with timer.section("guidance"):
            losses = self.guidance(self.prior, inp)
        guidance_loss = cfg.guidance_weight * sum(losses.values())
        logs = {k: float(v.detach()) for k, v in losses.items()}
        logs.update({f"info_{k}": v for k, v in self.guidance.last_info.items()})
        field_loss, field_logs = self.field_losses(images, out)
        logs.update(field_logs)
        logs["resolution"] = float(res)
        loss = guidance_loss if field_loss is None else guidance_loss + field_loss
        self._parts = (loss, guidance_loss, images, field_loss)
        return loss, logs, out

    def field_losses(
        self, images: Tensor, out: dict[str, Tensor]
    ) -> tuple[Tensor | None, dict[str, float]]:
        """The field's regulariser and the weighted priors on the render (TV, opacity, splat
        scale), summed; None when none is on. Logs each term unweighted."""
        cfg = self.cfg
        terms: list[tuple[str, float, Tensor]] = []
        regularizer = getattr(self.field, "regularizer", None)
        if regularizer is not None:
            terms.append(("loss_reg", 1.0, regularizer()))
        if cfg.tv_weight > 0:
            depth = out["depth"].permute(0, 3, 1, 2)
            tv = image_total_variation(images) + image_total_variation(depth)
            terms.append(("loss_tv", cfg.tv_weight, tv))
        opacity_weight = cfg.resolved_opacity_weight()
        if opacity_weight > 0:
            # Per view, summed over the prior's pixels (the render may be smaller in warm-up).
            sparsity = (out["opacity"].square() + 0.01).sqrt().mean() * self.size**2
            terms.append(("loss_opacity", opacity_weight, sparsity))
        if cfg.scale_weight > 0 and isinstance(self.field, GaussianField):
            terms.append(("loss_scale", cfg.scale_weight, torch.exp(self.field.log_scales).mean()))
        total = None
        for _, weight, value in terms:
            total = weight * value if total is None else weight * value + total
        return total, {name: float(value.detach()) for name, _, value in terms}

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

    def backward(self, loss: Tensor) -> None:
        """``loss.backward()`` in two stages, timed apart: the guidance loss back to the render
        (``vae_backward``: the VAE encoder's backward, when the guidance differentiates it),
        then the render's gradient and the field regularisers back to the field
        (``render_backward``). The gradient is the one-pass gradient (to rounding when a
        regulariser such as TV also reads the render); a loss other than the last call's gets
        the one-pass backward."""
        parts, self._parts = self._parts, None
        if parts is None or parts[0] is not loss:
            loss.backward()
            return
        _, guidance_loss, images, field_loss = parts
        with self.timer.section("vae_backward"):
            needs = guidance_loss.requires_grad
            (grad,) = torch.autograd.grad(guidance_loss, images) if needs else (None,)
        with self.timer.section("render_backward"):
            pairs = [(images, grad)] if grad is not None else []
            pairs += [(field_loss, None)] if field_loss is not None else []
            if pairs:
                torch.autograd.backward([t for t, _ in pairs], [g for _, g in pairs])

    def timing_prior(self) -> AbstractContextManager[None]:
        """A context timing every call of the prior's UNet, VAE encoder and decoder, and
        text encoder (forward hooks, removed on exit)."""
        vae = self.prior.vae
        modules = {"unet": self.prior.unet, "text_encoder": self.prior.text_encoder}
        if hasattr(vae, "encoder") and hasattr(vae, "decoder"):
            modules.update(vae_encode=vae.encoder, vae_decode=vae.decoder)
        return self.timer.modules(modules)


def iteration_split(loop: dict[str, float], sections: dict[str, float]) -> dict[str, Any]:
    """Where an iteration's time went: seconds and fractions of the loop's step time per
    part (``other``: guidance bookkeeping, regularisers, logging), and the prior's share."""
    total = loop.get("step_s", 0.0)
    seconds = {k: sections.get(k, 0.0) for k in SPLIT_PARTS}
    seconds.update(optimizer=loop.get("optimizer_s", 0.0), densify=loop.get("densify_s", 0.0))
    seconds["other"] = max(total - sum(seconds.values()), 0.0)
    fractions = {k: v / total if total > 0 else 0.0 for k, v in seconds.items()}
    return {
        "seconds": seconds,
        "fractions": fractions,
        "prior_fraction": sum(fractions[k] for k in PRIOR_PARTS),
        "step_s": total,
    }


# ---------------------------------------------------------------------- the method
def load_prior(cfg: GenerateConfig) -> DiffusionPrior:
    """The prior; a toy prior's prompt is checked first, so a bad caption is reported
    before a missing model."""
    check_prompt(cfg.prompt)
    if cfg.prior in TOY_PRIORS:
        parse(cfg.prompt)
    return DiffusionPrior.load(cfg.prior, device=cfg.device)


def generate(
    cfg: GenerateConfig,
    out_dir: Path,
    resume: bool = False,
    quiet: bool = False,
    prior: DiffusionPrior | None = None,
) -> dict[str, Any]:
    """Distil ``cfg.prompt`` into ``cfg.field``; writes the run folder, returns the summary."""
    run = RunDir(out_dir)
    if not resume and checkpoint_path(run).exists():
        raise OutputError(
            f"{run.path} already holds a run (checkpoint.safetensors)",
            "pass --resume to continue it, or choose another --out",
        )
    t0 = time.perf_counter()
    prior = prior or load_prior(cfg)
    prompt, template = resolve_prompt(cfg, prior)
    desc = world_description(prompt)
    run.prepare()
    run.write_config(cfg)
    timings = {"load_s": time.perf_counter() - t0}

    early_warnings = backend_warnings(cfg, prior.device)
    torch.manual_seed(cfg.seed)
    fld = initial_field(cfg, torch.Generator().manual_seed(cfg.seed)).to(prior.device)
    gens = {
        "cameras": torch.Generator().manual_seed(cfg.seed + 1),
        "guidance": torch.Generator().manual_seed(cfg.seed + 2),
    }
    sync = torch.cuda.synchronize if cfg.profile and prior.device.type == "cuda" else None
    step_loss = TextTo3D(
        cfg, fld, prior, prompt, template, gens["cameras"], gens["guidance"], SectionTimer(sync)
    )
    settings = LoopSettings(
        steps=cfg.steps,
        kind=f"generate/{cfg.field}",
        checkpoint_every=cfg.checkpoint_every,
        log_every=cfg.log_every,
        quiet=quiet,
        time_budget_s=cfg.time_budget_s,
    )
    curve: list[dict[str, float]] = []
    evaluate = cfg.eval_every > 0 and desc is not None
    started, evaluating = time.perf_counter(), 0.0

    def on_log(step: int) -> dict[str, float]:
        nonlocal evaluating
        if not evaluate or (step + 1) % cfg.eval_every:
            return {}
        t = time.perf_counter()
        iou = quick_iou(fld, desc)
        curve.append({"step": step + 1, "time_s": t - started - evaluating, "iou": iou})
        evaluating += time.perf_counter() - t
        return {"eval_iou": iou}

    with step_loss.timing_prior():
        result = optimize(
            fld,
            step_loss,
            run,
            settings,
            gens,
            resume,
            description=f"generate {cfg.guidance}",
            on_log=on_log,
            backward=step_loss.backward,
            sync=sync,
        )
    timings.update({"train_s": result.timings.get("step_s", 0.0)})
    timings.update({k: v for k, v in result.timings.items() if k != "step_s"})
    split = iteration_split(result.timings, step_loss.timer.seconds)
    split["iterations"] = result.steps_done - result.resumed_from

    fld.eval()
    warnings: list[str] = list(early_warnings)
    metrics: dict[str, Any] = {"steps_done": result.steps_done, "out_of_time": result.out_of_time}
    if result.out_of_time:
        warnings.append(f"time budget reached: stopped after {result.steps_done}/{cfg.steps} steps")
    if evaluate and (not curve or curve[-1]["step"] != result.steps_done):
        t1 = time.perf_counter()
        iou = quick_iou(fld, desc)
        curve.append({"step": result.steps_done, "time_s": result.timings["loop_s"], "iou": iou})
        timings["log_s"] = timings.get("log_s", 0.0) + time.perf_counter() - t1
    if evaluate:
        metrics["eval_curve"] = curve
    t1 = time.perf_counter()
    outputs = write_outputs(run, cfg, fld, warnings)
    timings["outputs_s"] = time.perf_counter() - t1
    if cfg.score and desc is not None:
        t1 = time.perf_counter()
        metrics.update(world_scores(cfg, fld, desc, warnings))
        timings["score_s"] = time.perf_counter() - t1
    elif cfg.score:
        warnings.append("not a world caption: no ground-truth scores")
    command = (
        f"generate {cfg.prompt!r} --prior {cfg.prior} --field {cfg.field} "
        f"--guidance {cfg.guidance} --preset {cfg.preset} --steps {cfg.steps}"
    )
    run.write_summary(
        command,
        cfg,
        metrics,
        timings,
        outputs,
        prompt=prompt,
        resumed_from=result.resumed_from,
        warnings=warnings,
        iteration_split=split,
    )
    return {
        "metrics": metrics,
        "timings": timings,
        "outputs": outputs,
        "warnings": warnings,
        "iteration_split": split,
    }
