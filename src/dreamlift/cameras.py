"""Batched pinhole cameras, orbit sampling and view words.

Conventions (one place, so nothing else has to guess):

* World space is right-handed and **z-up**. Objects of the world stand on the plane z = 0 or
  are centred at the origin; the front of an object faces +x.
* Cameras store ``c2w`` in the **OpenCV** convention: the camera looks along its +z axis,
  +x points right in the image and +y points down. ``c2w[:, :3, 0:3]`` are the camera axes
  expressed in world space, ``c2w[:, :3, 3]`` its centre.
* OpenGL / Blender / nerfstudio ``transforms.json`` cameras look along -z with +y up. The two
  differ by flipping the y and z camera axes: ``c2w_gl = c2w_cv @ diag(1, -1, -1, 1)``
  (:func:`opencv_to_opengl`, :func:`opengl_to_opencv`, an involution).
* Pixel centres sit at integer + 0.5, so pixel (0, 0) covers [0, 1) x [0, 1).
* Depth is **z-depth** (distance along the optical axis), the convention of depth sensors and
  of SD2-depth's MiDaS input (before its inversion), not ray length.
* Azimuth is measured in degrees counter-clockwise about +z from +x (azimuth 0 = the camera on
  the +x axis, seeing the object's front); elevation in degrees above the xy plane.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

_GL_FLIP = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0]))


@dataclass
class Cameras:
    """A batch of B pinhole cameras sharing one image size."""

    c2w: Tensor  # (B, 4, 4) OpenCV camera-to-world
    fx: Tensor  # (B,) focal lengths in pixels
    fy: Tensor
    cx: Tensor  # (B,) principal point in pixels
    cy: Tensor
    width: int
    height: int

    def __post_init__(self) -> None:
        if self.c2w.ndim != 3 or self.c2w.shape[1:] != (4, 4):
            raise ValueError(f"c2w must be (B, 4, 4), got {tuple(self.c2w.shape)}")
        b = self.c2w.shape[0]
        for name in ("fx", "fy", "cx", "cy"):
            value = torch.as_tensor(getattr(self, name), dtype=self.c2w.dtype, device=self.device)
            setattr(self, name, value.expand(b).clone() if value.ndim == 0 else value)

    def __len__(self) -> int:
        return self.c2w.shape[0]

    def __getitem__(self, index: int | slice | Tensor) -> Cameras:
        if isinstance(index, int):
            index = slice(index, index + 1)
        return Cameras(
            self.c2w[index],
            self.fx[index],
            self.fy[index],
            self.cx[index],
            self.cy[index],
            self.width,
            self.height,
        )

    @property
    def device(self) -> torch.device:
        return self.c2w.device

    @property
    def centers(self) -> Tensor:
        return self.c2w[:, :3, 3]

    def to(self, device: torch.device | str) -> Cameras:
        return Cameras(
            self.c2w.to(device),
            self.fx.to(device),
            self.fy.to(device),
            self.cx.to(device),
            self.cy.to(device),
            self.width,
            self.height,
        )

    def w2c(self) -> Tensor:
        """World-to-camera (B, 4, 4), inverted in closed form (rigid transform)."""
        rot = self.c2w[:, :3, :3]
        t = self.c2w[:, :3, 3:]
        out = torch.zeros_like(self.c2w)
        out[:, :3, :3] = rot.transpose(1, 2)
        out[:, :3, 3:] = -rot.transpose(1, 2) @ t
        out[:, 3, 3] = 1.0
        return out

    def intrinsics(self) -> Tensor:
        """K matrices (B, 3, 3)."""
        k = torch.zeros(len(self), 3, 3, dtype=self.c2w.dtype, device=self.device)
        k[:, 0, 0], k[:, 1, 1] = self.fx, self.fy
        k[:, 0, 2], k[:, 1, 2] = self.cx, self.cy
        k[:, 2, 2] = 1.0
        return k

    def scaled(self, width: int, height: int | None = None) -> Cameras:
        """The same cameras at another resolution (intrinsics rescaled, same field of view)."""
        height = height if height is not None else round(self.height * width / self.width)
        sx, sy = width / self.width, height / self.height
        return Cameras(
            self.c2w, self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy, width, height
        )

    def rays(self) -> tuple[Tensor, Tensor, Tensor]:
        """Per-pixel rays in world space.

        Returns origins (B, H, W, 3), unit directions (B, H, W, 3) and ``z_per_t`` (B, H, W, 1),
        the z-depth gained per unit of ray length, so ``depth = t * z_per_t``.
        """
        dev, dt = self.device, self.c2w.dtype
        ys, xs = torch.meshgrid(
            torch.arange(self.height, device=dev, dtype=dt) + 0.5,
            torch.arange(self.width, device=dev, dtype=dt) + 0.5,
            indexing="ij",
        )
        x = (xs[None] - self.cx[:, None, None]) / self.fx[:, None, None]
        y = (ys[None] - self.cy[:, None, None]) / self.fy[:, None, None]
        d_cam = torch.stack([x, y, torch.ones_like(x)], dim=-1)  # (B, H, W, 3)
        norm = d_cam.norm(dim=-1, keepdim=True)
        d_world = torch.einsum("bij,bhwj->bhwi", self.c2w[:, :3, :3], d_cam / norm)
        origins = self.centers[:, None, None, :].expand_as(d_world)
        return origins, d_world, 1.0 / norm

    def project(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """Project world points (B, N, 3) to pixels (B, N, 2) and z-depth (B, N)."""
        w2c = self.w2c()
        cam = torch.einsum("bij,bnj->bni", w2c[:, :3, :3], points) + w2c[:, None, :3, 3]
        z = cam[..., 2]
        safe_z = torch.where(z.abs() < 1e-8, torch.full_like(z, 1e-8), z)
        u = self.fx[:, None] * cam[..., 0] / safe_z + self.cx[:, None]
        v = self.fy[:, None] * cam[..., 1] / safe_z + self.cy[:, None]
        return torch.stack([u, v], dim=-1), z


def focal_from_fov(fov_deg: float | Tensor, size: int) -> Tensor:
    """Focal length in pixels for a field of view spanning ``size`` pixels."""
    fov = torch.as_tensor(fov_deg, dtype=torch.float32)
    return 0.5 * size / torch.tan(torch.deg2rad(fov) / 2)


def look_at(eye: Tensor, target: Tensor, up: Tensor | None = None) -> Tensor:
    """OpenCV c2w (B, 4, 4) for cameras at ``eye`` (B, 3) looking at ``target`` (B, 3)."""
    if up is None:
        up = torch.tensor([0.0, 0.0, 1.0], dtype=eye.dtype, device=eye.device).expand_as(eye)
    forward = torch.nn.functional.normalize(target - eye, dim=-1)
    right = torch.cross(forward, up, dim=-1)
    # Looking straight down or up: any right vector perpendicular to forward will do.
    degenerate = right.norm(dim=-1, keepdim=True) < 1e-6
    alt = torch.tensor([0.0, 1.0, 0.0], dtype=eye.dtype, device=eye.device).expand_as(eye)
    right = torch.where(degenerate, torch.cross(forward, alt, dim=-1), right)
    right = torch.nn.functional.normalize(right, dim=-1)
    down = torch.cross(forward, right, dim=-1)
    c2w = torch.zeros(eye.shape[0], 4, 4, dtype=eye.dtype, device=eye.device)
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2] = right, down, forward
    c2w[:, :3, 3] = eye
    c2w[:, 3, 3] = 1.0
    return c2w


def orbit_cameras(
    azimuth_deg: Tensor,
    elevation_deg: Tensor,
    radius: Tensor | float,
    fov_deg: Tensor | float,
    size: int,
    target: Tensor | None = None,
) -> Cameras:
    """Cameras on a sphere around ``target`` (default the origin), all looking at it."""
    az = torch.deg2rad(torch.as_tensor(azimuth_deg, dtype=torch.float32)).reshape(-1)
    el = torch.deg2rad(torch.as_tensor(elevation_deg, dtype=torch.float32)).reshape(-1)
    b = az.shape[0]
    radius = torch.as_tensor(radius, dtype=torch.float32).expand(b)
    fov = torch.as_tensor(fov_deg, dtype=torch.float32).expand(b)
    tgt = torch.zeros(b, 3) if target is None else torch.as_tensor(target).float().expand(b, 3)
    eye = tgt + radius[:, None] * torch.stack(
        [torch.cos(el) * torch.cos(az), torch.cos(el) * torch.sin(az), torch.sin(el)], dim=-1
    )
    focal = focal_from_fov(fov, size)
    half = torch.full((b,), size / 2)
    return Cameras(look_at(eye, tgt), focal, focal.clone(), half, half.clone(), size, size)


@dataclass(frozen=True)
class Orbit:
    """A camera orbiting the origin: its distance (world units) and field of view (degrees)."""

    radius: float
    fov_deg: float


DEFAULT_ORBIT = Orbit(radius=2.7, fov_deg=40.0)
"""The world's camera: the toy priors were trained on renders seen from this orbit, and the
ground truth, the turntables and the world's own renders use it unless told otherwise."""


