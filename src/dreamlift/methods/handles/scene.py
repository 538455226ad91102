"""World scenes with a known answer: the input of an edit and the true edited render.

:func:`scene_case` renders a ground scene from a world caption with a camera like the toy
prior's training views, the chosen object's instance mask and z-depth, and the ground truth
of the edit: the same scene re-rendered with that object moved in world space by exactly
the transform :func:`~dreamlift.methods.handles.depth_edit.edit_depth` applies to its lifted
points.

Frames. The handle frame of a scene is gravity-aligned: x is the camera's right (horizontal
for these cameras), y the world's vertical (+z of the z-up world), z = x × y, horizontal and
towards the camera. The pivot is what the edit uses, the centroid of the object's *visible*
lifted points, mapped to world space. A world part can only turn about its vertical axis,
so scene rotations must be about handle y; rotation and scale about that pivot move the
part's centre, which is how the true render expresses them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from dreamlift.cameras import DEFAULT_ORBIT, Cameras, orbit_cameras, view_word
from dreamlift.errors import DataError
from dreamlift.methods.handles.depth_edit import object_points
from dreamlift.methods.handles.lift import Intrinsics
from dreamlift.methods.handles.transform import Mat3, Transform3D
from dreamlift.world import asset_from_caption, caption
from dreamlift.world.assets import Asset
from dreamlift.world.datasets import SCENE_LOOK_HEIGHT
from dreamlift.world.render import RenderSettings, render


@dataclass
class SceneCase:
    """An edit of a world scene and its ground truth; images (H, W, 3) in [0, 1]."""

    prompt: str
    """The caption with the camera's view word, as the toy priors were trained."""
    object_index: int
    image: Tensor
    mask: Tensor
    """(H, W) bool: the object's instance mask."""
    depth: Tensor
    """(H, W) z-depth, 0 where no surface (sky)."""
    instance: Tensor
    cameras: Cameras
    intrinsics: Intrinsics
    transform: Transform3D
    """The edit, in the scene's gravity-aligned handle frame."""
    asset: Asset
    target_asset: Asset
    target_image: Tensor
    target_mask: Tensor
    target_depth: Tensor
    target_instance: Tensor


def scene_camera(resolution: int, azimuth: float = 30.0, elevation: float = 20.0) -> Cameras:
    """An orbit camera looking at a ground scene, as the training data frames scenes."""
    cams = orbit_cameras(
        torch.tensor([azimuth]),
        torch.tensor([elevation]),
        DEFAULT_ORBIT.radius,
        DEFAULT_ORBIT.fov_deg,
        resolution,
    )
    cams.c2w[:, 2, 3] += SCENE_LOOK_HEIGHT
    return cams


def gravity_frame(cameras: Cameras) -> Mat3:
    """Handle axes (camera right, world up, right × up) in OpenCV camera coordinates."""
    c2w = cameras.c2w[0, :3, :3].double()
    right = c2w[:, 0]
    up = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    right = right - (right @ up) * up
    right = right / right.norm()
    back = torch.linalg.cross(right, up)
    axes = torch.stack([right, up, back]) @ c2w  # world vectors → camera coordinates
    return tuple(tuple(float(v) for v in a) for a in axes)  # type: ignore[return-value]


def _render(asset: Asset, cams: Cameras, supersample: int) -> dict[str, Tensor]:
    """Colour anti-aliased as in training; depth and ids exact at the pixel centres."""
    rgb = render(asset, cams, RenderSettings(supersample=supersample))["rgb"][0]
    geo = render(asset, cams, RenderSettings(supersample=1))
    return {"rgb": rgb, "depth": geo["depth"][0, ..., 0], "instance": geo["instance"][0]}


def moved_asset(
    asset: Asset, index: int, transform: Transform3D, pivot_cam: Tensor, cameras: Cameras
) -> Asset:
    """The asset with part ``index`` moved by the camera-space edit about ``pivot_cam``."""
    c2w = cameras.c2w[0].double()
    rot_c2w, origin = c2w[:3, :3], c2w[:3, 3]
    rot_cam, t_cam, s = transform.in_camera(torch.float64)
    rot_w = rot_c2w @ rot_cam @ rot_c2w.T
    if abs(float(rot_w[2, 2]) - 1.0) > 1e-6:
        raise DataError(
            "world scene edits can only rotate about the vertical axis",
            "use --rotate y DEG with --scene",
        )
    pivot = rot_c2w @ pivot_cam.double() + origin
    part = asset.parts[index]
    centre = pivot + s * rot_w @ (torch.tensor(part.center, dtype=torch.float64) - pivot)
    centre = centre + rot_c2w @ t_cam
    yaw = math.degrees(math.atan2(float(rot_w[1, 0]), float(rot_w[0, 0])))
    moved = replace(
        part,
        center=tuple(float(v) for v in centre),
        scale=part.scale * s,
        yaw_deg=part.yaw_deg + yaw,
    )
    return asset.with_part(index, moved)


def scene_case(
    scene: str,
    object_index: int,
    transform: Transform3D,
    resolution: int = 64,
    azimuth: float = 30.0,
    elevation: float = 20.0,
    supersample: int = 2,
) -> SceneCase:
    """Render the edit's input and ground truth for a world caption (see the module doc).

    ``transform``'s frame is replaced by the scene's gravity-aligned frame. Raises
    :class:`DataError` for an unknown object index, an object the camera does not see, or a
    rotation about a non-vertical axis.
    """
    asset = asset_from_caption(scene, ground=True)
    n = len(asset.parts)
    if not 0 <= object_index < n:
        raise DataError(
            f"object {object_index} does not exist: {scene!r} has {n} object(s)",
            f"use --object 0…{n - 1} (in caption order)",
        )
    cams = scene_camera(resolution, azimuth, elevation)
    transform = replace(transform, frame=gravity_frame(cams))
    before = _render(asset, cams, supersample)
    mask = before["instance"] == object_index
    if not bool(mask.any()):
        raise DataError(f"object {object_index} of {scene!r} is hidden from the camera")
    intrinsics = Intrinsics.from_cameras(cams)
    points, _ = object_points(before["depth"], mask, intrinsics)
    pivot = points.double().mean(0)
    target_asset = moved_asset(asset, object_index, transform, pivot, cams)
    after = _render(target_asset, cams, supersample)
    view = view_word(azimuth, elevation)
    return SceneCase(
        prompt=caption(asset.description, view),  # type: ignore[arg-type]
        object_index=object_index,
        image=before["rgb"],
        mask=mask,
        depth=before["depth"],
        instance=before["instance"],
        cameras=cams,
        intrinsics=intrinsics,
        transform=transform,
        asset=asset,
        target_asset=target_asset,
        target_image=after["rgb"],
        target_mask=after["instance"] == object_index,
        target_depth=after["depth"],
        target_instance=after["instance"],
    )
