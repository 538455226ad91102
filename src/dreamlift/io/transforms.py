"""Posed images in the nerfstudio / instant-ngp ``transforms.json`` format.

Readers accept both the nerfstudio keys (``fl_x``, ``fl_y``, ``cx``, ``cy``, ``w``, ``h``, at
the top level or per frame) and the Blender / instant-ngp ``camera_angle_x``. Matrices in the
file are OpenGL camera-to-world (the format's convention) and are converted to OpenCV here.
Depth is written as 16-bit PNG in millimetres (nerfstudio's default
``depth_unit_scale_factor`` of 1e-3).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import torch
from torch import Tensor

from dreamlift.cameras import DEFAULT_ORBIT, Cameras, opencv_to_opengl, opengl_to_opencv
from dreamlift.errors import DataError
from dreamlift.io.media import save_image


@dataclass
class PosedImages:
    """Images with cameras: what reconstruction fits and what evaluation compares against."""

    images: Tensor  # (N, H, W, 3) in [0, 1], composited over ``background``
    cameras: Cameras
    alphas: Tensor | None = None  # (N, H, W, 1) coverage, when known
    depths: Tensor | None = None  # (N, H, W, 1) z-depth, 0 where empty, when known
    names: list[str] | None = None

    def __len__(self) -> int:
        return self.images.shape[0]

    def subset(self, index: Tensor | list[int]) -> PosedImages:
        idx = torch.as_tensor(index, dtype=torch.long)
        pick = lambda t: None if t is None else t[idx]  # noqa: E731
        names = None if self.names is None else [self.names[i] for i in idx.tolist()]
        return PosedImages(
            self.images[idx], self.cameras[idx], pick(self.alphas), pick(self.depths), names
        )


def write_transforms(
    folder: Path, data: PosedImages, extra: dict | None = None, background: float = 1.0
) -> Path:
    """Write images (RGBA when alphas are known), depth and masks plus ``transforms.json``."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    cams = data.cameras
    frames = []
    gl = opencv_to_opengl(cams.c2w)
    for i in range(len(data)):
        name = f"{i:03d}"
        rgb = data.images[i]
        if data.alphas is not None:
            a = data.alphas[i]
            # Un-composite so the stored RGBA is the straight colour (viewers expect that).
            straight = torch.where(a > 0, (rgb - (1 - a) * background) / a.clamp(min=1e-6), rgb)
            rgb = torch.cat([straight.clamp(0, 1), a], dim=-1)
        frame = {
            "file_path": f"images/{name}.png",
            "transform_matrix": gl[i].tolist(),
            "fl_x": float(cams.fx[i]),
            "fl_y": float(cams.fy[i]),
            "cx": float(cams.cx[i]),
            "cy": float(cams.cy[i]),
        }
        save_image(folder / frame["file_path"], rgb)
        if data.depths is not None:
            (folder / "depth").mkdir(exist_ok=True)
            mm = (data.depths[i, ..., 0] * 1000).round().clamp(0, 65535).to(torch.int32).numpy()
            imageio.imwrite(folder / "depth" / f"{name}.png", mm.astype(np.uint16))
            frame["depth_file_path"] = f"depth/{name}.png"
        frames.append(frame)
    meta = {"camera_model": "OPENCV", "w": cams.width, "h": cams.height, "frames": frames}
    if extra:
        meta["dreamlift"] = extra
    path = folder / "transforms.json"
    path.write_text(json.dumps(meta, indent=1))
    return path


def _intrinsics(meta: dict, frame: dict, width: int, height: int) -> tuple[float, ...]:
    def key(name: str) -> float | None:
        value = frame.get(name, meta.get(name))
        return None if value is None else float(value)

    fx, fy = key("fl_x"), key("fl_y")
    if fx is None:
        angle = key("camera_angle_x")
        if angle is None:
            raise DataError("transforms.json gives neither fl_x nor camera_angle_x")
        fx = 0.5 * width / math.tan(angle / 2)
    fy = fy if fy is not None else fx
    cx, cy = key("cx"), key("cy")
    return fx, fy, cx if cx is not None else width / 2, cy if cy is not None else height / 2


