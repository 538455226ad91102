"""What ``dreamlift generate`` writes besides the run contract: a turntable and the 3D file(s)."""

from __future__ import annotations

from pathlib import Path

from dreamlift.cameras import turntable
from dreamlift.fields.base import Field
from dreamlift.io.run import RunDir
from dreamlift.methods.common.outputs import run_files, write_turntable_and_3d
from dreamlift.methods.generate.config import GenerateConfig
from dreamlift.world.assets import Asset


def write_outputs(
    run: RunDir, cfg: GenerateConfig, fld: Field, warnings: list[str], truth: Asset | None = None
) -> dict[str, Path]:
    """Turntable (mp4 + gif, ``turntable_size`` pixels) from the middle of the training
    orbits, beside the true asset's for a world caption (``truth``), and the 3D file(s)
    (``export: mesh`` adds a Gaussian field's mesh); an empty field warns instead of failing."""
    radius, fov = sum(cfg.radius) / 2, sum(cfg.fov) / 2
    cams = turntable(
        cfg.turntable_frames, cfg.turntable_size, elevation_deg=20.0, radius=radius, fov_deg=fov
    )
    mesh = cfg.mesh_resolution if cfg.export == "mesh" else None
    return {
        **run_files(run),
        **write_turntable_and_3d(run, fld, cams, warnings, mesh=mesh, truth=truth),
    }
