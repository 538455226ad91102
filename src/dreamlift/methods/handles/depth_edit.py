"""The 3D edit of the depth map and the correspondences it induces (Diffusion Handles,
arXiv 2312.02190, Sec. 5.1, Eqs. 4–7).

The correspondences are the paper's 3D-aware flow (Eq. 5, F = u − (P∘T∘L_d)⁻¹(u)) sampled
where it is defined: the pixels the moved object covers, each with the pixel it came from.

Following the paper code's ``pc`` mode::

    background ← the depth with the object removed: disparity re-solved harmonically inside
                 the object mask dilated a little (no LaMa here: a zero guidance field),
                 never nearer than the object under it
    P          ← object pixels lifted to camera space with their depth
    P'         ← T(P): rotation and scale about the centroid of P, then translation
    splat P' over the background with a z-buffer (nearest wins; under the old object,
                 where the background is only a bound, nothing occludes)
                 → the transformed-object mask, its depth, and source → target pixels
    clean the mask (close, open), less the pixels where a nearer surface hid moved points;
    keep correspondences inside it; fill the holes inside it by harmonic inpainting of the
    disparity

Everything is done in disparity (1/z, 0 = no surface): it is what the depth-conditioned
prior reads, and harmonic filling reproduces planes (a ground, a wall) exactly in it. The
background is not lifted: the camera does not move, so a background pixel projects to
itself and the background is simply the z-buffer's initial content.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from dreamlift.errors import DataError
from dreamlift.methods.handles.config import GeometryConfig
from dreamlift.methods.handles.laplace import poisson_fill
from dreamlift.methods.handles.lift import Intrinsics, lift, zbuffer
from dreamlift.methods.handles.morphology import clean_mask, dilate
from dreamlift.methods.handles.transform import Transform3D


def to_disparity(depth: Tensor) -> Tensor:
    """z-depth (0 = no surface) → disparity 1/z (0 = no surface)."""
    d = depth.float()
    return torch.where(d > 0, 1.0 / d.clamp(min=1e-12), torch.zeros_like(d))


def to_depth(disparity: Tensor) -> Tensor:
    """Disparity (0 = no surface) → z-depth (0 = no surface)."""
    return to_disparity(disparity)


def background_disparity(depth: Tensor, mask: Tensor, dilation: int) -> tuple[Tensor, Tensor]:
    """Disparity of the scene with the object removed (the paper's d'_b, Sec. 5.1; harmonic:
    no inpainted guide), as (background, occluders): the map composited into the edit and the
    one the moved points are z-buffered against.

    Inside the mask dilated by ``dilation`` px the disparity is re-solved from its
    surroundings. Whatever was behind the object is at least as far as the object, so under
    the object the background is capped at the object's own disparity. Where the cap acts,
    all that is known of the hidden surface is that it lies no nearer than the object, so
    ``occluders`` has no surface there (0): a point moved back behind the object's old place
    stays visible instead of losing to the cap.
    """
    disparity = to_disparity(depth)
    region = dilate(mask, dilation)
    if bool(region.all()):
        raise DataError(
            "the object mask leaves no background to rebuild the depth from",
            "mask only the object you want to move",
        )
    filled = poisson_fill(disparity, region).clamp(min=0)
    capped = mask & (depth > 0) & (filled > disparity)
    background = torch.where(capped, disparity, filled)
    occluders = torch.where(capped, torch.zeros_like(background), background)
    return background, occluders


def object_points(depth: Tensor, mask: Tensor, intrinsics: Intrinsics) -> tuple[Tensor, Tensor]:
    """Lifted object points (N, 3) and their pixels (N, 2) as (row, col); depth > 0 only."""
    pixels = torch.nonzero(mask & (depth > 0))
    points = lift(depth.float(), intrinsics)[pixels[:, 0], pixels[:, 1]]
    return points, pixels


@dataclass
class DepthEdit:
    """The edited depth and everything guidance needs from the geometry (all (H, W) maps)."""

    depth: Tensor
    """Edited z-depth (0 = no surface)."""
    disparity: Tensor
    """Edited disparity 1/z, what the prior is conditioned on."""
    mask: Tensor
    """The transformed object, cleaned (close, open)."""
    splat_mask: Tensor
    """Pixels the moved points won in the z-buffer, before cleaning."""
    background: Tensor
    """Disparity with the object removed."""
    source: Tensor
    """(N, 2) (row, col) of object pixels in the input whose moved point is visible …"""
    target: Tensor
    """(N, 2) … and where it lands in the edited image (inside ``mask``)."""
    points: Tensor
    """(M, 3) the object's lifted points (camera space) …"""
    moved_points: Tensor
    """(M, 3) … after the transform."""
    pixels: Tensor
    """(M, 2) the input pixel of each lifted point."""
    center: Tensor
    """(3,) the centroid the transform rotates and scales about."""


