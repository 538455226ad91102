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

from dreamlift.cameras import DEFAULT_ORBIT, OrbitRange, orbit_cameras, sample_orbit
from dreamlift.io.media import image_grid, save_image
from dreamlift.io.run import RunDir
from dreamlift.io.transforms import PosedImages, write_transforms
from dreamlift.world import RenderSettings, asset_from_caption, render
from dreamlift.world import caption as to_caption

RANDOM_ELEVATION = (-10.0, 60.0)
"""Elevation range of random views, degrees (reconstruct's training orbits)."""


@dataclass(frozen=True)
class WorldRender:
    """One ``dreamlift world render``."""

    caption: str
    views: int = 8
    """Evenly spaced in azimuth from the front, at ``elevation``; or random with ``random``."""
    resolution: int = 128
    elevation: float = 20.0
    random: bool = False
    seed: int = 0
    """Of the random views."""
    supersample: int = 2
    ground: bool = False
    """Stand the objects on a ground plane (a scene)."""


def render_world(request: WorldRender, out: Path) -> dict[str, Any]:
    """Render ``request`` into the folder ``out``; returns the canonical caption and outputs."""
    asset = asset_from_caption(request.caption, ground=request.ground)
    run = RunDir(out).prepare()
    if request.random:
        generator = torch.Generator().manual_seed(request.seed)
        ranges = OrbitRange(elevation=RANDOM_ELEVATION)
        cams, _, _ = sample_orbit(request.views, request.resolution, ranges, generator)
    else:
        azimuth = torch.arange(request.views, dtype=torch.float32) * 360.0 / request.views
        elevation = torch.full((request.views,), request.elevation)
        cams = orbit_cameras(
            azimuth, elevation, DEFAULT_ORBIT.radius, DEFAULT_ORBIT.fov_deg, request.resolution
        )
    t0 = time.perf_counter()
    r = render(asset, cams, RenderSettings(supersample=request.supersample))
    render_s = time.perf_counter() - t0
    data = PosedImages(r["rgb"], cams, r["alpha"], r["depth"])
    canonical = to_caption(asset.description)  # type: ignore[arg-type]
    transforms = write_transforms(run.path, data, extra={"caption": canonical, "world": "z-up"})
    columns = min(request.views, 8)
    grid = save_image(run.path / "grid.png", image_grid(r["rgb"], columns=columns))
    outputs = {"transforms": transforms, "grid": grid}
    settings = {
        "caption": canonical,
        "views": request.views,
        "resolution": request.resolution,
        "seed": request.seed,
        "elevation": request.elevation,
        "random": request.random,
        "supersample": request.supersample,
        "ground": request.ground,
    }
    metrics = {"coverage": float(r["alpha"].mean())}
    run.write_summary(
        f"world render {request.caption!r}", settings, metrics, {"render_s": render_s}, outputs
    )
    return {"caption": canonical, "metrics": metrics, "outputs": outputs}
