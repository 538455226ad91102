"""Volume rendering pieces shared by grid fields: ray-box clipping, sampling, compositing.

Pure tensor functions on flat ray batches (R rays, N samples each), so they can be tested
against closed-form answers without any field around them.
"""

from __future__ import annotations

import torch
from torch import Tensor


def ray_aabb(
    origins: Tensor, dirs: Tensor, lo: float | Tensor, hi: float | Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Clip rays (R, 3) against the axis-aligned box [lo, hi] (scalars or (3,) corners).

    Returns ``near`` (R,), ``far`` (R,) ray parameters (near >= 0, so cameras inside the box
    start at their centre) and ``hit`` (R,) bool, false where the ray misses the box
    (then far == near).
    """
    tiny = torch.full_like(dirs, 1e-9)
    safe = torch.where(dirs.abs() < 1e-9, torch.where(dirs < 0, -tiny, tiny), dirs)
    inv = 1.0 / safe
    t0 = (lo - origins) * inv
    t1 = (hi - origins) * inv
    near = torch.minimum(t0, t1).amax(dim=-1).clamp(min=0.0)
    far = torch.maximum(t0, t1).amin(dim=-1)
    hit = far > near
    far = torch.where(hit, far, near)
    return near, far, hit


def stratified_samples(
    near: Tensor, far: Tensor, n: int, jitter: Tensor | None
) -> tuple[Tensor, Tensor]:
    """N evenly spaced samples per ray between ``near`` and ``far`` (R,).

    ``jitter`` (R, N) in [0, 1) shifts each sample within its bin (training); ``None`` puts
    samples at bin centres (evaluation). Returns ``t`` (R, N) and the bin length (R, 1).
    """
    step = ((far - near) / n)[:, None]
    offsets = torch.arange(n, dtype=near.dtype, device=near.device)[None, :]
    offsets = offsets + (0.5 if jitter is None else jitter)
    return near[:, None] + offsets * step, step


def composite_weights(sigma: Tensor, delta: Tensor) -> Tensor:
    """Rendering weights w_i = alpha_i * prod_{j<i} (1 - alpha_j) for densities (R, N).

    The exclusive transmittance product is evaluated as exp(-exclusive cumsum of sigma*delta),
    the same quantity as the cumprod of (1 - alpha) but with a well-behaved gradient when some
    alpha reaches 1.
    """
    tau = sigma * delta
    # Exclusive sum built directly: cumsum(tau) - tau loses all precision after a huge tau.
    excl = torch.nn.functional.pad(torch.cumsum(tau[..., :-1], dim=-1), (1, 0))
    alpha = -torch.expm1(-tau)
    return alpha * torch.exp(-excl)


def expected_depth(weights: Tensor, t: Tensor, z_per_t: Tensor, opacity: Tensor) -> Tensor:
    """z-depth (R, 1): sum(w t) * z_per_t / max(opacity, 1e-6); 0 where nothing was hit."""
    return (weights * t).sum(dim=-1, keepdim=True) * z_per_t / opacity.clamp(min=1e-6)


def total_variation(grid: Tensor) -> Tensor:
    """Mean squared difference between neighbouring voxels of a (1, C, D, H, W) grid."""
    dz = (grid[:, :, 1:] - grid[:, :, :-1]).square().mean()
    dy = (grid[:, :, :, 1:] - grid[:, :, :, :-1]).square().mean()
    dx = (grid[..., 1:] - grid[..., :-1]).square().mean()
    return dx + dy + dz
