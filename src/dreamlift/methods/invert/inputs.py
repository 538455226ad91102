"""What ``invert`` inverts: a photo (checked against the generator's training crop) or a world
head rendered at a given pose (then the run is scored against the head's true views)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from dreamlift.cameras import Cameras
from dreamlift.errors import DataError
from dreamlift.world.heads import HeadParams, check_head_seed, head_cameras, head_params
from dreamlift.world.heads_geometry import render_head
from dreamlift.world.lighting import Lighting

BACKGROUND_TOLERANCE = 0.15
"""Largest mean distance from white of the image border: the generator learned heads centred
on a white background, and a latent fitted to anything else is garbage."""


@dataclass(frozen=True)
class Pose:
    """Yaw (0 = the face seen from the front, positive = the camera moves to the head's left)
    and pitch (camera above the eyes), degrees, on EG3D's orbit (radius 2.7, focal 4.2647)."""

    yaw: float = 0.0
    pitch: float = 0.0

    def __post_init__(self) -> None:
        for name in ("yaw", "pitch"):
            if not math.isfinite(getattr(self, name)):
                raise DataError(
                    f"--{name} must be a finite number of degrees, not {getattr(self, name)}"
                )

    def camera(self, resolution: int) -> Cameras:
        return head_cameras(self.yaw, self.pitch, resolution)


def estimate_pose(image: Tensor | Path, estimator: str | Path = "toy-pose") -> Pose:
    """A head photo's camera from a pose network, BlendNeRF's pose encoder's role (arXiv
    2312.03584 §3.1): ``image`` a photo file (read at the network's own size, so the estimate
    does not depend on the inversion's resolution) or (1, 3, H, W) in [0, 1]; ``estimator`` a
    zoo name or folder of a ``pose`` head network (toy-pose: 0.81° mean error on held-out
    world heads)."""
    from dreamlift.zoo.recipes.head_nets import load_head_net

    net = load_head_net(estimator, "pose")
    size = net.cfg.resolution
    if isinstance(image, Path):
        image = load_photo(image, size)
    elif image.shape[-1] != size:
        mode = "area" if image.shape[-1] > size else "bilinear"
        image = F.interpolate(image, size=(size, size), mode=mode)
    with torch.no_grad():
        yaw, pitch = net.pose_degrees(image.float().cpu())[0].tolist()
    return Pose(yaw, pitch)


def world_head_light(head: int) -> tuple[float, ...]:
    """The SH light of a head's renders, the same draw the generator's training renders use."""
    from dreamlift.zoo.recipes.eg3d import HeadViewsSpec, head_light

    return head_light(HeadViewsSpec(()), head)


def pose_cameras(poses: Sequence[Pose], resolution: int) -> Cameras:
    """EG3D's cameras at ``poses``, one view each."""
    return head_cameras(
        torch.tensor([p.yaw for p in poses]), torch.tensor([p.pitch for p in poses]), resolution
    )


def render_params(
    params: HeadParams, light: tuple[float, ...], poses: Sequence[Pose], resolution: int
) -> dict[str, Tensor]:
    """RGB (V, 3, R, R), alpha (V, 1, R, R) and labels (V, R, R) of a head at ``poses``
    under an SH light: the renderer's truth the head methods score against."""
    out = render_head(params, pose_cameras(poses, resolution), Lighting(sh=light), supersample=2)
    return {
        "rgb": out["rgb"].permute(0, 3, 1, 2),
        "alpha": out["alpha"].permute(0, 3, 1, 2),
        "labels": out["labels"],
    }


def render_world_head(head: int, poses: Sequence[Pose], resolution: int) -> dict[str, Tensor]:
    """RGB (V, 3, H, W) and alpha (V, 1, H, W) of a world head at ``poses``, under its light."""
    check_head_seed(head)
    return render_params(head_params(head), world_head_light(head), poses, resolution)


def load_photo(path: Path, resolution: int) -> Tensor:
    """(1, 3, R, R) in [0, 1]. A square image of another size is resized (area filter); a
    non-square one, or one whose border is not the training renders' white background, is
    refused with the reason."""
    from dreamlift.methods.handles.files import read_image

    image = read_image(Path(path))  # clear DataError for missing or unreadable files
    h, w, _ = image.shape
    if h != w:
        raise DataError(
            f"image {path} is {w}×{h}; the generator takes square, head-centred crops",
            f"crop it to a square around the head (it is resized to {resolution}×{resolution})",
        )
    x = image.permute(2, 0, 1)[None]
    if h != resolution:
        x = F.interpolate(
            x, size=(resolution, resolution), mode="area" if h > resolution else "bilinear"
        )
    border = torch.cat(
        [
            x[..., :2, :].flatten(2),
            x[..., -2:, :].flatten(2),
            x[..., :, :2].flatten(2),
            x[..., :, -2:].flatten(2),
        ],
        dim=-1,
    )
    off_white = float((1 - border).abs().mean())
    if off_white > BACKGROUND_TOLERANCE:
        raise DataError(
            f"image {path} is far from the generator's training crop: its border is "
            f"{off_white:.2f} from white on average (at most {BACKGROUND_TOLERANCE})",
            "matte the head onto a white background and centre it, as `dreamlift world render "
            "--head N` images are",
        )
    return x.clamp(0, 1)
