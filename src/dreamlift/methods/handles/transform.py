"""The user's 3D handle: a similarity transform of one object, in a viewer-friendly frame.

Diffusion Handles moves the object's lifted points by a rigid transform: a rotation about
their centroid (axis-angle, Rodrigues' formula) followed by a translation (arXiv:2312.02190
§5.1); a uniform scale about the centroid is allowed as well.

**Which frame the numbers are in.** Depth is lifted into OpenCV camera coordinates (x right,
y down, z forward; :mod:`dreamlift.cameras`), but a user thinks "move right, turn about the
up axis". So a transform is given in a *handle frame* and ``frame`` says how it sits in the
camera: it lists the handle frame's x, y, z axes in OpenCV camera coordinates. The
default is the camera's own frame with y up and z towards the viewer (OpenGL's camera
axes): ``--translate 0.2 0 0`` moves right, ``0 0 0.2`` towards the camera, ``--rotate y 45``
turns the object 45° counter-clockwise seen from above, about the camera's up axis. World
scenes (:func:`~dreamlift.methods.handles.scene.scene_case`) use a gravity-aligned frame
instead: y is the world's vertical, x the camera's (horizontal) right.

**Signs against the paper code.** Its lift flips x and y and keeps z = +depth: x left, y up,
the camera looking along +z. That frame is ours turned 180° about y, so a transform copied
from it needs translations in x and z, and rotations about x and z, negated; translations
in y and rotations about y mean the same in both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from dreamlift.errors import DataError

Vec3 = tuple[float, float, float]
Mat3 = tuple[Vec3, Vec3, Vec3]
CAMERA_UP_FRAME: Mat3 = ((1.0, 0.0, 0.0), (0.0, -1.0, 0.0), (0.0, 0.0, -1.0))
"""Handle axes x right, y up, z towards the viewer, in OpenCV camera coordinates."""
NAMED_AXES: dict[str, Vec3] = {"x": (1.0, 0.0, 0.0), "y": (0.0, 1.0, 0.0), "z": (0.0, 0.0, 1.0)}


def parse_axis(text: str) -> Vec3:
    """``x``, ``y``, ``z`` (optionally signed, ``-y``) or three numbers ``"0,1,0"``."""
    s = text.strip().lower()
    sign = -1.0 if s.startswith("-") else 1.0
    if s.lstrip("+-") in NAMED_AXES:
        return tuple(sign * c for c in NAMED_AXES[s.lstrip("+-")])  # type: ignore[return-value]
    try:
        values = tuple(float(v) for v in s.replace(" ", "").split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not any(values):
        raise DataError(
            f"cannot read rotation axis {text!r}",
            "give x, y or z (e.g. --rotate y 45) or three numbers like 0,1,0",
        )
    return values  # type: ignore[return-value]


def rodrigues(axis: Tensor, angle_deg: float) -> Tensor:
    """3×3 rotation by ``angle_deg`` about ``axis`` (right-hand rule), Rodrigues' formula."""
    k = axis / axis.norm()
    theta = math.radians(angle_deg)
    kx = torch.zeros(3, 3, dtype=axis.dtype)
    kx[0, 1], kx[0, 2], kx[1, 2] = -k[2], k[1], -k[0]
    kx = kx - kx.T
    eye = torch.eye(3, dtype=axis.dtype)
    return eye + math.sin(theta) * kx + (1 - math.cos(theta)) * (kx @ kx)


@dataclass(frozen=True)
class Transform3D:
    """p ↦ c + scale · R (p − c) + translate, about the object's centroid c (handle frame)."""

    translate: Vec3 = (0.0, 0.0, 0.0)
    axis: Vec3 = (0.0, 1.0, 0.0)
    angle_deg: float = 0.0
    scale: float = 1.0
    frame: Mat3 = CAMERA_UP_FRAME
    """The handle frame's x, y and z axes, each in OpenCV camera coordinates (module doc)."""

    def __post_init__(self) -> None:
        if not self.scale > 0 or not math.isfinite(self.scale):
            raise DataError(f"scale must be a positive number, got {self.scale}")
        values = (*self.translate, *self.axis, self.angle_deg)
        if not all(math.isfinite(v) for v in values):
            raise DataError("the transform has a non-finite number (translation, axis or angle)")
        if not any(self.axis):
            raise DataError("the rotation axis is the zero vector", "e.g. --rotate y 45")

    @property
    def is_identity(self) -> bool:
        return self.scale == 1.0 and self.angle_deg % 360 == 0 and not any(self.translate)

    def frame_matrix(self, dtype: torch.dtype = torch.float64) -> Tensor:
        """(3, 3): handle-frame vectors → OpenCV camera vectors (orthonormal columns)."""
        return torch.tensor(self.frame, dtype=dtype).T

    def in_camera(self, dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor, float]:
        """(R, t, scale) acting on OpenCV camera coordinates: R = F R_h Fᵀ, t = F t_h."""
        f = self.frame_matrix(dtype)
        rot = rodrigues(torch.tensor(self.axis, dtype=dtype), self.angle_deg)
        return f @ rot @ f.T, f @ torch.tensor(self.translate, dtype=dtype), self.scale

    def apply(self, points: Tensor, center: Tensor) -> Tensor:
        """Transform (N, 3) OpenCV camera points about ``center`` (3,)."""
        rot, t, s = self.in_camera(torch.float64)
        p = points.double() - center.double()
        out = center.double() + s * p @ rot.T + t
        return out.to(points.dtype)

    def interpolate(self, alpha: float) -> Transform3D:
        """The transform a fraction ``alpha`` of the way from the identity (alpha = 1: self)."""
        return replace(
            self,
            translate=tuple(alpha * v for v in self.translate),  # type: ignore[arg-type]
            angle_deg=alpha * self.angle_deg,
            scale=self.scale**alpha,
        )

    def describe(self) -> str:
        parts = []
        if any(self.translate):
            parts.append("translate " + " ".join(f"{v:g}" for v in self.translate))
        if self.angle_deg:
            parts.append(
                "rotate " + ",".join(f"{v:g}" for v in self.axis) + f" {self.angle_deg:g}°"
            )
        if self.scale != 1.0:
            parts.append(f"scale {self.scale:g}")
        return ", ".join(parts) or "identity"


def transform_from_options(
    translate: Vec3 = (0.0, 0.0, 0.0),
    rotate: tuple[str, float] | None = None,
    scale: float = 1.0,
    frame: Mat3 = CAMERA_UP_FRAME,
) -> Transform3D:
    """The CLI's ``--translate X Y Z --rotate AXIS DEG --scale S`` as a transform."""
    axis, angle = ((0.0, 1.0, 0.0), 0.0) if rotate is None else (parse_axis(rotate[0]), rotate[1])
    return Transform3D(
        translate=tuple(float(v) for v in translate),  # type: ignore[arg-type]
        axis=axis,
        angle_deg=float(angle),
        scale=float(scale),
        frame=frame,
    )
