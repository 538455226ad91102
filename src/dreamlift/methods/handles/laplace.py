"""Harmonic filling of a map inside a region: Poisson filling with no guide
(Pérez et al., Poisson Image Editing, SIGGRAPH 2003).

Diffusion Handles solves ``Δf = div v`` inside a region with the known values as Dirichlet
boundary, twice on depth: to remove the object from the background depth (``v`` from a
LaMa-inpainted image's depth), and to fill the holes splatting leaves inside the moved
object (``v = 0``). With no inpainter here both use ``v = 0``: the harmonic fill, the
smoothest surface meeting the boundary, exact on any affine ramp, and so on the disparity
of any plane (1/z of a plane is affine in pixel coordinates) — which is why the callers
fill disparity, not z.

The five-point system is symmetric positive definite, so conjugate gradients solve it
matrix-free with a convolution; no sparse-matrix library is needed and it runs on any
device. At the image border the missing neighbours are dropped (a zero-flux, Neumann edge).
Large regions start from the solution of the half-size problem (coarse to fine), which
already has the smooth components that plain CG converges slowest on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

_COARSE_MIN = 64  # image side from which a half-size solve seeds CG
_CROSS = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])


def _neighbour_sum(x: Tensor) -> Tensor:
    """Sum of the four in-image neighbours of each pixel of an (H, W) map."""
    kernel = _CROSS.to(x)[None, None]
    return F.conv2d(x[None, None], kernel, padding=1)[0, 0]


def poisson_fill(
    values: Tensor,
    region: Tensor,
    tol: float = 1e-16,
    max_iter: int | None = None,
) -> Tensor:
    """``values`` (H, W) with the pixels of ``region`` re-solved; the rest is the boundary.

    Solves, for each p in the region, ``n_p f_p − Σ_{q~p, q∈Ω} f_q = Σ_{q~p, q∉Ω} f*_q``
    with ``n_p`` the number of in-image neighbours (the harmonic fill). Computed in float64,
    returned in the input's dtype. A region with no known pixel around it is singular; the
    caller must keep at least one pixel outside.
    """
    dtype = values.dtype
    f_known = torch.where(region, torch.zeros_like(values), values).double()
    inside = region.double()
    degree = _neighbour_sum(torch.ones_like(f_known))
    rhs = _neighbour_sum(f_known) * inside

    def apply(x: Tensor) -> Tensor:
        return (degree * x - _neighbour_sum(x)) * inside

    x = _coarse_start(values, region) if min(region.shape) >= _COARSE_MIN else None
    x = torch.zeros_like(f_known) if x is None else x * inside
    r = rhs - apply(x)
    p = r.clone()
    rs = (r * r).sum()
    stop = tol * max(float((rhs * rhs).sum()), 1e-30)  # on the squared residual
    n = int(region.sum())
    for _ in range(max_iter or max(50, 4 * n)):
        if float(rs) <= stop:
            break
        ap = apply(p)
        alpha = rs / (p * ap).sum()
        x = x + alpha * p
        r = r - alpha * ap
        rs_new = (r * r).sum()
        p = r + (rs_new / rs) * p
        rs = rs_new
    return torch.where(region, x, values.double()).to(dtype)


def _coarse_start(values: Tensor, region: Tensor) -> Tensor | None:
    """The fill of the half-size problem, upsampled: a starting point for CG."""
    if int(region.sum()) < 256:
        return None
    h, w = region.shape
    known = (~region).double()[None, None]
    known_lo = F.avg_pool2d(known, 2, ceil_mode=True)
    # Average only known pixels into a coarse known pixel; any unknown makes it unknown.
    vals_lo = F.avg_pool2d(torch.where(region, 0.0, values.double())[None, None], 2, ceil_mode=True)
    vals_lo = vals_lo / known_lo.clamp(min=1e-12)
    region_lo = known_lo[0, 0] < 1.0
    if bool(region_lo.all()):
        return None
    coarse = poisson_fill(vals_lo[0, 0], region_lo, tol=1e-8)
    up = F.interpolate(coarse[None, None], scale_factor=2, mode="bilinear", align_corners=False)
    return up[0, 0, :h, :w]
