"""The settings of ``dreamlift world render``."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dreamlift.cameras import (
    DEFAULT_ORBIT,
    Cameras,
    Orbit,
    OrbitRange,
    orbit_cameras,
    sample_orbit,
)

RANDOM_ELEVATION = (-10.0, 60.0)
"""Elevation range of random views, degrees (reconstruct's training orbits)."""


@dataclass(frozen=True)
class WorldViews:
    """Which cameras see the asset: ``count`` evenly spaced in azimuth from the front at
    ``elevation`` on the world's orbit, or with ``random`` random orbit cameras (``seed``)."""

    count: int = 8
    elevation: float = 20.0
    random: bool = False
    seed: int = 0

    def cameras(self, resolution: int, orbit: Orbit = DEFAULT_ORBIT) -> Cameras:
        if self.random:
            generator = torch.Generator().manual_seed(self.seed)
            ranges = OrbitRange(
                radius=(orbit.radius, orbit.radius),
                elevation=RANDOM_ELEVATION,
                fov=(orbit.fov_deg, orbit.fov_deg),
            )
            return sample_orbit(self.count, resolution, ranges, generator)[0]
        azimuth = torch.arange(self.count, dtype=torch.float32) * 360.0 / self.count
        elevation = torch.full((self.count,), self.elevation)
        return orbit_cameras(azimuth, elevation, orbit.radius, orbit.fov_deg, resolution)


@dataclass(frozen=True)
class HeadRequest:
    """A head of the world: its seed, attribute changes (name, value) and light (a name of
    ``LIGHT_DIRECTIONS`` or 9/27 SH coefficients, comma-separated)."""

    seed: int = 0
    overrides: tuple[tuple[str, str], ...] = ()
    light: str = "front"


@dataclass(frozen=True)
class WorldRender:
    """One ``dreamlift world render``."""

    caption: str
    views: WorldViews = WorldViews()
    resolution: int = 128
    supersample: int = 2
    ground: bool = False
    """Stand the objects on a ground plane (a scene)."""
    head: HeadRequest | None = None
    """Render a head (``caption``, if any, must then be a head caption)."""