def edit_depth(
    depth: Tensor,
    mask: Tensor,
    transform: Transform3D,
    intrinsics: Intrinsics,
    config: GeometryConfig | None = None,
) -> DepthEdit:
    """Move the masked object in 3D (see the module doc); ``depth`` is (H, W) z-depth.

    Raises :class:`DataError` when the mask (dilated) leaves no background to rebuild the
    depth from, when the depth has no surface (> 0) under the mask, or when the moved
    object is nowhere visible (out of view, behind the camera or hidden behind other
    surfaces).
    """
    cfg = config or GeometryConfig()
    h, w = depth.shape
    close_r, open_r, dilation = cfg.radii(max(h, w))
    mask = mask.bool()
    background, occluders = background_disparity(depth, mask, dilation)
    points, pixels = object_points(depth, mask, intrinsics)
    if points.shape[0] == 0:
        raise DataError("the depth map has no valid depth (> 0) under the object mask")
    center = points.double().mean(0).float()
    moved = transform.apply(points, center)
    splat = zbuffer(moved, intrinsics, to_depth(occluders))
    if not bool(splat.won.any()):
        in_front = moved[:, 2] > 1e-9
        where = "behind other surfaces" if bool(in_front.any()) else "behind the camera"
        raise DataError(
            f"the transform ({transform.describe()}) moves the object out of view or {where}",
            "use a smaller translation or rotation (depth units; +z is towards the camera)",
        )
    # Where moved points landed but a nearer surface won, that surface is what is seen:
    # cleaning must not claim those pixels for the object, nor filling overwrite them.
    hidden = splat.landed & ~splat.won
    cleaned = clean_mask(splat.won, close_r, open_r) & ~hidden
    kept = splat.won & cleaned
    disparity = torch.where(kept, to_disparity(splat.depth), background)
    holes = cleaned & ~splat.won
    if bool(holes.any()):
        disparity = poisson_fill(disparity, holes).clamp(min=0)
    target = torch.nonzero(kept)
    source = pixels[splat.winner[target[:, 0], target[:, 1]]]
    return DepthEdit(
        depth=to_depth(disparity),
        disparity=disparity,
        mask=cleaned,
        splat_mask=splat.won,
        background=background,
        source=source,
        target=target,
        points=points,
        moved_points=moved,
        pixels=pixels,
        center=center,
    )


@dataclass
class LatentTargets:
    """Correspondences and background masks on the latent grid (Eqs. 8–9), flat indices."""

    source: Tensor
    """(N,) flat latent index of each correspondence's source …"""
    target: Tensor
    """(N,) … and target (duplicates kept: several pixels share a latent cell)."""
    bg_orig: Tensor
    """(h·w,) bool: latent cells the original object does not touch."""
    bg_trans: Tensor
    """(h·w,) bool: latent cells the transformed object does not touch."""
    size: tuple[int, int]

    def to(self, device: torch.device | str) -> LatentTargets:
        return LatentTargets(
            self.source.to(device),
            self.target.to(device),
            self.bg_orig.to(device),
            self.bg_trans.to(device),
            self.size,
        )


def latent_targets(edit: DepthEdit, object_mask: Tensor, factor: int) -> LatentTargets:
    """Integer-divide the correspondences by the VAE factor; a latent cell counts as object
    when any of its pixels is, so the background averages stay clear of the object."""
    h, w = object_mask.shape
    lh, lw = h // factor, w // factor
    src = edit.source // factor
    tgt = edit.target // factor
    inside = (tgt[:, 0] < lh) & (tgt[:, 1] < lw) & (src[:, 0] < lh) & (src[:, 1] < lw)
    src, tgt = src[inside], tgt[inside]

    return LatentTargets(
        source=src[:, 0] * lw + src[:, 1],
        target=tgt[:, 0] * lw + tgt[:, 1],
        bg_orig=~touched_cells(object_mask.bool(), factor).reshape(-1),
        bg_trans=~touched_cells(edit.mask, factor).reshape(-1),
        size=(lh, lw),
    )


def touched_cells(mask: Tensor, factor: int) -> Tensor:
    """(h, w) bool: latent cells (``factor`` pixels a side) with at least one pixel of the
    (H, W) mask."""
    h, w = mask.shape
    pooled = F.max_pool2d(
        mask.float()[None, None, : h // factor * factor, : w // factor * factor], factor
    )
    return pooled[0, 0] > 0.5
