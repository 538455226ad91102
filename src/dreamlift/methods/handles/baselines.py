"""Two baselines with :func:`~dreamlift.methods.handles.edit.edit`'s signature and result.

- :func:`depth_only` (the paper's ablation a): invert, then regenerate with the *edited*
  depth and the null embeddings but no activation guidance. It shows what the depth
  condition alone does: the object usually moves, its identity drifts.
- :func:`warp_paste_2d` (ablation b, no diffusion): the 2D image edit a user would do
  by hand. The 3D transform is projected to the best 2D affine map of the object's pixels
  (least squares on the correspondences), the object is cut out, the hole it leaves is
  filled harmonically from its surroundings, and the warped cut-out is pasted. Out-of-plane
  rotations cannot be expressed this way, and nothing new (a hidden side, a shadow) appears.
  Its result's ``mask`` is the warped cut-out; ``depth`` is the 3D edit's (it has none).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import Tensor

from dreamlift.methods.handles.config import HandlesConfig
from dreamlift.methods.handles.depth_edit import DepthEdit, edit_depth
from dreamlift.methods.handles.edit import (
    ArrayLike,
    PriorLike,
    build_result,
    check_frame_count,
    decode_image,
    disparity_input,
    interpolation_frames,
    invert_input,
    load_prior,
    prepare,
)
from dreamlift.methods.handles.inputs import EditInputs, check_prompt
from dreamlift.methods.handles.laplace import poisson_fill
from dreamlift.methods.handles.lift import Intrinsics
from dreamlift.methods.handles.morphology import dilate
from dreamlift.methods.handles.passes import Inversion, Progress, guided_generation
from dreamlift.methods.handles.result import HandlesResult
from dreamlift.methods.handles.transform import Transform3D


def depth_only(
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
) -> HandlesResult:
    """Regenerate the inverted image with the edited depth only (no feature guidance).

    ``inversion`` reuses one of the same image, depth, prompt and config (as :func:`edit`)."""
    cfg = config or HandlesConfig()
    check_frame_count(interpolate)
    prior = load_prior(prior)
    check_prompt(prompt, prior)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    inputs, geometry = prepare(image, mask, depth, transform, cfg, prior, intrinsics, depth_model)
    timings["geometry_s"] = time.perf_counter() - t0
    text = prior.embed_text(prompt)
    if inversion is None:
        t0 = time.perf_counter()
        inversion = invert_input(prior, inputs, text, cfg, progress)
        timings["inversion_s"] = time.perf_counter() - t0

    def generate(geo: DepthEdit, stage: str) -> Tensor:
        disparity = disparity_input(prior, geo.disparity, is_depth=False)
        gen = guided_generation(prior, inversion, text, disparity, None, None, cfg, progress, stage)
        return decode_image(prior, gen.latents)

    t0 = time.perf_counter()
    edited = generate(geometry, "generation")
    timings["guided_s"] = time.perf_counter() - t0
    frames = None
    if interpolate:
        t0 = time.perf_counter()

        def frame(step: Transform3D) -> Tensor:
            geo = edit_depth(inputs.depth, inputs.mask, step, inputs.intrinsics, cfg.geometry)
            return generate(geo, "frames")

        frames = interpolation_frames(transform, interpolate, edited, frame)
        timings["frames_s"] = time.perf_counter() - t0
    return build_result("depth_only", inputs, geometry, edited, timings, frames, None, [], prior)


def projected_affine(geometry: DepthEdit) -> Tensor:
    """(2, 3) affine map of pixel (row, col) that best explains source → target."""
    src = geometry.source.double() + 0.5
    tgt = geometry.target.double() + 0.5
    if src.shape[0] < 3:
        shift = (tgt.mean(0) - src.mean(0)) if src.shape[0] else torch.zeros(2).double()
        return torch.cat([torch.eye(2).double(), shift[:, None]], dim=1)
    design = torch.cat([src, torch.ones(src.shape[0], 1).double()], dim=1)
    solution = torch.linalg.lstsq(design, tgt).solution  # (3, 2)
    return solution.T


def warp_object(inputs: EditInputs, affine: Tensor) -> tuple[Tensor, Tensor]:
    """(warped rgb, warped mask): each output pixel fetches its source by the inverse map."""
    h, w = inputs.mask.shape
    full = torch.cat([affine, torch.tensor([[0.0, 0.0, 1.0]]).double()])
    inverse = torch.linalg.inv(full)
    rows, cols = torch.meshgrid(
        torch.arange(h).double() + 0.5, torch.arange(w).double() + 0.5, indexing="ij"
    )
    points = torch.stack([rows, cols, torch.ones_like(rows)], dim=-1) @ inverse.T
    src = torch.floor(points[..., :2]).long()
    inside = (src[..., 0] >= 0) & (src[..., 0] < h) & (src[..., 1] >= 0) & (src[..., 1] < w)
    r, c = src[..., 0].clamp(0, h - 1), src[..., 1].clamp(0, w - 1)
    mask = inside & inputs.mask[r, c]
    return inputs.image[r, c], mask


def remove_object(inputs: EditInputs, dilation: int) -> Tensor:
    """The image with the object's (dilated) region filled harmonically, channel by channel."""
    region = dilate(inputs.mask, dilation)
    channels = [poisson_fill(inputs.image[..., k], region) for k in range(3)]
    return torch.stack(channels, dim=-1).clamp(0, 1)


def warp_paste_2d(
    image: ArrayLike,
    mask: ArrayLike,
    depth: ArrayLike | None,
    transform: Transform3D,
    prompt: str = "",
    *,
    prior: PriorLike | None = None,
    config: HandlesConfig | None = None,
    intrinsics: Intrinsics | None = None,
    depth_model: str | Path | None = None,
    interpolate: int = 0,
    progress: Progress | None = None,
) -> HandlesResult:
    """Cut, fill, warp and paste in 2D (module doc). ``prompt`` and ``prior`` are unused."""
    cfg = config or HandlesConfig()
    check_frame_count(interpolate)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    inputs, geometry = prepare(image, mask, depth, transform, cfg, None, intrinsics, depth_model)
    timings["geometry_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, _, dilation = cfg.geometry.radii(max(inputs.mask.shape))
    background = remove_object(inputs, dilation)

    def paste(geo: DepthEdit) -> tuple[Tensor, Tensor]:
        rgb, warped = warp_object(inputs, projected_affine(geo))
        return torch.where(warped[..., None], rgb, background), warped

    edited, warped_mask = paste(geometry)
    timings["warp_s"] = time.perf_counter() - t0
    frames = None
    if interpolate:

        def frame(step: Transform3D) -> Tensor:
            geo = edit_depth(inputs.depth, inputs.mask, step, inputs.intrinsics, cfg.geometry)
            return paste(geo)[0]

        frames = interpolation_frames(transform, interpolate, edited, frame)
    if progress is not None:
        progress("warp", 1, 1)
    result = build_result(
        "warp_paste_2d", inputs, geometry, edited, timings, frames, None, [], None
    )
    result.mask = warped_mask
    return result
