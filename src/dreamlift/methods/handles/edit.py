"""Diffusion Handles (Pandey et al., CVPR 2024): a 3D edit of one object in a 2D image.

The algorithm box (arXiv 2312.02190, Sec. 5, in the variant of the authors' code: explicit
gradient steps on the latent instead of λ∇G added to ε in Eq. 3)::

    d'  , correspondences ← 3D edit of the depth: lift, transform, z-buffer, clean, fill
    x_T , {phi_t}         ← null-text inversion of the image with its depth d
    Ψ_{i,t}               ← reconstruction pass from x_T with d, recording activations
    for t in the DDIM grid, from x_T, with depth d':
        if t is among the first 38 of 50 steps:
            3 × x_t ← x_t − 0.1 ∇ G(Ψe(x_t), Ψ, correspondences, weights(t, k))
        x_t ← DDIM step with CFG 7.5 (uncond = phi_t)
    x'  ← decode(x_0)

With ``interpolate=k`` the edit also yields k frames from the identity to the full
transform. The last frame is the edit itself, so k − 1 new transforms run, reusing the
inversion and the recording: only their geometry and guided pass.

:func:`run_edit` holds the steps this method shares with the depth-only baseline (checks,
geometry, inversion, frames, result); each brings only its generation pass.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from dreamlift.errors import DataError
from dreamlift.methods.common.priors import check_prompt, load_prior
from dreamlift.methods.handles.carry import (
    EDGE,
    ObjectCarry,
    carried_image,
    object_carry,
    remove_object,
)
from dreamlift.methods.handles.config import HandlesConfig
from dreamlift.methods.handles.depth_edit import (
    DepthEdit,
    edit_depth,
    latent_targets,
    to_disparity,
)
from dreamlift.methods.handles.energy import decoder_layers
from dreamlift.methods.handles.estimate import estimate_depth
from dreamlift.methods.handles.inputs import (
    EditInputs,
    as_image,
    check_inputs,
    check_mask,
    check_steps,
)
from dreamlift.methods.handles.lift import Intrinsics
from dreamlift.methods.handles.passes import (
    Inversion,
    Progress,
    Recording,
    guided_generation,
    invert,
    record,
)
from dreamlift.methods.handles.result import HandlesResult, point_clouds
from dreamlift.methods.handles.transform import Transform3D
from dreamlift.priors import DiffusionPrior, TextEmbeddings

ArrayLike = Tensor | np.ndarray
PriorLike = DiffusionPrior | str | Path
GenerationPass = Callable[[DepthEdit, str], tuple[Tensor, list[dict[str, float]]]]
"""generate(3D edit of the depth, progress stage) → (edited image, energy log)."""


def prepare(
    image: ArrayLike,
    mask: ArrayLike,
    depth: ArrayLike | None,
    transform: Transform3D,
    config: HandlesConfig,
    prior: DiffusionPrior | None = None,
    intrinsics: Intrinsics | None = None,
    depth_model: str | Path | None = None,
    geometry: DepthEdit | None = None,
) -> tuple[EditInputs, DepthEdit]:
    """Validate the inputs (estimating depth if needed) and make the 3D edit of the depth,
    unless ``geometry`` is that edit already (an earlier call's, for the same inputs)."""
    if prior is not None:
        check_steps(config.steps, prior)
    if depth is None:
        if depth_model is None:
            raise DataError(
                "no depth for the image",
                "give a depth map (--depth), a depth estimator (--depth-model) or --scene",
            )
        image = as_image(image)
        check_mask(mask, image)  # fail on a bad mask before loading the estimator
        depth = estimate_depth(image, depth_model)
    inputs = check_inputs(image, mask, depth, intrinsics, config.geometry.fov_deg, prior)
    if geometry is None:
        geometry = edit_depth(
            inputs.depth, inputs.mask, transform, inputs.intrinsics, config.geometry
        )
    elif tuple(geometry.mask.shape) != tuple(inputs.mask.shape):
        raise DataError(
            f"the given 3D edit is {tuple(geometry.mask.shape)} but the image "
            f"{tuple(inputs.mask.shape)}",
            "pass the geometry prepare() made of the same inputs, or none",
        )
    return inputs, geometry


def decode_image(prior: DiffusionPrior, latents: Tensor) -> Tensor:
    """Clean latents → (H, W, 3) image in [0, 1] on the CPU."""
    with torch.no_grad():
        return prior.decode(latents)[0].permute(1, 2, 0).float().cpu()


def encode_image(prior: DiffusionPrior, image: Tensor) -> Tensor:
    with torch.no_grad():
        return prior.encode(image.permute(2, 0, 1)[None].to(prior.device))


def disparity_input(prior: DiffusionPrior, depth_or_disparity: Tensor, is_depth: bool) -> Tensor:
    """(1, H, W) disparity on the prior's device (the depth channel SD2-depth reads)."""
    d = to_disparity(depth_or_disparity) if is_depth else depth_or_disparity
    return d[None].float().to(prior.device)


def check_frame_count(count: int) -> None:
    """0 (no interpolation) or at least 2 frames (the identity and the full edit)."""
    if count < 0 or count == 1:
        raise DataError(f"interpolation needs 0 or at least 2 frames, got {count}")


def interpolation_frames(
    transform: Transform3D,
    count: int,
    final: Tensor,
    render: Callable[[Transform3D], Tensor],
) -> Tensor:
    """(count, H, W, 3): ``render`` at transforms from the identity to ``transform``; the last
    frame is ``final`` (the full edit, already computed)."""
    check_frame_count(count)
    alphas = torch.linspace(0.0, 1.0, count)[:-1]
    return torch.stack([render(transform.interpolate(float(a))) for a in alphas] + [final])


def edit(
    image: ArrayLike,
    mask: ArrayLike,
    depth: ArrayLike | None,
    transform: Transform3D,
    prompt: str,
    *,
    prior: PriorLike,
    config: HandlesConfig | None = None,
    intrinsics: Intrinsics | None = None,
    depth_model: str | Path | None = None,
    interpolate: int = 0,
    progress: Progress | None = None,
    inversion: Inversion | None = None,
    geometry: DepthEdit | None = None,
) -> HandlesResult:
    """Move the masked object of ``image`` by ``transform`` in 3D (see the module doc).

    ``image`` (H, W, 3) in [0, 1], ``mask`` (H, W) bool, ``depth`` (H, W) z-depth or None to
    estimate it with the DPT folder ``depth_model``; ``intrinsics`` default to a centred
    55° pinhole. ``prior`` is a loaded depth-conditioned prior, a zoo name or a folder.
    ``inversion`` reuses a null-text inversion of the same image, depth, prompt and config
    (:func:`invert_image`; benchmarks share one between this method and ``depth_only``);
    ``geometry`` reuses the 3D edit :func:`prepare` made of the same inputs (the CLI's
    checks make it). User errors raise :class:`~dreamlift.errors.DreamliftError` before any
    diffusion runs.
    """
    return run_edit(
        "handles", feature_guided_pass, "guided", image, mask, depth, transform, prompt,
        prior=prior, config=config, intrinsics=intrinsics, depth_model=depth_model,
        interpolate=interpolate, progress=progress, inversion=inversion, geometry=geometry,
    )  # fmt: skip


@dataclass
class EditSession:
    """What the passes of one edit share; a pass may add its timings."""

    prior: DiffusionPrior
    inputs: EditInputs
    text: TextEmbeddings
    inversion: Inversion
    config: HandlesConfig
    progress: Progress | None
    timings: dict[str, float]


PassBuilder = Callable[[EditSession], tuple[GenerationPass, Recording | None]]
"""Prepares a method's generation pass once per edit (and the recording it uses, if any)."""


def feature_guided_pass(session: EditSession) -> tuple[GenerationPass, Recording]:
    """Record Ψ in the reconstruction pass (Sec. 5); generate with the energy guidance (5.2)."""
    s = session
    t0 = time.perf_counter()
    layers = s.config.layers or decoder_layers(s.prior.unet)
    guided = s.config.schedule.active_layers()
    disparity_in = disparity_input(s.prior, s.inputs.depth, is_depth=True)
    recording = record(
        s.prior, s.inversion, s.text, disparity_in, layers, guided, s.config, s.progress
    )
    s.timings["recording_s"] = time.perf_counter() - t0
    plate = carry_plate(s)

    def generate(geo: DepthEdit, stage: str) -> tuple[Tensor, list[dict[str, float]]]:
        targets = latent_targets(geo, s.inputs.mask, s.prior.vae_scale_factor)
        carry = object_carry_for(s, geo, plate)
        disparity = disparity_input(s.prior, geo.disparity, is_depth=False)
        gen = guided_generation(
            s.prior, s.inversion, s.text, disparity, recording, targets, s.config, s.progress,
            stage, carry,
        )  # fmt: skip
        return decode_image(s.prior, gen.latents), gen.energies

    return generate, recording


def carry_plate(session: EditSession) -> Tensor | None:
    """The background plate carried objects are pasted on, once per edit (None when the
    edit carries nothing)."""
    if not session.config.carry_steps:
        return None
    return remove_object(session.inputs.image, session.inputs.mask, EDGE)


def object_carry_for(
    session: EditSession, geo: DepthEdit, plate: Tensor | None
) -> ObjectCarry | None:
    """What the generation pass carries for the 3D edit ``geo`` (None when nothing moves, as
    in an interpolation's identity frame, which stays the inversion's rebuild)."""
    s = session
    if plate is None or torch.equal(geo.source, geo.target):
        return None
    carried = encode_image(s.prior, carried_image(plate, s.inputs.image, geo))
    factor = s.prior.vae_scale_factor
    return object_carry(carried, s.inputs.mask, geo, factor, s.config.carry_seed)


def run_edit(
    method: str,
    build_pass: PassBuilder,
    stage: str,
    image: ArrayLike,
    mask: ArrayLike,
    depth: ArrayLike | None,
    transform: Transform3D,
    prompt: str,
    *,
    prior: PriorLike,
    config: HandlesConfig | None = None,
    intrinsics: Intrinsics | None = None,
    depth_model: str | Path | None = None,
    interpolate: int = 0,
    progress: Progress | None = None,
    inversion: Inversion | None = None,
    geometry: DepthEdit | None = None,
) -> HandlesResult:
    """An inverted edit with ``build_pass``'s generation (progress ``stage``): check the
    inputs, edit the depth in 3D, invert, generate the edit and any interpolation frames."""
    cfg = config or HandlesConfig()
    check_frame_count(interpolate)
    prior = load_prior(prior)
    check_prompt(prompt, prior)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    inputs, geometry = prepare(
        image, mask, depth, transform, cfg, prior, intrinsics, depth_model, geometry
    )
    timings["geometry_s"] = time.perf_counter() - t0
    text = prior.embed_text(prompt)
    if inversion is None:
        t0 = time.perf_counter()
        inversion = invert_input(prior, inputs, text, cfg, progress)
        timings["inversion_s"] = time.perf_counter() - t0
    else:
        check_inversion(inversion, cfg, prior, inputs)
    generate, recording = build_pass(
        EditSession(prior, inputs, text, inversion, cfg, progress, timings)
    )

    t0 = time.perf_counter()
    edited, energies = generate(geometry, stage)
    timings["guided_s"] = time.perf_counter() - t0
    frames = None
    if interpolate:
        t0 = time.perf_counter()

        def frame(step: Transform3D) -> Tensor:
            geo = edit_depth(inputs.depth, inputs.mask, step, inputs.intrinsics, cfg.geometry)
            return generate(geo, "frames")[0]

        frames = interpolation_frames(transform, interpolate, edited, frame)
        timings["frames_s"] = time.perf_counter() - t0
    return build_result(
        method, inputs, geometry, edited, timings, frames, recording, energies, prior
    )


def check_inversion(
    inversion: Inversion, config: HandlesConfig, prior: DiffusionPrior, inputs: EditInputs
) -> None:
    """A passed-in inversion must have one null embedding per DDIM step of ``config`` and
    noise of the image's latent shape."""
    count = len(inversion.null_embeddings)
    if count != config.steps:
        raise DataError(
            f"the inversion has {count} null embeddings but the edit runs {config.steps} steps",
            "invert with the same config (invert_image), or pass no inversion",
        )
    f = prior.vae_scale_factor
    h, w = inputs.mask.shape
    expected = (1, prior.latent_channels, h // f, w // f)
    if tuple(inversion.noise.shape) != expected:
        raise DataError(
            f"the inversion's noise is {tuple(inversion.noise.shape)} but the image's "
            f"latents are {expected}",
            "invert the same image with the same prior, or pass no inversion",
        )


def build_result(
    method: str,
    inputs: EditInputs,
    geometry: DepthEdit,
    image: Tensor,
    timings: dict[str, float],
    frames: Tensor | None,
    recording: Recording | None,
    energies: list[dict[str, float]],
    prior: DiffusionPrior | None,
) -> HandlesResult:
    before, after = point_clouds(inputs, geometry)
    reconstruction = None
    if recording is not None and prior is not None:
        reconstruction = decode_image(prior, recording.latents)
    timings = {**timings, "total_s": sum(timings.values())}
    return HandlesResult(
        method=method,
        image=image,
        depth=geometry.depth,
        disparity=geometry.disparity,
        mask=geometry.mask,
        points_before=before,
        points_after=after,
        geometry=geometry,
        timings=timings,
        frames=frames,
        reconstruction=reconstruction,
        energies=energies,
    )


def invert_input(
    prior: DiffusionPrior,
    inputs: EditInputs,
    text: TextEmbeddings,
    config: HandlesConfig,
    progress: Progress | None = None,
) -> Inversion:
    """Null-text inversion of validated inputs with their depth (shared with the baseline)."""
    if progress is not None:
        progress("inversion", 0, 1)
    disparity = disparity_input(prior, inputs.depth, is_depth=True)
    inversion = invert(prior, encode_image(prior, inputs.image), text, disparity, config)
    if progress is not None:
        progress("inversion", 1, 1)
    return inversion


def invert_image(
    image: ArrayLike,
    mask: ArrayLike,
    depth: ArrayLike,
    prompt: str,
    *,
    prior: PriorLike,
    config: HandlesConfig | None = None,
    intrinsics: Intrinsics | None = None,
) -> Inversion:
    """The null-text inversion :func:`edit` would compute, to pass to several edits of the
    same input (``inversion=``); checks the inputs as :func:`edit` does."""
    cfg = config or HandlesConfig()
    prior = load_prior(prior)
    check_prompt(prompt, prior)
    check_steps(cfg.steps, prior)
    inputs = check_inputs(image, mask, depth, intrinsics, cfg.geometry.fov_deg, prior)
    return invert_input(prior, inputs, prior.embed_text(prompt), cfg)
