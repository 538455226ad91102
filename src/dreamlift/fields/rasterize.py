"""Differentiable 3D Gaussian splatting rasteriser (pure PyTorch, tiled; optional gsplat).

The torch backend follows the 3DGS recipe (Kerbl et al. 2023):

* project each Gaussian with the EWA Jacobian, ``Σ' = J W Σ Wᵀ Jᵀ + 0.3 I`` (the 0.3 px²
  low-pass dilation), conic = ``Σ'⁻¹``, radius = ``ceil(3 sqrt(λ_max))``;
* cull Gaussians in front of the near plane (z < 0.01) or whose 3σ box misses the image;
* bin Gaussians to ``tile_size``² tiles by their 3σ boxes, shrunk to where the alpha can
  still exceed 1/255 (``splat_tiles.reach_radii``), keeping only the tiles where the ellipse
  itself passes 1/255 at a pixel (``splat_tiles.footprint_reaches_tile``): both drop only
  pairs that composite to nothing; sort by depth;
* alpha = ``min(0.99, o exp(-½ dᵀ conic d))``, dropped below 1/255, composited front to back
  with transmittance = exclusive cumprod of ``1 - alpha``.

The parts live in their own modules: projection (:mod:`~dreamlift.fields.splat_projection`),
tile binning (:mod:`~dreamlift.fields.splat_tiles`), tiled compositing with its hand-written
backward (:mod:`~dreamlift.fields.splat_composite`) and the gsplat backend
(:mod:`~dreamlift.fields.splat_gsplat`). This module drives them and holds the dense
reference the tiled renderer is tested against.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dreamlift.cameras import Cameras
from dreamlift.fields.splat_composite import (
    ALPHA_MAX,
    ALPHA_MIN,
    T_MIN,
    assemble_output,
    composite_image,
)
from dreamlift.fields.splat_gsplat import gsplat_available, rasterize_gsplat
from dreamlift.fields.splat_projection import (
    EPS_2D,
    NEAR_PLANE,
    Projected,
    covariance_3d,
    project_gaussians,
    quat_to_rotmat,
)
from dreamlift.fields.splat_tiles import TileBins, bin_to_tiles, reach_radii

__all__ = [
    "ALPHA_MAX",
    "ALPHA_MIN",
    "EPS_2D",
    "NEAR_PLANE",
    "T_MIN",
    "Projected",
    "bin_views",
    "covariance_3d",
    "project_gaussians",
    "quat_to_rotmat",
    "rasterize_gaussians",
    "rasterize_gaussians_reference",
]


def _prepare(
    means: Tensor,
    quats: Tensor,
    log_scales: Tensor,
    colors: Tensor,
    cameras: Cameras,
    extra: Tensor | None,
) -> tuple[Projected, Tensor]:
    """Project, and stack per-camera features [rgb, z, extra] to (B, N, C)."""
    projected = project_gaussians(means, quats, log_scales, cameras)
    if projected.means2d.requires_grad:
        projected.means2d.retain_grad()
    b, n = len(cameras), means.shape[0]
    parts = [colors.expand(b, n, 3), projected.depths[..., None]]
    if extra is not None:
        parts.append(extra.expand(b, n, extra.shape[-1]))
    return projected, torch.cat(parts, dim=-1)


def bin_views(
    projected: Projected,
    opacities: Tensor,
    log_opacity: Tensor,
    width: int,
    height: int,
    tile_size: int,
    footprint_binning: bool = True,
) -> TileBins:
    """Every view's depth-sorted tile lists in one :class:`TileBins` (tiles numbered view
    after view), as the torch backend composites them (no grad): opacity-aware reach boxes,
    then, with ``footprint_binning``, only the tiles the ellipse reaches. ``log_opacity`` is
    ``log(opacities)`` as the compositor uses it."""
    with torch.no_grad():
        return bin_to_tiles(
            projected.means2d,
            reach_radii(projected.radii, opacities, ALPHA_MIN),
            projected.depths,
            width,
            height,
            tile_size,
            (projected.conics, log_opacity, ALPHA_MIN) if footprint_binning else None,
        )


def rasterize_gaussians(
    means: Tensor,
    quats: Tensor,
    log_scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    cameras: Cameras,
    background: Tensor,
    tile_size: int = 16,
    extra: Tensor | None = None,
    backend: str = "auto",
    memory_budget_mb: float = 512.0,
    footprint_binning: bool = True,
) -> dict[str, Tensor]:
    """Render N Gaussians into B cameras.

    Args:
        means: (N, 3) world centres. quats: (N, 4) unnormalised wxyz. log_scales: (N, 3).
        opacities: (N,) in [0, 1] (after the sigmoid). colors: (B, N, 3) or (N, 3).
        background: (3,) colour composited behind. extra: optional (B, N, C) or (N, C)
        features composited like colour (e.g. normals), returned as ``extra`` (B, H, W, C)
        without normalisation by opacity.
        backend: ``"torch"``, ``"gsplat"`` (CUDA) or ``"auto"`` (gsplat when the tensors are
        on CUDA and it imports, else torch).
        footprint_binning: torch backend: keep a (tile, Gaussian) pair only where the ellipse
        passes 1/255 at one of the tile's pixels; False bins by the opacity-aware boxes
        alone. The images are the same either way (the ablation of
        ``benchmarks/rasterize_cpu.py``).

    Returns ``rgb`` (B, H, W, 3), ``opacity`` (B, H, W, 1), ``depth`` (B, H, W, 1) z-depth
    (0 where empty), ``means2d`` (B, N, 2) with ``retain_grad()`` called when it requires
    grad (densification statistics) and ``radii`` (B, N) pixel radii (0 = culled).
    """
    if backend not in ("auto", "torch", "gsplat"):
        raise ValueError(f"unknown rasteriser backend {backend!r}")
    if backend == "gsplat" or (backend == "auto" and means.is_cuda and gsplat_available()):
        return rasterize_gsplat(
            means, quats, log_scales, opacities, colors, cameras, background, tile_size, extra
        )
    projected, feats = _prepare(means, quats, log_scales, colors, cameras, extra)
    log_opacity = torch.log(opacities.clamp(min=1e-10))
    budget = int(memory_budget_mb * 2**20)
    bins = bin_views(
        projected,
        opacities,
        log_opacity,
        cameras.width,
        cameras.height,
        tile_size,
        footprint_binning,
    )
    images, alphas = composite_image(
        projected.means2d, projected.conics, log_opacity, feats, bins, tile_size, budget
    )
    images = images[:, : cameras.height, : cameras.width]
    alphas = alphas[:, : cameras.height, : cameras.width]
    n_extra = feats.shape[-1] - 4
    return assemble_output(images, alphas, background, n_extra, projected)


def rasterize_gaussians_reference(
    means: Tensor,
    quats: Tensor,
    log_scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    cameras: Cameras,
    background: Tensor,
    tile_size: int = 16,
    extra: Tensor | None = None,
) -> dict[str, Tensor]:
    """Dense (every pixel x every Gaussian) version of :func:`rasterize_gaussians`, for tests.

    Plain autograd, no tiling, no custom backward. A Gaussian only reaches the pixels of the
    tiles its 3σ box overlaps, exactly as in the tiled renderer (and in 3DGS).
    """
    projected, feats = _prepare(means, quats, log_scales, colors, cameras, extra)
    h, w = cameras.height, cameras.width
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=means.dtype), torch.arange(w, dtype=means.dtype), indexing="ij"
    )
    pix = torch.stack([xs, ys], dim=-1).reshape(-1, 2).to(means.device) + 0.5
    pix_tile = torch.floor((pix - 0.5) / tile_size).long()  # (P, 2)
    tiles_x, tiles_y = math.ceil(w / tile_size), math.ceil(h / tile_size)
    lim = torch.tensor([tiles_x - 1, tiles_y - 1], device=means.device)
    images, alphas = [], []
    for i in range(len(cameras)):
        uv, r = projected.means2d[i], projected.radii[i]
        lo = torch.minimum(torch.floor((uv - r[:, None]) / tile_size).long().clamp(min=0), lim)
        hi = torch.minimum(torch.floor((uv + r[:, None]) / tile_size).long().clamp(min=0), lim)
        inside = ((pix_tile[:, None, :] >= lo[None]) & (pix_tile[:, None, :] <= hi[None])).all(
            -1
        ) & (r > 0)[None]
        d = pix[:, None, :] - uv[None]  # (P, N, 2)
        ca, cb, cc = projected.conics[i].unbind(-1)
        power = -0.5 * (ca * d[..., 0] ** 2 + cc * d[..., 1] ** 2) - cb * d[..., 0] * d[..., 1]
        alpha = torch.clamp(opacities[None] * torch.exp(power), max=ALPHA_MAX)
        alpha = torch.where(inside & (alpha >= ALPHA_MIN), alpha, torch.zeros_like(alpha))
        order = torch.argsort(projected.depths[i], stable=True)
        alpha = alpha[:, order]
        with torch.no_grad():  # early termination, as in the tiled renderer
            ended = torch.cumprod(1.0 - alpha, dim=-1) < T_MIN
        alpha = torch.where(ended, torch.zeros_like(alpha), alpha)
        trans = torch.cumprod(1.0 - alpha, dim=-1)
        trans = torch.cat([torch.ones_like(trans[:, :1]), trans[:, :-1]], dim=-1)
        weights = alpha * trans
        images.append((weights @ feats[i][order]).reshape(h, w, -1))
        alphas.append(weights.sum(-1).reshape(h, w))
    n_extra = feats.shape[-1] - 4
    return assemble_output(torch.stack(images), torch.stack(alphas), background, n_extra, projected)
