"""Initial 3D Gaussians: centres in a ball or on a sphere, isotropic scales from neighbours."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from dreamlift.fields.knn import knn_sq_distances
from dreamlift.fields.sh import SH_C0, num_sh_rest
from dreamlift.io.ply import GaussianPly

if TYPE_CHECKING:
    from dreamlift.fields.gaussians import GaussiansConfig


def knn_scale(points: Tensor, k: int = 3) -> Tensor:
    """sqrt of the mean squared distance to the k nearest neighbours (3DGS's initial scale)."""
    n = points.shape[0]
    if n <= 1:
        return torch.full((n,), 0.01)
    d2 = knn_sq_distances(points, min(k, n - 1))
    return d2.mean(-1).clamp(min=1e-7).sqrt()


def initial_gaussians(config: GaussiansConfig, generator: torch.Generator) -> GaussianPly:
    """``config.num_init`` Gaussians per ``config.init_mode``, with random colours (or
    ``config.init_grey``), identity rotations and the low initial opacity of 3DGS."""
    n = config.num_init
    dirs = torch.nn.functional.normalize(torch.randn(n, 3, generator=generator), dim=-1)
    if config.init_mode == "random":
        radius = config.init_radius * torch.rand(n, 1, generator=generator) ** (1.0 / 3.0)
    else:
        radius = torch.full((n, 1), config.init_radius)
    means = dirs * radius
    rgb = torch.rand(n, 3, generator=generator)
    if config.init_grey is not None:
        rgb = torch.full_like(rgb, config.init_grey)
    quats = torch.zeros(n, 4)
    quats[:, 0] = 1.0
    p = config.init_opacity
    return GaussianPly(
        means=means,
        features_dc=((rgb - 0.5) / SH_C0)[:, None, :],
        features_rest=torch.zeros(n, num_sh_rest(config.sh_degree), 3),
        opacity_logits=torch.full((n,), math.log(p / (1.0 - p))),
        log_scales=torch.log(knn_scale(means))[:, None].repeat(1, 3),
        quats=quats,
    )