def read_transforms(path: Path, background: float = 1.0) -> PosedImages:
    """Load a ``transforms.json`` (or a folder holding one) as OpenCV-convention posed images."""
    path = Path(path)
    if path.is_dir():
        path = path / "transforms.json"
    if not path.is_file():
        raise DataError(f"no transforms.json at {path}")
    try:
        meta = json.loads(path.read_text())
        frames = meta["frames"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataError(f"{path} is not a valid transforms.json ({exc})") from None
    if not frames:
        raise DataError(f"{path} lists no frames")
    root = path.parent
    images, alphas, c2ws, intr, names = [], [], [], [], []
    size = None
    for frame in frames:
        file = root / frame["file_path"]
        if not file.suffix and not file.exists():
            file = file.with_suffix(".png")  # Blender datasets omit the extension
        if not file.is_file():
            raise DataError(f"image {file} listed in {path.name} is missing")
        try:
            array = imageio.imread(file)
        except Exception as exc:  # imageio raises many types for bad files
            raise DataError(f"cannot read image {file}: {exc}") from None
        array = np.asarray(array, dtype=np.float32) / (
            65535.0 if array.dtype == np.uint16 else 255.0
        )
        if array.ndim == 2:
            array = np.repeat(array[..., None], 3, axis=-1)
        h, w = array.shape[:2]
        if size is None:
            size = (w, h)
        elif size != (w, h):
            raise DataError(
                f"image {file.name} is {w}x{h} but earlier images are {size[0]}x{size[1]}",
                "all images of one transforms.json must share a size",
            )
        rgba = torch.from_numpy(np.ascontiguousarray(array))
        if rgba.shape[-1] == 4:
            a = rgba[..., 3:]
            images.append(rgba[..., :3] * a + (1 - a) * background)
            alphas.append(a)
        else:
            images.append(rgba[..., :3])
        matrix = torch.tensor(frame["transform_matrix"], dtype=torch.float32)
        if matrix.shape != (4, 4):
            raise DataError(
                f"frame {frame['file_path']} has a transform_matrix of shape {tuple(matrix.shape)}"
            )
        c2ws.append(matrix)
        intr.append(_intrinsics(meta, frame, w, h))
        names.append(str(frame["file_path"]))
    fx, fy, cx, cy = (torch.tensor(v) for v in zip(*intr, strict=True))
    c2w = opengl_to_opencv(torch.stack(c2ws))
    cams = Cameras(c2w, fx, fy, cx, cy, size[0], size[1])
    alpha = torch.stack(alphas) if len(alphas) == len(images) else None
    return PosedImages(torch.stack(images), cams, alpha, None, names)


def normalize_scene(cameras: Cameras) -> tuple[Cameras, Tensor, float]:
    """Recentre and rescale poses so the cameras orbit the origin at the world's radius.

    The centre is the point nearest (least squares) to all optical axes, i.e. what the
    cameras look at; the scale brings their mean distance to it to the world's orbit radius
    (:data:`~dreamlift.cameras.DEFAULT_ORBIT`).
    Returns the new cameras, the centre and the scale (world = (input - centre) * scale).
    """
    origins = cameras.centers
    dirs = cameras.c2w[:, :3, 2]
    eye = torch.eye(3)
    proj = eye - dirs[:, :, None] * dirs[:, None, :]
    a = proj.sum(0)
    b = (proj @ origins[:, :, None]).sum(0)[:, 0]
    center = (
        torch.linalg.lstsq(a, b).solution if torch.linalg.matrix_rank(a) == 3 else origins.mean(0)
    )
    dist = (origins - center).norm(dim=-1).mean()
    scale = float(DEFAULT_ORBIT.radius / dist.clamp(min=1e-6))
    c2w = cameras.c2w.clone()
    c2w[:, :3, 3] = (origins - center) * scale
    return (
        Cameras(c2w, cameras.fx, cameras.fy, cameras.cx, cameras.cy, cameras.width, cameras.height),
        center,
        scale,
    )
