"""Output helpers shared by methods: a mesh from 3D Gaussians.

The field's density (:mod:`dreamlift.fields.gaussian_density`) is sampled on a grid and meshed
by marching cubes at ``threshold``; a vertex takes the density-weighted mean of the Gaussians'
colours (degree-0 SH, i.e. their view-averaged colour).
"""

from __future__ import annotations

from pathlib import Path

from dreamlift.fields.gaussian_density import GaussianDensity
from dreamlift.fields.gaussians import GaussianField
from dreamlift.io.mesh import extract_mesh, write_mesh


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
