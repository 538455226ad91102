"""What ``dreamlift generate`` writes besides the run contract: a turntable and the 3D file(s)."""

from __future__ import annotations

from pathlib import Path

import torch

from dreamlift.cameras import turntable
from dreamlift.errors import DataError
from dreamlift.fields.base import Field
from dreamlift.fields.gaussians import GaussianField
from dreamlift.io.media import save_turntable
from dreamlift.io.run import RunDir
from dreamlift.loop import checkpoint_path
from dreamlift.methods.generate_config import GenerateConfig
from dreamlift.methods.generate_scoring import field_renderer


def write_outputs(
    run: RunDir, cfg: GenerateConfig, fld: Field, warnings: list[str]
) -> dict[str, Path]:
    """Turntable (mp4 + gif) and the 3D file(s); an empty field warns instead of failing."""
    outputs: dict[str, Path] = {
        "config": run.path / "config.yaml",
        "metrics": run.metrics_path,
        "checkpoint": checkpoint_path(run),
    }
    size = max(cfg.resolution or 64, 64)
    radius, fov = sum(cfg.radius) / 2, sum(cfg.fov) / 2
    cams = turntable(cfg.turntable_frames, size, elevation_deg=20.0, radius=radius, fov_deg=fov)
    render_fn = field_renderer(fld)
    frames = torch.cat([render_fn(cams[i : i + 8])["rgb"] for i in range(0, len(cams), 8)])
    outputs.update(save_turntable(run.path, frames.clamp(0, 1)))
    try:
        outputs.update(fld.export(run.path))
        if cfg.export == "mesh" and isinstance(fld, GaussianField):
            from dreamlift.methods.outputs import export_gaussian_mesh

            outputs["mesh"] = export_gaussian_mesh(
                fld, run.path / "mesh.glb", resolution=cfg.mesh_resolution
            )
    except DataError as exc:
        warnings.append(f"no 3D file exported: {exc}")
    return outputs
