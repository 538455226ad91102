"""Signed-distance functions of the world's primitives, in their canonical frame.

Every primitive is centred at the origin of its own frame with the z axis up; its size is
chosen so that a unit-scale primitive fits in a ball of radius ~0.5. Functions return a
signed distance that is exact, or a lower bound of the exact one (intersections of convex
sets), which is all sphere tracing needs to never step through a surface.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class ShapeSpec:
    """A primitive: its SDF and the extents the layout of compositions needs."""

    name: str
    sdf: Callable[[Tensor], Tensor]
    half_height: float  # z extent / 2 at unit scale
    half_width: float  # y extent / 2 at unit scale and no yaw (spacing of side-by-side objects)
    radius: float  # largest distance from the z axis at unit scale, any yaw


def _radial(p: Tensor) -> Tensor:
    return torch.sqrt(p[..., 0] ** 2 + p[..., 1] ** 2 + 1e-12)


def _box(p: Tensor, half: float = 0.35) -> Tensor:
    q = p.abs() - half
    outside = q.clamp(min=0).norm(dim=-1)
    inside = q.max(dim=-1).values.clamp(max=0)
    return outside + inside


def _sphere(p: Tensor, r: float = 0.4) -> Tensor:
    return p.norm(dim=-1) - r


def _cylinder(p: Tensor, r: float = 0.32, h: float = 0.4) -> Tensor:
    d = torch.stack([_radial(p) - r, p[..., 2].abs() - h], dim=-1)
    return d.max(dim=-1).values.clamp(max=0) + d.clamp(min=0).norm(dim=-1)


def _cone(p: Tensor, r: float = 0.4, h: float = 0.4) -> Tensor:
    """Solid cone, base disc of radius r at z=-h, apex at z=+h (lower-bound SDF)."""
    height = 2 * h
    side = (_radial(p) * height + (p[..., 2] - h) * r) / (height**2 + r**2) ** 0.5
    return torch.maximum(side, -h - p[..., 2])


def _torus(p: Tensor, major: float = 0.3, minor: float = 0.13) -> Tensor:
    """A ring lying flat in the xy plane (a doughnut on a table)."""
    q = torch.stack([_radial(p) - major, p[..., 2]], dim=-1)
    return q.norm(dim=-1) - minor


def _pyramid(p: Tensor, half: float = 0.4, h: float = 0.4) -> Tensor:
    """Square pyramid, base 2*half wide at z=-h, apex at z=+h (lower-bound SDF)."""
    height = 2 * h
    norm = (height**2 + half**2) ** 0.5
    # Four slanted faces, using symmetry in x and y.
    fx = (p[..., 0].abs() * height + (p[..., 2] - h) * half) / norm
    fy = (p[..., 1].abs() * height + (p[..., 2] - h) * half) / norm
    return torch.maximum(torch.maximum(fx, fy), -h - p[..., 2])


SHAPES: dict[str, ShapeSpec] = {
    s.name: s
    for s in (
        ShapeSpec("cube", _box, 0.35, 0.35, 0.35 * 2**0.5),
        ShapeSpec("sphere", _sphere, 0.4, 0.4, 0.4),
        ShapeSpec("cylinder", _cylinder, 0.4, 0.32, 0.32),
        ShapeSpec("cone", _cone, 0.4, 0.4, 0.4),
        ShapeSpec("torus", _torus, 0.13, 0.43, 0.43),
        ShapeSpec("pyramid", _pyramid, 0.4, 0.4, 0.4 * 2**0.5),
    )
}
