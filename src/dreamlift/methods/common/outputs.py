"""What a training run writes besides its summary: the run contract's files, a turntable and
the field's 3D file(s), and a mesh from 3D Gaussians on request.

A Gaussian field has no surface of its own: its density
(:mod:`dreamlift.fields.gaussian_density`) is sampled on a grid and meshed by marching cubes
at ``threshold``; a vertex takes the density-weighted mean of the Gaussians' colours
(degree-0 SH, i.e. their view-averaged colour).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from dreamlift.cameras import Cameras
from dreamlift.errors import DataError
from dreamlift.fields.base import Field
from dreamlift.fields.gaussian_density import GaussianDensity
from dreamlift.fields.gaussians import GaussianField
from dreamlift.io.media import save_turntable
from dreamlift.io.mesh import extract_mesh, write_mesh
from dreamlift.io.run import RunDir
from dreamlift.loop import checkpoint_path
from dreamlift.world.assets import Asset

TURNTABLE_CHUNK = 8
"""Turntable frames rendered at once (memory, not results: the frames are the same)."""


def run_files(run: RunDir) -> dict[str, Path]:
    """The run contract's files of a training run: config, metrics and checkpoint (a staged
    run's: the last stage's)."""
    from dreamlift.stages import run_checkpoints

    staged = run_checkpoints(run.path)
    return {
        "config": run.path / "config.yaml",
        "metrics": run.metrics_path,
        "checkpoint": staged[-1] if staged else checkpoint_path(run),
    }


def field_renderer(fld: Field) -> Callable[[Cameras], dict[str, Tensor]]:
    """The field as a render function: no grad, white background, ``rgb``, ``opacity`` and
    ``depth`` on the CPU (the ground-truth metrics' form)."""
    device = next(fld.parameters()).device

    @torch.no_grad()
    def render_fn(cameras: Cameras) -> dict[str, Tensor]:
        out = fld.render(cameras.to(device), torch.ones(3, device=device))
        return {k: out[k].cpu() for k in ("rgb", "opacity", "depth") if k in out}

    return render_fn


def render_in_chunks(render_fn: Callable[[Cameras], dict[str, Tensor]], cameras: Cameras) -> Tensor:
    """The ``rgb`` of ``cameras`` rendered :data:`TURNTABLE_CHUNK` at a time, in [0, 1]."""
    chunks = range(0, len(cameras), TURNTABLE_CHUNK)
    return torch.cat([render_fn(cameras[i : i + TURNTABLE_CHUNK])["rgb"] for i in chunks]).clamp(
        0, 1
    )


def truth_renderer(asset: Asset) -> Callable[[Cameras], dict[str, Tensor]]:
    """The world's render of ``asset`` as a render function (one ray a pixel: at turntable
    sizes its edges are as sharp as the field's)."""
    from dreamlift.world.render import RenderSettings, render

    def render_fn(cameras: Cameras) -> dict[str, Tensor]:
        return render(asset, cameras.to("cpu"), RenderSettings(supersample=1))

    return render_fn


def write_turntable_and_3d(
    run: RunDir,
    fld: Field,
    cameras: Cameras,
    warnings: list[str],
    *,
    mesh: int | None = None,
    truth: Asset | None = None,
) -> dict[str, Path]:
    """A turntable (mp4 + gif) seen by ``cameras`` and the field's 3D file(s); with ``mesh``
    (grid points per side) a Gaussian field also gets ``mesh.glb``; with ``truth`` (the
    world's asset of the caption) ``turntable_compare`` shows the result (left) beside the
    true asset (right) from the same cameras. A field too empty to export adds a warning
    instead of failing the run, whose other results are still worth keeping."""
    fld.eval()
    frames = render_in_chunks(field_renderer(fld), cameras)
    outputs = save_turntable(run.path, frames)
    if truth is not None:
        both = torch.cat([frames, render_in_chunks(truth_renderer(truth), cameras)], dim=2)
        paths = save_turntable(run.path, both, stem="turntable_compare")
        outputs.update({k.replace("turntable", "turntable_compare"): v for k, v in paths.items()})
    try:
        outputs.update(fld.export(run.path))
        if mesh is not None and isinstance(fld, GaussianField):
            outputs["mesh"] = export_gaussian_mesh(fld, run.path / "mesh.glb", resolution=mesh)
    except DataError as exc:
        warnings.append(f"no 3D file exported: {exc}")
    return outputs


def export_gaussian_mesh(
    fld: GaussianField,
    path: Path,
    resolution: int = 96,
    threshold: float = 0.35,
) -> Path:
    """Marching-cubes mesh of the Gaussians' density at ``threshold`` as .glb (+y up) / .obj.

    Raises :class:`~dreamlift.errors.DataError` when no density reaches the threshold.
    """
    density = GaussianDensity(fld)
    # Chunks of one grid slab each (x is the slowest axis), so each sums few Gaussians.
    verts, faces, colors = extract_mesh(
        density.density,
        density.color,
        fld.config.bound,
        resolution,
        threshold,
        chunk=resolution * resolution,
    )
    return write_mesh(path, verts, faces, colors, y_up=Path(path).suffix.lower() == ".glb")
