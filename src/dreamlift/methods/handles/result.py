"""What an edit returns, shared by Diffusion Handles and its baselines.

Point clouds are written in the viewer-friendly camera frame (x right, y up, z towards the
viewer; the camera at the origin looking down −z), so a .ply viewer shows them upright;
the lifting itself works in OpenCV camera coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from dreamlift.methods.handles.depth_edit import DepthEdit
from dreamlift.methods.handles.inputs import EditInputs
from dreamlift.methods.handles.lift import lift

OPENCV_TO_VIEWER = torch.tensor([1.0, -1.0, -1.0])


@dataclass
class HandlesResult:
    """An edited image with its geometry. Images are (H, W, 3) in [0, 1] on the CPU."""

    method: str
    image: Tensor
    depth: Tensor
    """(H, W) edited z-depth (0 = no surface)."""
    disparity: Tensor
    """(H, W) edited disparity, the prior's depth input."""
    mask: Tensor
    """(H, W) bool: the transformed object (cleaned)."""
    points_before: Tensor
    """(N, 6) xyz + rgb of every input pixel with depth (viewer frame, module doc)."""
    points_after: Tensor
    """(M, 6) the same with the object's points moved (background pixels kept as seen)."""
    geometry: DepthEdit
    timings: dict[str, float] = field(default_factory=dict)
    frames: Tensor | None = None
    """(K, H, W, 3) edits from the identity to the full transform, when asked for."""
    reconstruction: Tensor | None = None
    """The input rebuilt by the recording pass (how well the inversion worked)."""
    energies: list[dict[str, float]] = field(default_factory=list)
    """Per guided step and inner step: the energy and its named terms."""


def point_clouds(inputs: EditInputs, geometry: DepthEdit) -> tuple[Tensor, Tensor]:
    """(before, after) xyz + rgb clouds of the input and of the 3D edit."""
    valid = inputs.depth > 0
    xyz = lift(inputs.depth, inputs.intrinsics)
    before = torch.cat([xyz[valid], inputs.image[valid]], dim=-1)
    still = valid & ~inputs.mask
    rows, cols = geometry.pixels[:, 0], geometry.pixels[:, 1]
    in_front = geometry.moved_points[:, 2] > 0
    moved = torch.cat([geometry.moved_points, inputs.image[rows, cols]], dim=-1)[in_front]
    after = torch.cat([torch.cat([xyz[still], inputs.image[still]], dim=-1), moved])
    flip = torch.cat([OPENCV_TO_VIEWER, torch.ones(3)])
    return before * flip, after * flip
