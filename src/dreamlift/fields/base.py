"""What every 3D representation offers to methods: render, optimise, checkpoint, export.

Besides rendering, a field names its parameters by *role* (:data:`ParamRole`), so a method can
act on one kind of parameter without knowing the representation: Perturb-and-Revise perturbs
geometry and leaves appearance alone (arXiv:2412.05279 §3, parameter perturbation), pivotal
tuning optimises a latent and then a generator (arXiv:2106.05744 §3). Structural updates
during training (3DGS's adaptive density control, a grid's coarse-to-fine upsampling) are a
replaceable :class:`Densification` policy, so a stage that starts from a trained field can
switch them off or bring its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal, get_args

import torch
from torch import Tensor, nn

from dreamlift.cameras import Cameras
from dreamlift.errors import DreamliftError

RenderOutput = dict[str, Tensor]
"""``rgb`` (B,H,W,3) composited over the background, ``opacity`` (B,H,W,1),
``depth`` (B,H,W,1) z-depth (expected depth divided by opacity, 0 where empty) and, when asked
for, ``normals`` (B,H,W,3) unit world-space normals (zero where empty)."""

ParamRole = Literal["geometry", "appearance", "background", "latent", "network"]
"""What a parameter group is for: *geometry* (where the density is: positions, scales,
rotations, opacities, a density grid), *appearance* (colour), *background* (a learned
environment), *latent* (a generator's input code) and *network* (a generator's weights)."""
ROLES: tuple[str, ...] = get_args(ParamRole)


@dataclass
class ParamGroup:
    """One optimiser group of a field: its name, role, tensors and configured learning rate."""

    name: str
    role: ParamRole
    params: list[nn.Parameter]
    lr: float


class Densification:
    """Structural updates of a field during training, called by the field's hooks with the
    *stage's* step (a stage that starts from a trained field starts its schedules at 0).

    The base class changes nothing; fields ship their default policy (3DGS's adaptive density
    control for Gaussians, coarse-to-fine upsampling for the voxel grid), and
    :meth:`Field.set_densification` replaces it or switches it off (``None``).
    """

    def after_backward(
        self, field: Field, step: int, out: RenderOutput, optimizer: torch.optim.Optimizer
    ) -> torch.optim.Optimizer:
        return optimizer

    def after_step(
        self, field: Field, step: int, optimizer: torch.optim.Optimizer
    ) -> torch.optim.Optimizer:
        return optimizer


class FieldError(DreamliftError):
    """A field operation asked for something the field does not have (unknown group, role)."""


class Field(nn.Module):
    """A differentiable 3D representation.

    A method owns the loop; the field owns everything specific to it: its parameters, their
    roles and learning rates, structural updates during training (a :class:`Densification`
    policy) and its export format. The scene lives inside the cube [-bound, bound]^3.
    """

    kind: ClassVar[str]
    config: object
    densification: Densification | None = None

    # ---- rendering and queries -----------------------------------------------------------

    def render(
        self, cameras: Cameras, background: Tensor | None = None, normals: bool = False
    ) -> RenderOutput:
        raise NotImplementedError

    def density(self, points: Tensor) -> Tensor:
        """Volume density (P,) at world points (P, 3), differentiable in the field's
        parameters: per world unit for a NeRF, the summed opacity-weighted Gaussians for
        3DGS (which have no unit of length of their own)."""
        raise NotImplementedError

    # ---- parameters and optimisation -----------------------------------------------------

    def param_groups(self) -> list[ParamGroup]:
        """Every optimisable parameter, grouped, with its role and configured learning rate."""
        raise NotImplementedError

    def optimizer_options(self) -> dict:
        """Keyword arguments of the field's Adam (eps, betas, ...)."""
        return {}

    def select_groups(
        self, groups: Iterable[str] | None = None, roles: Iterable[str] | None = None
    ) -> list[ParamGroup]:
        """The groups named in ``groups`` and/or having a role in ``roles`` (all when both are
        None), in the field's order. Unknown names or roles raise :class:`FieldError`."""
        available = self.param_groups()
        names = {g.name for g in available}
        wanted_names = set(groups) if groups is not None else None
        wanted_roles = set(roles) if roles is not None else None
        if wanted_names is not None and wanted_names - names:
            unknown = ", ".join(sorted(wanted_names - names))
            raise FieldError(
                f"{self.kind} field has no parameter group {unknown}",
                f"its groups are: {', '.join(g.name for g in available)}",
            )
        if wanted_roles is not None and wanted_roles - set(ROLES):
            unknown = ", ".join(sorted(wanted_roles - set(ROLES)))
            raise FieldError(f"unknown parameter role {unknown}", f"roles: {', '.join(ROLES)}")
        chosen = [
            g
            for g in available
            if (wanted_names is None or g.name in wanted_names)
            and (wanted_roles is None or g.role in wanted_roles)
        ]
        if not chosen:
            raise FieldError(f"no parameter group of the {self.kind} field matches the selection")
        return chosen

    def make_optimizer(
        self, groups: Iterable[str] | None = None, roles: Iterable[str] | None = None
    ) -> torch.optim.Optimizer:
        """Adam over the chosen groups (all by default) with their configured learning rates.

        Parameters outside the selection are never stepped, so they stay bit-equal (pivotal
        tuning: first the latent, then the generator)."""
        chosen = [
            {"params": g.params, "lr": g.lr, "name": g.name}
            for g in self.select_groups(groups, roles)
        ]
        return torch.optim.Adam(chosen, **self.optimizer_options())

    def rebuild_optimizer(self, old: torch.optim.Optimizer) -> torch.optim.Optimizer:
        """A fresh optimiser over the same groups as ``old`` (after parameters were replaced)."""
        return self.make_optimizer(groups=[g["name"] for g in old.param_groups])

    def set_densification(self, policy: Densification | None) -> None:
        """Replace the structural-update policy; ``None`` switches structural updates off."""
        self.densification = policy

    def after_backward(
        self, step: int, out: RenderOutput, optimizer: torch.optim.Optimizer
    ) -> torch.optim.Optimizer:
        """Called between ``loss.backward()`` and ``optimizer.step()`` (gradient statistics)."""
        if self.densification is None:
            return optimizer
        return self.densification.after_backward(self, step, out, optimizer)

    def after_step(self, step: int, optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        """Structural updates after ``optimizer.step()``; returns the optimiser to use next
        (the same one, or a new one when parameters changed shape, with moments carried over)."""
        if self.densification is None:
            return optimizer
        return self.densification.after_step(self, step, optimizer)

    # ---- fresh starts and perturbation ---------------------------------------------------

    def fresh_like(self, generator: torch.Generator | None = None) -> Field:
        """A new field of the same kind and configuration with the default initialisation,
        shaped like this one (same number of Gaussians, same grid resolution), on the same
        device: the θ_init that Perturb-and-Revise interpolates towards."""
        raise NotImplementedError

    @torch.no_grad()
    def interpolate_toward(self, other: Field, weight: float, roles: Iterable[str]) -> None:
        """θ ← (1 − weight) θ + weight θ_other for every group with a role in ``roles`` (the
        perturbation of arXiv:2412.05279 §3); other groups stay bit-equal. Shapes must match."""
        theirs = {g.name: g for g in other.param_groups()}
        for group in self.select_groups(roles=roles):
            for mine, target in zip(group.params, theirs[group.name].params, strict=True):
                if mine.shape != target.shape:
                    raise FieldError(
                        f"cannot interpolate {group.name}: shapes {tuple(mine.shape)} and "
                        f"{tuple(target.shape)} differ",
                        "build the target with fresh_like()",
                    )
                mine.lerp_(target.to(mine), weight)

    # ---- checkpoints and export ----------------------------------------------------------

    def state_tensors(self) -> dict[str, Tensor]:
        """Everything needed to rebuild the field exactly (shapes may differ from a fresh one)."""
        return {k: v.detach().clone() for k, v in self.state_dict().items()}

    def load_state_tensors(self, tensors: dict[str, Tensor]) -> None:
        """Inverse of :meth:`state_tensors`; resizes parameters where shapes changed."""
        self.load_state_dict(tensors)

    def export(self, out_dir: Path) -> dict[str, Path]:
        """Write the field's 3D file(s) into ``out_dir``; returns {name: path}."""
        raise NotImplementedError
