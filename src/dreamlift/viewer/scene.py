"""What the viewer draws, as plain arrays: a field or a world asset turned into the
primitives viser renders in the browser (Gaussian splats, vertex-coloured meshes).

Kept free of viser so the conversions are tested without a server: Gaussians go over as
they are (centres, 3×3 covariances, the view-independent colour, opacity); a NeRF and a
world asset go over as the marching-cubes mesh of their density, the same surface
``mesh.glb`` holds. World space is z-up, as viser's scene is by default.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dreamlift.fields.base import Field
from dreamlift.fields.gaussians import GaussianField
from dreamlift.fields.sh import SH_C0
from dreamlift.fields.splat_projection import covariance_3d
from dreamlift.io.mesh import extract_mesh
from dreamlift.world.assets import Asset


@dataclass(frozen=True)
class Splats:
    centers: np.ndarray  # (N, 3) float32
    covariances: np.ndarray  # (N, 3, 3) float32
    rgbs: np.ndarray  # (N, 3) float32 in [0, 1]
    opacities: np.ndarray  # (N, 1) float32 in [0, 1]


@dataclass(frozen=True)
class ColouredMesh:
    vertices: np.ndarray  # (V, 3) float32
    faces: np.ndarray  # (F, 3) int
    colours: np.ndarray  # (V, 3) uint8


@torch.no_grad()
def gaussian_splats(fld: GaussianField) -> Splats:
    """The field's Gaussians, with the degree-0 (view-independent) part of their colour."""
    rgb = (fld.features_dc[:, 0] * SH_C0 + 0.5).clamp(0, 1)
    cov = covariance_3d(fld.quats, fld.log_scales)
    return Splats(
        centers=fld.means.detach().float().cpu().numpy(),
        covariances=cov.float().cpu().numpy(),
        rgbs=rgb.float().cpu().numpy(),
        opacities=fld.opacities.detach().float().cpu().numpy()[:, None],
    )


def _mesh(verts: np.ndarray, faces: np.ndarray, colours: np.ndarray) -> ColouredMesh:
    rgb = (np.clip(colours, 0.0, 1.0) * 255).round().astype(np.uint8)
    return ColouredMesh(verts.astype(np.float32), faces.astype(np.int64), rgb)


@torch.no_grad()
def field_mesh(fld: Field, resolution: int = 64) -> ColouredMesh | None:
    """The marching-cubes surface of a NeRF's density at its export threshold; None when
    nothing reaches it yet (an early live view)."""
    from dreamlift.errors import DataError

    dev = fld.density_grid.device  # type: ignore[attr-defined]
    try:
        verts, faces, colours = extract_mesh(
            lambda p: fld.sigma(p.to(dev)),  # type: ignore[attr-defined]
            lambda p: fld.rgb(p.to(dev)),  # type: ignore[attr-defined]
            fld.config.bound,  # type: ignore[attr-defined]
            resolution,
            fld.config.mesh_threshold,  # type: ignore[attr-defined]
        )
    except DataError:
        return None
    return _mesh(verts, faces, colours)


def asset_mesh(asset: Asset, resolution: int = 96) -> ColouredMesh:
    """The world asset's surface (its SDF's zero level), each vertex in its part's colour."""
    colours = asset.colours()
    center, radius = asset.bounding_sphere()
    bound = float(center.abs().max()) + radius + 0.05
    verts, faces, rgb = extract_mesh(
        lambda p: 1.0 - asset.sdf(p)[0],  # the level 1 of this "density" is the surface
        lambda p: colours[asset.sdf(p)[1]],
        bound,
        resolution,
        1.0,
    )
    return _mesh(verts, faces, rgb)
