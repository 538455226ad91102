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
  :func:`undo_warp_paste_2d` is its own inverse edit: the same cut, fill and paste of its
  output, by the inverse affine map.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import Tensor

from dreamlift.methods.handles.carry import remove_object
from dreamlift.methods.handles.config import HandlesConfig
from dreamlift.methods.handles.depth_edit import DepthEdit, edit_depth
from dreamlift.methods.handles.edit import (
    ArrayLike,
    EditSession,
    GenerationPass,
    PriorLike,
    build_result,
    carry_plate,
    check_frame_count,
    decode_image,
    disparity_input,
    interpolation_frames,
    object_carry_for,
    prepare,
    run_edit,
)
from dreamlift.methods.handles.lift import Intrinsics
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
    geometry: DepthEdit | None = None,
) -> HandlesResult:
    """Regenerate the inverted image with the edited depth only (no feature guidance).

    ``inversion`` and ``geometry`` are reused as by :func:`~dreamlift.methods.handles.edit`.
    """
    return run_edit(
        "depth_only", depth_conditioned_pass, "generation", image, mask, depth, transform,
        prompt, prior=prior, config=config, intrinsics=intrinsics, depth_model=depth_model,
        interpolate=interpolate, progress=progress, inversion=inversion, geometry=geometry,
    )  # fmt: skip


def depth_conditioned_pass(session: EditSession) -> tuple[GenerationPass, None]:
    """CFG DDIM from x_T with the edited depth and the null embeddings: no recording, no
    energy (carried like handles with ``carry_steps``: the carry's ablation)."""
    s = session
    plate = carry_plate(s)

    def generate(geo: DepthEdit, stage: str) -> tuple[Tensor, list[dict[str, float]]]:
        disparity = disparity_input(s.prior, geo.disparity, is_depth=False)
        carry = object_carry_for(s, geo, plate)
        gen = guided_generation(
            s.prior, s.inversion, s.text, disparity, None, None, s.config, s.progress, stage,
            carry,
        )  # fmt: skip
        return decode_image(s.prior, gen.latents), gen.energies

    return generate, None


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


def warp_object(image: Tensor, mask: Tensor, affine: Tensor) -> tuple[Tensor, Tensor]:
    """(warped rgb, warped mask): each output pixel fetches its source by the inverse map."""
    h, w = mask.shape
    full = torch.cat([affine, torch.tensor([[0.0, 0.0, 1.0]]).double()])
    inverse = torch.linalg.inv(full)
    rows, cols = torch.meshgrid(
        torch.arange(h).double() + 0.5, torch.arange(w).double() + 0.5, indexing="ij"
    )
    points = torch.stack([rows, cols, torch.ones_like(rows)], dim=-1) @ inverse.T
    src = torch.floor(points[..., :2]).long()
    inside = (src[..., 0] >= 0) & (src[..., 0] < h) & (src[..., 1] >= 0) & (src[..., 1] < w)
    r, c = src[..., 0].clamp(0, h - 1), src[..., 1].clamp(0, w - 1)
    return image[r, c], inside & mask[r, c]


def paste_warped(
    image: Tensor, mask: Tensor, affine: Tensor, background: Tensor
) -> tuple[Tensor, Tensor]:
    """(edited image, pasted mask): the object warped by ``affine`` and pasted over
    ``background`` (the image with the object removed)."""
    rgb, warped = warp_object(image, mask, affine)
    return torch.where(warped[..., None], rgb, background), warped


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
    geometry: DepthEdit | None = None,
) -> HandlesResult:
    """Cut, fill, warp and paste in 2D (module doc). ``prompt`` and ``prior`` are unused."""
    cfg = config or HandlesConfig()
    check_frame_count(interpolate)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    inputs, geometry = prepare(
        image, mask, depth, transform, cfg, None, intrinsics, depth_model, geometry
    )
    timings["geometry_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    dilation = cfg.geometry.radii(max(inputs.mask.shape))[2]
    background = remove_object(inputs.image, inputs.mask, dilation)

    def paste(geo: DepthEdit) -> tuple[Tensor, Tensor]:
        return paste_warped(inputs.image, inputs.mask, projected_affine(geo), background)

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


def undo_warp_paste_2d(result: HandlesResult, config: HandlesConfig | None = None) -> Tensor:
    """The inverse of a :func:`warp_paste_2d` edit, done the 2D way: its output's object, cut
    out with its own (warped) mask, warped back by the inverse affine map and pasted over
    the filled hole. This is the edit a 2D tool would undo with; re-running the 3D inverse
    on the 3D edit's depth would cut out a region its 2D output does not have."""
    cfg = config or HandlesConfig()
    full = torch.cat([projected_affine(result.geometry), torch.tensor([[0.0, 0.0, 1.0]]).double()])
    inverse = torch.linalg.inv(full)[:2]
    dilation = cfg.geometry.radii(max(result.mask.shape))[2]
    background = remove_object(result.image, result.mask, dilation)
    return paste_warped(result.image, result.mask, inverse, background)[0]
