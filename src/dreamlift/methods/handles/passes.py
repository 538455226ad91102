"""The three diffusion passes of Diffusion Handles (arXiv:2312.02190 §4–5).

1. :func:`invert` — null-text inversion with the input depth: x_T and one null embedding
   per step, so that guided DDIM reproduces the input.
2. :func:`record` — the reconstruction pass from x_T: at each step the conditional branch's
   activations are recorded, and a CFG step (uncond = phi_t) advances.
3. :func:`guided_generation` — from the same x_T with the *edited* depth: at each guided
   step a few latent gradient steps on the energy, then the CFG step.

The recording reads the conditional rows of the batched CFG call instead of running a
separate conditional-only pass: the UNet treats batch rows independently, so the
activations are those of a conditional-only pass (the pass type guidance also uses,
pitfall 5.6), at one UNet call per step instead of two.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from dreamlift.methods.handles.carry import ObjectCarry
from dreamlift.methods.handles.config import HandlesConfig
from dreamlift.methods.handles.depth_edit import LatentTargets
from dreamlift.methods.handles.energy import StepEnergy, to_latent_grid
from dreamlift.methods.handles.morphology import dilate
from dreamlift.priors import DiffusionPrior, EnergyGuidance, TextEmbeddings
from dreamlift.priors.guided import guided_step

Progress = Callable[[str, int, int], None]
"""progress(stage, step done, steps in the stage)."""


@dataclass
class Inversion:
    """x_T and the per-step null-text embeddings phi_t."""

    noise: Tensor
    null_embeddings: list[Tensor]


@dataclass
class Recording:
    """Activations Ψ_{i,t} at the latent grid: ``maps[t][i]`` is (C, H·W), or None where
    guidance never reads it (a layer no cycle weights, a step after the guided ones)."""

    layers: tuple[str, ...]
    maps: list[list[Tensor | None]]
    latents: Tensor
    """The reconstruction's clean latents (decode to check the inversion)."""
    trajectory: list[Tensor] = field(default_factory=list)
    """The reconstruction's latents after each step (``keep_background`` blends them in)."""


@dataclass
class Generation:
    """A guided (or plain) generation pass: clean latents and per-step energy logs."""

    latents: Tensor
    energies: list[dict[str, float]] = field(default_factory=list)


def _notify(progress: Progress | None, stage: str, done: int, total: int) -> None:
    if progress is not None:
        progress(stage, done, total)


def invert(
    prior: DiffusionPrior,
    latents: Tensor,
    text: TextEmbeddings,
    disparity: Tensor,
    config: HandlesConfig,
) -> Inversion:
    """Null-text inversion (arXiv:2211.09794 §3) with DH's 5 inner steps and CFG 7.5."""
    noise, phis = prior.null_text_inversion(
        latents,
        text,
        num_steps=config.steps,
        guidance_scale=config.guidance_scale,
        inner_steps=config.inversion_inner_steps,
        depth=disparity,
        early_stop_eps=config.inversion_early_stop,
    )
    return Inversion(noise, phis)