@dataclass(frozen=True)
class OrbitRange:
    """Ranges to sample orbit cameras from (degrees and world units)."""

    radius: tuple[float, float] = (DEFAULT_ORBIT.radius, DEFAULT_ORBIT.radius)
    elevation: tuple[float, float] = (0.0, 40.0)
    azimuth: tuple[float, float] = (-180.0, 180.0)
    fov: tuple[float, float] = (DEFAULT_ORBIT.fov_deg, DEFAULT_ORBIT.fov_deg)


def sample_orbit(
    n: int, size: int, ranges: OrbitRange = OrbitRange(), generator: torch.Generator | None = None
) -> tuple[Cameras, Tensor, Tensor]:
    """Sample n orbit cameras uniformly within ``ranges``; returns (cameras, azimuth, elevation).

    Elevation is sampled uniformly in sin(elevation) so views cover the sphere's band evenly.
    """

    def uniform(lo_hi: tuple[float, float]) -> Tensor:
        lo, hi = lo_hi
        return lo + (hi - lo) * torch.rand(n, generator=generator)

    lo, hi = (math.sin(math.radians(e)) for e in ranges.elevation)
    elevation = torch.rad2deg(torch.asin(uniform((lo, hi))))
    azimuth = uniform(ranges.azimuth)
    cams = orbit_cameras(azimuth, elevation, uniform(ranges.radius), uniform(ranges.fov), size)
    return cams, azimuth, elevation


