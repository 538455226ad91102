"""World assets: coloured primitives placed in 3D, built from descriptions.

A :class:`Description` is what a caption says (which objects, how they relate); an
:class:`Asset` is where they are. Layout is deterministic, so a caption always means the same
geometry, which is what lets every method be scored against ground truth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal

import torch
from torch import Tensor

from dreamlift.world.shapes import SHAPES

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.12, 0.10),
    "orange": (0.95, 0.50, 0.08),
    "yellow": (0.95, 0.85, 0.10),
    "green": (0.15, 0.65, 0.20),
    "cyan": (0.10, 0.75, 0.80),
    "blue": (0.12, 0.25, 0.85),
    "purple": (0.50, 0.18, 0.70),
    "pink": (0.95, 0.50, 0.70),
    "brown": (0.50, 0.30, 0.12),
    "white": (0.92, 0.92, 0.92),
    "grey": (0.50, 0.50, 0.50),
    "black": (0.12, 0.12, 0.12),
}
GROUND_COLOUR = (0.72, 0.70, 0.66)
GAP = 0.1  # space between side-by-side objects
Relation = Literal["single", "on_top", "next_to"]


@dataclass(frozen=True)
class ObjectSpec:
    colour: str
    shape: str


@dataclass(frozen=True)
class Description:
    """What a caption says. For ``on_top`` the objects are (bottom, top); for ``next_to`` they
    are listed left to right as seen from the front view."""

    objects: tuple[ObjectSpec, ...]
    relation: Relation = "single"
    view: str | None = None


@dataclass(frozen=True)
class Part:
    """One object: a primitive with a colour and a similarity transform (yaw about +z)."""

    shape: str
    colour: str
    center: tuple[float, float, float]
    scale: float = 1.0
    yaw_deg: float = 0.0

    @property
    def rgb(self) -> tuple[float, float, float]:
        return COLOURS[self.colour]

    @property
    def bottom_z(self) -> float:
        return self.center[2] - SHAPES[self.shape].half_height * self.scale

    def bounding_radius(self) -> float:
        spec = SHAPES[self.shape]
        return self.scale * math.hypot(spec.radius, spec.half_height)

    def sdf(self, points: Tensor) -> Tensor:
        """Signed distance of world points (..., 3) to this part."""
        local = points - torch.tensor(self.center, dtype=points.dtype, device=points.device)
        if self.yaw_deg:
            c, s = math.cos(math.radians(self.yaw_deg)), math.sin(math.radians(self.yaw_deg))
            x, y = local[..., 0], local[..., 1]
            local = torch.stack([c * x + s * y, -s * x + c * y, local[..., 2]], dim=-1)
        return SHAPES[self.shape].sdf(local / self.scale) * self.scale


@dataclass(frozen=True)
class Asset:
    """Parts in world space, optionally standing on a ground plane at z = 0."""

    parts: tuple[Part, ...]
    ground: bool = False
    description: Description | None = field(default=None, compare=False)

    def bounding_sphere(self) -> tuple[Tensor, float]:
        """Centre and radius of a sphere holding every part (the ground is handled apart)."""
        centers = torch.tensor([p.center for p in self.parts])
        center = centers.mean(dim=0)
        radius = max(
            float((torch.tensor(p.center) - center).norm()) + p.bounding_radius()
            for p in self.parts
        )
        return center, radius

    def sdf(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """Distance to the nearest part and that part's index, for points (..., 3)."""
        dists = torch.stack([p.sdf(points) for p in self.parts], dim=-1)
        return dists.min(dim=-1)

    def colours(self) -> Tensor:
        """(n_parts, 3) base colours."""
        return torch.tensor([p.rgb for p in self.parts])

    def with_part(self, index: int, part: Part) -> Asset:
        """A copy with part ``index`` replaced (e.g. moved by a 3D edit)."""
        if not 0 <= index < len(self.parts):
            raise IndexError(f"object {index} does not exist; the asset has {len(self.parts)}")
        parts = list(self.parts)
        parts[index] = part
        return replace(self, parts=tuple(parts))

    def transformed_part(
        self,
        index: int,
        translate: tuple[float, float, float] = (0.0, 0.0, 0.0),
        yaw_deg: float = 0.0,
        scale: float = 1.0,
    ) -> Asset:
        """Move, turn (about the part's own vertical axis) and scale one part.

        Scaling keeps the part's bottom where it was, so an object on the ground stays on it.
        """
        p = self.parts[index]
        bottom = p.bottom_z
        new_scale = p.scale * scale
        cz = bottom + SHAPES[p.shape].half_height * new_scale
        center = (p.center[0] + translate[0], p.center[1] + translate[1], cz + translate[2])
        return self.with_part(
            index, replace(p, center=center, scale=new_scale, yaw_deg=p.yaw_deg + yaw_deg)
        )


def layout(desc: Description, ground: bool = False) -> Asset:
    """Place the described objects.

    Without a ground plane the asset is centred on the origin (fits in radius ~0.9, the view
    of orbit cameras at radius 2.7 with FOV 40 degrees). With ``ground`` the objects stand on
    z = 0, as in the scenes Diffusion Handles edits.
    """
    specs = [SHAPES[o.shape] for o in desc.objects]
    n = len(desc.objects)
    scale = (
        {1: 1.0, 2: 0.8, 3: 0.62}[n] if desc.relation == "next_to" else (1.0 if n == 1 else 0.75)
    )
    parts: list[Part] = []
    if desc.relation == "on_top":
        z = 0.0
        for obj, spec in zip(desc.objects, specs, strict=True):
            hh = spec.half_height * scale
            parts.append(Part(obj.shape, obj.colour, (0.0, 0.0, z + hh), scale))
            z += 2 * hh
        top = z
    else:
        widths = [s.half_width * scale for s in specs]
        total = sum(2 * w for w in widths) + GAP * (n - 1)
        y = -total / 2
        for obj, spec, w in zip(desc.objects, specs, widths, strict=True):
            hh = spec.half_height * scale
            parts.append(Part(obj.shape, obj.colour, (0.0, y + w, hh), scale))
            y += 2 * w + GAP
        top = max(2 * s.half_height * scale for s in specs)
    if not ground:
        parts = [
            replace(p, center=(p.center[0], p.center[1], p.center[2] - top / 2)) for p in parts
        ]
    return Asset(tuple(parts), ground=ground, description=desc)
