"""EWA projection of 3D Gaussians into cameras (3DGS, Kerbl et al. 2023; Zwicker et al. 2001).

``Σ' = J W Σ Wᵀ Jᵀ + 0.3 I`` (the 0.3 px² low-pass dilation), conic = ``Σ'⁻¹``, radius =
``ceil(3 sqrt(λ_max))``; Gaussians in front of the near plane (z < 0.01) or whose 3σ box misses
the image get radius 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dreamlift.cameras import Cameras

NEAR_PLANE = 0.01
"""Gaussians whose centre is closer than this (z-depth) are culled, as in 3DGS."""
EPS_2D = 0.3
"""Low-pass dilation (px²) added to every projected covariance, as in 3DGS."""


@dataclass
class Projected:
    """Screen-space Gaussians for a batch of B cameras."""

    means2d: Tensor  # (B, N, 2) pixel coordinates (pixel centres at +0.5)
    conics: Tensor  # (B, N, 3) inverse 2D covariance (a, b, c) = [[a, b], [b, c]]
    depths: Tensor  # (B, N) camera z of the centres
    radii: Tensor  # (B, N) 3σ radius in pixels, 0 where culled


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """Rotation matrices (N, 3, 3) from unnormalised wxyz quaternions (N, 4)."""
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z),
        2 * (x * y - w * z),
        2 * (x * z + w * y),
        2 * (x * y + w * z),
        1 - 2 * (x * x + z * z),
        2 * (y * z - w * x),
        2 * (x * z - w * y),
        2 * (y * z + w * x),
        1 - 2 * (x * x + y * y),
    ]
    return torch.stack(rows, dim=-1).reshape(*quats.shape[:-1], 3, 3)


def covariance_3d(quats: Tensor, log_scales: Tensor) -> Tensor:
    """World covariances ``R S Sᵀ Rᵀ`` (N, 3, 3)."""
    m = quat_to_rotmat(quats) * torch.exp(log_scales)[..., None, :]
    return m @ m.transpose(-1, -2)


def project_gaussians(
    means: Tensor, quats: Tensor, log_scales: Tensor, cameras: Cameras
) -> Projected:
    """EWA-project N Gaussians into B cameras (differentiable in everything but the radii)."""
    w2c = cameras.w2c().to(means.dtype)
    rot, trans = w2c[:, :3, :3], w2c[:, :3, 3]
    cam = torch.einsum("bij,nj->bni", rot, means) + trans[:, None, :]  # (B, N, 3)
    x, y, z = cam.unbind(-1)
    fx, fy = cameras.fx[:, None].to(means), cameras.fy[:, None].to(means)
    cx, cy = cameras.cx[:, None].to(means), cameras.cy[:, None].to(means)
    safe_z = torch.where(z.abs() < 1e-8, torch.full_like(z, 1e-8), z)
    means2d = torch.stack([fx * x / safe_z + cx, fy * y / safe_z + cy], dim=-1)

    # The Jacobian is evaluated at a centre clamped to a little beyond the frustum (as 3DGS):
    # far off-axis Gaussians would otherwise get huge, unstable footprints.
    tan_x, tan_y = 0.5 * cameras.width / fx, 0.5 * cameras.height / fy
    tx = safe_z * torch.minimum(
        torch.maximum(x / safe_z, -(cx / fx + 0.3 * tan_x)), (cameras.width - cx) / fx + 0.3 * tan_x
    )
    ty = safe_z * torch.minimum(
        torch.maximum(y / safe_z, -(cy / fy + 0.3 * tan_y)),
        (cameras.height - cy) / fy + 0.3 * tan_y,
    )
    zero = torch.zeros_like(z)
    jac = torch.stack(
        [
            torch.stack([fx / safe_z, zero, -fx * tx / safe_z**2], dim=-1),
            torch.stack([zero, fy / safe_z, -fy * ty / safe_z**2], dim=-1),
        ],
        dim=-2,
    )  # (B, N, 2, 3)
    t = jac @ rot[:, None]  # J W
    cov2d = t @ covariance_3d(quats, log_scales)[None] @ t.transpose(-1, -2)
    a = cov2d[..., 0, 0] + EPS_2D
    b = cov2d[..., 0, 1]
    c = cov2d[..., 1, 1] + EPS_2D
    det = a * c - b * b
    ok_det = det > 1e-12
    inv_det = 1.0 / torch.where(ok_det, det, torch.ones_like(det))
    conics = torch.stack([c * inv_det, -b * inv_det, a * inv_det], dim=-1)

    with torch.no_grad():
        mid = 0.5 * (a + c)
        lam = mid + torch.sqrt(torch.clamp(mid * mid - det, min=0.1))
        radii = torch.ceil(3.0 * torch.sqrt(lam))
        u, v = means2d.unbind(-1)
        on_screen = (
            (u + radii > 0)
            & (u - radii < cameras.width)
            & (v + radii > 0)
            & (v - radii < cameras.height)
        )
        visible = (z >= NEAR_PLANE) & ok_det & on_screen & torch.isfinite(radii)
        radii = torch.where(visible, radii, torch.zeros_like(radii))
    return Projected(means2d, conics, z, radii)
