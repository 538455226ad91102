"""Lift pixels to 3D with their depth, project points back, and z-buffer them into an image.

Pure tensor functions (no diffusion). Conventions are :mod:`dreamlift.cameras`': OpenCV
camera coordinates (x right, y down, z forward), z-depth, pixel centres at integer + 0.5,
so lifting a pixel and projecting it again lands on the same pixel exactly. Depth 0 marks a
pixel with no surface (the sky of a render), which lifts to nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dreamlift.cameras import Cameras, focal_from_fov


@dataclass(frozen=True)
class Intrinsics:
    """A pinhole camera's focal lengths and principal point, in pixels, and its image size."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @classmethod
    def from_fov(cls, fov_deg: float, width: int, height: int) -> Intrinsics:
        """Square pixels, principal point at the centre, ``fov_deg`` across the width
        (Diffusion Handles assumes 55°, the FoV its depth estimator was trained on)."""
        f = float(focal_from_fov(fov_deg, width))
        return cls(f, f, width / 2, height / 2, width, height)

    @classmethod
    def from_cameras(cls, cameras: Cameras, index: int = 0) -> Intrinsics:
        """The real intrinsics of one camera of a batch (world scenes)."""
        return cls(
            float(cameras.fx[index]),
            float(cameras.fy[index]),
            float(cameras.cx[index]),
            float(cameras.cy[index]),
            cameras.width,
            cameras.height,
        )

    def pixel_rays(self, dtype: torch.dtype = torch.float32, device=None) -> Tensor:
        """(H, W, 3) camera-space points at z = 1 through each pixel centre."""
        ys, xs = torch.meshgrid(
            torch.arange(self.height, dtype=dtype, device=device) + 0.5,
            torch.arange(self.width, dtype=dtype, device=device) + 0.5,
            indexing="ij",
        )
        x = (xs - self.cx) / self.fx
        y = (ys - self.cy) / self.fy
        return torch.stack([x, y, torch.ones_like(x)], dim=-1)


def lift(depth: Tensor, intrinsics: Intrinsics) -> Tensor:
    """(H, W) z-depth → (H, W, 3) camera-space points (zeros where depth is 0)."""
    rays = intrinsics.pixel_rays(depth.dtype, depth.device)
    return rays * depth[..., None]


def project(points: Tensor, intrinsics: Intrinsics) -> tuple[Tensor, Tensor]:
    """(N, 3) camera points → integer pixels (N, 2) as (row, col), and their z-depth (N,).

    A point falls in the pixel whose square contains its projection (floor of the
    continuous coordinate). Points behind the camera get z ≤ 0; callers drop them.
    """
    z = points[:, 2]
    safe = torch.where(z.abs() < 1e-12, torch.full_like(z, 1e-12), z)
    u = intrinsics.fx * points[:, 0] / safe + intrinsics.cx
    v = intrinsics.fy * points[:, 1] / safe + intrinsics.cy
    pix = torch.stack([torch.floor(v), torch.floor(u)], dim=-1)
    return pix.clamp(-1e9, 1e9).long(), z


@dataclass
class Splat:
    """What a z-buffer of points onto a depth image leaves.

    ``won`` (H, W): pixels where one of the points is nearest; ``depth`` (H, W): the winning
    z there, the given background elsewhere (``inf`` where the background is 0 or absent:
    no surface); ``winner`` (H, W) long: the index of the winning point (-1 where none won);
    ``landed`` (H, W): pixels some point projects to, whether it won or lost to a nearer
    background surface.
    """

    won: Tensor
    depth: Tensor
    winner: Tensor
    landed: Tensor


def zbuffer(points: Tensor, intrinsics: Intrinsics, background: Tensor | None = None) -> Splat:
    """Splat (N, 3) camera points into pixels; the nearest surface wins each pixel.

    ``background`` (H, W) is the z-depth already in the buffer (``inf`` or 0 = nothing):
    a point wins a pixel when it is at least as near as the background there, so an
    unmoved point sitting exactly on the background keeps its pixel. Points outside the
    image or behind the camera are dropped.
    """
    h, w = intrinsics.height, intrinsics.width
    device = points.device
    bg = torch.full((h, w), float("inf"), dtype=points.dtype, device=device)
    if background is not None:
        bg = torch.where(background > 0, background.to(points.dtype), bg)
    pix, z = project(points, intrinsics)
    inside = (z > 1e-9) & (pix[:, 0] >= 0) & (pix[:, 0] < h) & (pix[:, 1] >= 0) & (pix[:, 1] < w)
    index = torch.nonzero(inside).squeeze(-1)
    flat = pix[index, 0] * w + pix[index, 1]
    zi = z[index]
    nearest = torch.full((h * w,), float("inf"), dtype=points.dtype, device=device)
    nearest = nearest.scatter_reduce(0, flat, zi, reduce="amin")
    visible = (zi <= nearest[flat]) & (zi <= bg.reshape(-1)[flat])
    winner = torch.full((h * w,), -1, dtype=torch.long, device=device)
    # Exact ties between points are rare; any one of them may take the pixel.
    winner[flat[visible]] = index[visible]
    won = winner >= 0
    depth = torch.where(won, nearest, bg.reshape(-1))
    landed = torch.isfinite(nearest)
    return Splat(won.reshape(h, w), depth.reshape(h, w), winner.reshape(h, w), landed.reshape(h, w))
