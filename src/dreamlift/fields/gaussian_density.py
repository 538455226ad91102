"""The density and colour of a Gaussian field at arbitrary points.

A Gaussian field has no surface of its own. Its density
``d(x) = Σ_i o_i exp(-½ ‖S_i⁻¹ R_iᵀ (x - μ_i)‖²)`` (3DGS, arXiv:2308.04079 Eq. 4, times each
Gaussian's opacity) is what a mesh is extracted from and what methods that need a density at
points (blending, density losses) read through :meth:`GaussianField.density`. Colour at a point
is the density-weighted mean of the Gaussians' view-averaged (degree-0 SH) colours.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from dreamlift.fields.rasterize import quat_to_rotmat
from dreamlift.fields.sh import SH_C0

if TYPE_CHECKING:
    from dreamlift.fields.gaussians import GaussianField

REACH = 3.0  # a Gaussian is ignored beyond 3 of its largest standard deviations


class GaussianDensity:
    """Density and colour of a Gaussian field at points, only summing the nearby Gaussians."""

    def __init__(self, fld: GaussianField, differentiable: bool = False) -> None:
        """``differentiable`` keeps the field's tensors (on their device, in the autograd
        graph); otherwise detached float32 copies on the CPU serve mesh extraction."""

        def take(t: Tensor) -> Tensor:
            return t if differentiable else t.detach().float().cpu()

        self.means = take(fld.means)
        self.inv_scales = torch.exp(-take(fld.log_scales))
        self.rot = quat_to_rotmat(take(fld.quats))
        self.opacity = take(fld.opacities)
        self.rgb = (take(fld.features_dc)[:, 0] * SH_C0 + 0.5).clamp(0, 1)
        with torch.no_grad():
            self.reach = REACH * torch.exp(take(fld.log_scales)).amax(-1).detach()

    def _weights(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """(P, K) contributions of the K Gaussians near the chunk, and their indices."""
        lo, hi = points.detach().amin(0), points.detach().amax(0)
        means = self.means.detach()
        gap = (means - means.clamp(lo, hi)).norm(dim=-1)
        near = torch.nonzero(gap <= self.reach).squeeze(-1)
        if near.numel() == 0:
            return points.new_zeros(points.shape[0], 0), near
        offset = points[:, None, :] - self.means[near][None]  # (P, K, 3)
        local = torch.einsum("kji,pkj->pki", self.rot[near], offset) * self.inv_scales[near]
        return self.opacity[near] * torch.exp(-0.5 * local.square().sum(-1)), near

    def density(self, points: Tensor) -> Tensor:
        weights, _ = self._weights(points)
        return weights.sum(-1)

    def color(self, points: Tensor) -> Tensor:
        weights, near = self._weights(points)
        if near.numel() == 0:
            return torch.full((points.shape[0], 3), 0.5)
        total = weights.sum(-1, keepdim=True)
        mixed = weights @ self.rgb[near] / total.clamp(min=1e-12)
        return torch.where(total > 1e-12, mixed, torch.full_like(mixed, 0.5))
