"""What every 3D representation offers to methods: render, optimise, checkpoint, export."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor, nn

from dreamlift.cameras import Cameras

RenderOutput = dict[str, Tensor]
"""``rgb`` (B,H,W,3) composited over the background, ``opacity`` (B,H,W,1),
``depth`` (B,H,W,1) z-depth (expected depth divided by opacity, 0 where empty) and, when asked
for, ``normals`` (B,H,W,3) unit world-space normals (zero where empty)."""


class Field(nn.Module):
    """A differentiable 3D representation.

    A method owns the loop; the field owns everything specific to it: its parameters and
    learning rates, structural updates during training (densification, grid upsampling) and
    its export format. The scene lives inside the cube [-bound, bound]^3.
    """

    kind: ClassVar[str]

    def render(
        self, cameras: Cameras, background: Tensor | None = None, normals: bool = False
    ) -> RenderOutput:
        raise NotImplementedError

    def make_optimizer(self) -> torch.optim.Optimizer:
        """An optimiser over this field's parameters with its configured learning rates."""
        raise NotImplementedError

    def after_backward(
        self, step: int, out: RenderOutput, optimizer: torch.optim.Optimizer
    ) -> torch.optim.Optimizer:
        """Called between ``loss.backward()`` and ``optimizer.step()`` (gradient statistics)."""
        return optimizer

    def after_step(self, step: int, optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        """Structural updates after ``optimizer.step()``; returns the optimiser to use next
        (the same one, or a new one when parameters changed shape, with moments carried over)."""
        return optimizer

    def state_tensors(self) -> dict[str, Tensor]:
        """Everything needed to rebuild the field exactly (shapes may differ from a fresh one)."""
        return {k: v.detach().clone() for k, v in self.state_dict().items()}

    def load_state_tensors(self, tensors: dict[str, Tensor]) -> None:
        """Inverse of :meth:`state_tensors`; resizes parameters where shapes changed."""
        self.load_state_dict(tensors)

    def export(self, out_dir: Path) -> dict[str, Path]:
        """Write the field's 3D file(s) into ``out_dir``; returns {name: path}."""
        raise NotImplementedError