def turntable(
    n: int,
    size: int,
    elevation_deg: float = 20.0,
    radius: float = DEFAULT_ORBIT.radius,
    fov_deg: float = DEFAULT_ORBIT.fov_deg,
) -> Cameras:
    """n cameras evenly spaced in azimuth (starting at the front) for turntable videos."""
    azimuth = torch.arange(n, dtype=torch.float32) * 360.0 / n
    return orbit_cameras(azimuth, torch.full((n,), elevation_deg), radius, fov_deg, size)


def view_word(azimuth_deg: float, elevation_deg: float = 0.0, overhead_above: float = 60.0) -> str:
    """The caption view word for a camera direction: front, side, back or overhead.

    Front covers |azimuth| < 45 degrees, back |azimuth| > 135 degrees, side the rest (the
    DreamFusion convention); cameras above ``overhead_above`` degrees are overhead.
    """
    if elevation_deg >= overhead_above:
        return "overhead"
    a = abs((azimuth_deg + 180.0) % 360.0 - 180.0)
    if a < 45.0:
        return "front"
    if a > 135.0:
        return "back"
    return "side"


def opencv_to_opengl(c2w: Tensor) -> Tensor:
    """OpenCV c2w → OpenGL/nerfstudio c2w (flip the camera's y and z axes)."""
    return c2w @ _GL_FLIP.to(c2w)


def opengl_to_opencv(c2w: Tensor) -> Tensor:
    """OpenGL/nerfstudio c2w → OpenCV c2w (the same flip; it is its own inverse)."""
    return c2w @ _GL_FLIP.to(c2w)
