"""The perturbation of Perturb-and-Revise: the source's geometry interpolated toward a fresh
initialisation, θ ← (1 − η) θ_src + η θ_0 (arXiv:2412.05279 §3.1), appearance untouched.

θ_0 is the field a ``generate`` run starts from: for NeRF a fresh density grid and MLP plus
generate's central density blob (threestudio's geometry carries the same blob as a density
bias, so the official θ_0 renders as that blob too); for 3D Gaussians a fresh set of the same
size matched by index (positions, scales, rotations, opacities toward the fresh ones), which
pulls each Gaussian part of the way toward a random point of the initial sphere.
"""

from __future__ import annotations

import torch

from dreamlift.fields.base import Field
from dreamlift.fields.nerf import NerfField

GEOMETRY = ("geometry",)


def initial_geometry(
    fld: Field, generator: torch.Generator, blob_density: float = 20.0, blob_radius: float = 0.5
) -> Field:
    """θ_0: a fresh field shaped like ``fld``, as generate initialises it."""
    fresh = fld.fresh_like(generator)
    if isinstance(fresh, NerfField):
        r = blob_radius
        fresh.set_from_functions(
            lambda p: blob_density * torch.exp(-p.square().sum(-1) / (2 * r * r)) + 1e-3,
            lambda p: torch.full((p.shape[0], 3), 0.5),
        )
    return fresh


@torch.no_grad()
def perturb_geometry(fld: Field, eta: float, generator: torch.Generator) -> None:
    """Interpolate every geometry tensor of ``fld`` a fraction ``eta`` toward θ_0."""
    if eta <= 0:
        return
    fld.interpolate_toward(initial_geometry(fld, generator), eta, roles=GEOMETRY)
