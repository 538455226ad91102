"""3DGS's adaptive density control as a replaceable :class:`~dreamlift.fields.base.Densification`.

Kerbl et al. (arXiv:2308.04079 §5.2): accumulate each Gaussian's view-space positional
gradient, clone small Gaussians and split large ones whose mean gradient passes a threshold,
prune transparent or oversized ones, and periodically reset opacities. The statistics live in
the field's buffers (``grad_accum``, ``grad_count``, ``max_radii``) so they are checkpointed
with it; the policy only decides when and how to use them. A stage that edits a trained field
passes ``None`` to :meth:`~dreamlift.fields.base.Field.set_densification` instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from dreamlift.fields.base import Densification, RenderOutput

if TYPE_CHECKING:
    from dreamlift.fields.gaussians import GaussianField


class AdaptiveDensityControl(Densification):
    """Densify and prune on the schedule of the field's :class:`GaussiansConfig`
    (``densify_from`` / ``densify_every`` / ``densify_until``, ``opacity_reset_every``)."""

    def after_backward(  # type: ignore[override]
        self,
        field: GaussianField,
        step: int,
        out: RenderOutput,
        optimizer: torch.optim.Optimizer,
    ) -> torch.optim.Optimizer:
        """Accumulate screen-space gradient norms of the Gaussians each view saw."""
        means2d = out.get("means2d")
        if step >= field.config.densify_until or means2d is None or means2d.grad is None:
            return optimizer
        if means2d.shape[1] != field.num_gaussians:
            return optimizer
        with torch.no_grad():
            b, h, w = out["rgb"].shape[:3]
            scale = torch.tensor([0.5 * w * b, 0.5 * h * b], device=means2d.device)
            norms = (means2d.grad * scale).norm(dim=-1)  # (B, N)
            visible = out["radii"] > 0
            field.grad_accum += (norms * visible).sum(0)
            field.grad_count += visible.sum(0)
            frac = torch.where(visible, out["radii"] / max(w, h), 0.0).amax(0)
            field.max_radii.copy_(torch.maximum(field.max_radii, frac))
        return optimizer

    def after_step(  # type: ignore[override]
        self, field: GaussianField, step: int, optimizer: torch.optim.Optimizer
    ) -> torch.optim.Optimizer:
        c = field.config
        if step >= c.densify_until:
            return optimizer
        if step > c.densify_from and c.densify_every > 0 and step % c.densify_every == 0:
            optimizer = field.densify(step, optimizer)
        if c.opacity_reset_every > 0 and step > 0 and step % c.opacity_reset_every == 0:
            field.reset_opacity(optimizer)
        return optimizer