@torch.no_grad()
def record(
    prior: DiffusionPrior,
    inversion: Inversion,
    text: TextEmbeddings,
    disparity: Tensor,
    layers: Sequence[str],
    guided: Sequence[bool],
    config: HandlesConfig,
    progress: Progress | None = None,
) -> Recording:
    """Reconstruct from x_T with the input depth, recording the guided layers' activations
    at the guided steps (the later steps only advance, to the reconstruction's latents)."""
    names = [name for name, on in zip(layers, guided, strict=True) if on]
    size = tuple(inversion.noise.shape[-2:])
    z = inversion.noise
    maps: list[list[Tensor | None]] = []
    trajectory: list[Tensor] = []
    ts = prior.timesteps(config.steps)
    guided_until = config.schedule.guided_steps(config.steps)
    with prior.capture(names) as capture:
        for i, t in enumerate(ts):
            step_text = text.with_uncond(inversion.null_embeddings[i])
            eps = prior.predict_eps(z, t, step_text, config.guidance_scale, disparity)
            call = capture.last
            row: list[Tensor | None] = []
            for name, on in zip(layers, guided, strict=True):
                if not on or i >= guided_until:
                    row.append(None)
                    continue
                feature = call[name]
                # CFG batches hold the unconditional rows first, then the conditional ones.
                cond = feature[feature.shape[0] // 2 :] if config.guidance_scale != 1 else feature
                grid = to_latent_grid(cond[:1], size)  # type: ignore[arg-type]
                row.append(grid.cpu() if config.offload_recording else grid)
            maps.append(row)
            capture.clear()
            z = prior.ddim_step(z, t, prior.previous_timestep(t, config.steps), eps)
            if config.keep_background:
                trajectory.append(z)
            _notify(progress, "recording", i + 1, len(ts))
    return Recording(tuple(layers), maps, z, trajectory)


def background_cells(targets: LatentTargets, margin: int) -> Tensor:
    """(1, 1, h, w) bool: latent cells neither the original nor the moved object touches, at
    least ``margin`` cells away from both."""
    objects = ~(targets.bg_orig & targets.bg_trans).reshape(targets.size)
    return ~dilate(objects, margin)[None, None]


def step_guidance_scale(config: HandlesConfig, step: int, carried: bool) -> float:
    """The CFG scale of generation step ``step``: ``config.redraw_guidance_scale`` once a
    carry has ended (the prior redraws the carried object), else ``config.guidance_scale``."""
    if carried and step >= config.carry_steps:
        return config.redraw_guidance_scale
    return config.guidance_scale


def guided_generation(
    prior: DiffusionPrior,
    inversion: Inversion,
    text: TextEmbeddings,
    disparity: Tensor,
    recording: Recording | None,
    targets: LatentTargets | None,
    config: HandlesConfig,
    progress: Progress | None = None,
    stage: str = "guided",
    carry: ObjectCarry | None = None,
) -> Generation:
    """Generate from x_T with the edited depth; guided while the schedule says so.

    Without a recording (or with ``opt_steps = 0``) this is plain CFG DDIM with the null
    embeddings and the edited depth: the depth-only baseline. With ``carry`` and
    ``config.carry_steps`` the object's latents are carried along the edit's flow
    (:mod:`~dreamlift.methods.handles.carry`), and the steps after the carry run at
    ``config.redraw_guidance_scale``.
    """
    schedule = config.schedule
    ts = prior.timesteps(config.steps)
    guided_until = schedule.guided_steps(config.steps) if recording is not None else 0
    if config.opt_steps == 0:
        guided_until = 0
    guidance = EnergyGuidance(
        weight=config.step_size, opt_steps=max(1, config.opt_steps), mode="latent"
    )
    z = inversion.noise
    carry = carry.to(z.device) if carry is not None and config.carry_steps else None
    if carry is not None:
        z = carry.blend(z, prior.add_noise(carry.latents, carry.noise, ts[0]))
    if targets is not None:
        targets = targets.to(z.device)
    energies: list[dict[str, float]] = []
    keep = None
    if config.keep_background and recording is not None and targets is not None:
        keep = background_cells(targets, config.background_margin)
    for i, t in enumerate(ts):
        t_next = prior.previous_timestep(t, config.steps)
        step_text = text.with_uncond(inversion.null_embeddings[i])
        scale = step_guidance_scale(config, i, carried=carry is not None)
        if i < guided_until:
            assert recording is not None and targets is not None
            maps = recording.maps[i]
            layers = [n for n, m in zip(recording.layers, maps, strict=True) if m is not None]
            energy = StepEnergy(recording.layers, maps, targets, schedule, i, config.steps)
            step = guided_step(
                prior, z, t, t_next, step_text, scale, energy, layers, guidance, disparity
            )
            z = step.latents
            energies.extend({"step": i, "inner": k, **h} for k, h in enumerate(energy.history))
        else:
            with torch.no_grad():
                eps = prior.predict_eps(z, t, step_text, scale, disparity)
                z = prior.ddim_step(z, t, t_next, eps)
        if keep is not None:
            assert recording is not None
            z = torch.where(keep, recording.trajectory[i].to(z.device, z.dtype), z.detach())
        if carry is not None and i < config.carry_steps:
            z = carry.blend(z.detach(), prior.add_noise(carry.latents, carry.noise, t_next))
        _notify(progress, stage, i + 1, len(ts))
    return Generation(z, energies)
