"""Dense voxel grids inside [-bound, bound]³: trilinear reads, gradients, occupancy, resampling.

Grids are (1, C, Z, Y, X) tensors whose corner points sit on the cube's faces
(``align_corners=True``), so a grid of R points per side has R - 1 cells per side.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def inverse_softplus(x: Tensor) -> Tensor:
    return x + torch.log(-torch.expm1(-x))


def sample_grid(grid: Tensor, points: Tensor, bound: float) -> Tensor:
    """Trilinear values (P, C) of a (1, C, Z, Y, X) grid at world points (P, 3)."""
    coords = (points / bound).reshape(1, 1, 1, -1, 3).to(grid.dtype)
    out = F.grid_sample(grid, coords, mode="bilinear", padding_mode="border", align_corners=True)
    return out.reshape(grid.shape[1], -1).t()


def central_gradient(values: Tensor, bound: float) -> Tensor:
    """d values / d(x, y, z) (1, 3, Z, Y, X) of a (1, 1, Z, Y, X) grid, central differences
    (one-sided at the faces)."""
    pad = F.pad(values, (1, 1, 1, 1, 1, 1), mode="replicate")
    gx = pad[..., 1:-1, 1:-1, 2:] - pad[..., 1:-1, 1:-1, :-2]
    gy = pad[..., 1:-1, 2:, 1:-1] - pad[..., 1:-1, :-2, 1:-1]
    gz = pad[..., 2:, 1:-1, 1:-1] - pad[..., :-2, 1:-1, 1:-1]
    spacing = 2.0 * bound / (values.shape[-1] - 1)
    return torch.cat([gx, gy, gz], dim=1) / (2.0 * spacing)


def occupancy_mask(raw: Tensor, level: float) -> Tensor:
    """Cells (Z-1, Y-1, X-1) of a (1, 1, Z, Y, X) grid with a corner value above ``level``.

    Values are trilinear between corners, so a cell whose corners are all at or below the
    level is at or below it everywhere (and so is any monotone function of them).
    """
    return F.max_pool3d(raw, kernel_size=2, stride=1)[0, 0] > level


def occupied_box(occupancy: Tensor, bound: float) -> Tensor:
    """World-space corners (2, 3) of the cells marked in a (Z, Y, X) mask (a point box at
    the origin when none is, so every ray misses it)."""
    cells = occupancy.shape[0]
    if not bool(occupancy.any()):
        return torch.zeros(2, 3, device=occupancy.device)
    lo, hi = [], []
    for axis in (2, 1, 0):  # x, y, z live on dims 2, 1, 0
        others = tuple(i for i in range(3) if i != axis)
        idx = occupancy.any(dim=others).nonzero().squeeze(1)
        lo.append(float(idx[0]))
        hi.append(float(idx[-1]) + 1.0)
    corners = torch.tensor([lo, hi], device=occupancy.device)
    return corners * (2.0 * bound / cells) - bound


def occupied_samples(occupancy: Tensor, bound: float, o: Tensor, d: Tensor, t: Tensor) -> Tensor:
    """Occupancy (R, N) of the samples o + t d (o, d (R, 3), t (R, N)) in a (Z, Y, X) mask,
    computed in cell units without building the world-space points (the dense part of the
    work, so kept to a few tensor ops)."""
    cells = occupancy.shape[0]
    scale = 0.5 * cells / bound
    base = ((o + bound) * scale)[:, None, :]
    idx = torch.addcmul(base, (d * scale)[:, None, :], t[..., None]).long()
    idx = idx.clamp_(0, cells - 1)
    flat = (idx[..., 2] * cells + idx[..., 1]) * cells + idx[..., 0]
    return occupancy.reshape(-1)[flat]


def resize_grid(grid: Tensor, res: int) -> Tensor:
    """Trilinear resampling of a (1, C, Z, Y, X) grid to ``res`` points per side."""
    return F.interpolate(grid, size=(res, res, res), mode="trilinear", align_corners=True)
