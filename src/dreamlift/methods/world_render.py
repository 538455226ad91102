"""World renders as posed images: what ``dreamlift world render`` writes.

A world asset seen by evenly spaced orbit cameras on the world's orbit (or random ones), as
a nerfstudio ``transforms.json`` folder with RGBA images, depth and a preview grid, plus the
run contract's ``summary.json`` — the input of ``dreamlift reconstruct --data``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dreamlift.cameras import DEFAULT_ORBIT, Cameras, OrbitRange, orbit_cameras, sample_orbit
from dreamlift.io.media import image_grid, save_image
from dreamlift.io.run import RunDir
from dreamlift.io.transforms import PosedImages, write_transforms
from dreamlift.world import RenderSettings, asset_from_caption, render
from dreamlift.world import caption as to_caption

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

    def cameras(self, resolution: int) -> Cameras:
        if self.random:
            generator = torch.Generator().manual_seed(self.seed)
            ranges = OrbitRange(elevation=RANDOM_ELEVATION)
            return sample_orbit(self.count, resolution, ranges, generator)[0]
        azimuth = torch.arange(self.count, dtype=torch.float32) * 360.0 / self.count
        elevation = torch.full((self.count,), self.elevation)
        radius, fov = DEFAULT_ORBIT.radius, DEFAULT_ORBIT.fov_deg
        return orbit_cameras(azimuth, elevation, radius, fov, resolution)


@dataclass(frozen=True)
class WorldRender:
    """One ``dreamlift world render``."""

    caption: str
    views: WorldViews = WorldViews()
    resolution: int = 128
    supersample: int = 2
    ground: bool = False
    """Stand the objects on a ground plane (a scene)."""


def render_world(request: WorldRender, out: Path) -> dict[str, Any]:
    """Render ``request`` into the folder ``out``; returns the canonical caption and outputs."""
    asset = asset_from_caption(request.caption, ground=request.ground)
    run = RunDir(out).prepare()
    cams = request.views.cameras(request.resolution)
    t0 = time.perf_counter()
    r = render(asset, cams, RenderSettings(supersample=request.supersample))
    render_s = time.perf_counter() - t0
    data = PosedImages(r["rgb"], cams, r["alpha"], r["depth"])
    canonical = to_caption(asset.description)  # type: ignore[arg-type]
    transforms = write_transforms(run.path, data, extra={"caption": canonical, "world": "z-up"})
    columns = min(request.views.count, 8)
    grid = save_image(run.path / "grid.png", image_grid(r["rgb"], columns=columns))
    outputs = {"transforms": transforms, "grid": grid}
    views = request.views
    settings = {
        "caption": canonical,
        "views": views.count,
        "resolution": request.resolution,
        "seed": views.seed,
        "elevation": views.elevation,
        "random": views.random,
        "supersample": request.supersample,
        "ground": request.ground,
    }
    metrics = {"coverage": float(r["alpha"].mean())}
    run.write_summary(
        f"world render {request.caption!r}", settings, metrics, {"render_s": render_s}, outputs
    )
    return {"caption": canonical, "metrics": metrics, "outputs": outputs}
