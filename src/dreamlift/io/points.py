"""Coloured point clouds as .ply: xyz float32 and uchar red/green/blue per vertex.

The plain layout every viewer (MeshLab, CloudCompare, Open3D, Blender) reads, binary
little-endian. :mod:`dreamlift.io.ply` is the 3D Gaussian splatting layout instead, which
viewers of plain point clouds do not show as colours.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import Tensor

from dreamlift.errors import DataError

_VERTEX = np.dtype(
    [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1")]
)


def write_point_cloud_ply(path: Path | str, xyz: Tensor, rgb: Tensor) -> Path:
    """Write (N, 3) positions and (N, 3) colours in [0, 1]; returns the path."""
    path = Path(path)
    if xyz.ndim != 2 or xyz.shape[1] != 3 or tuple(rgb.shape) != tuple(xyz.shape):
        raise ValueError(f"xyz and rgb must both be (N, 3), got {xyz.shape} and {rgb.shape}")
    n = xyz.shape[0]
    data = np.empty(n, dtype=_VERTEX)
    pos = xyz.detach().float().cpu().numpy()
    col = (rgb.detach().float().clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)
    for k, name in enumerate("xyz"):
        data[name] = pos[:, k]
    for k, name in enumerate("rgb"):
        data[name] = col[:, k]
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"element vertex {n}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\n"
        "end_header\n"
    )
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(data.tobytes())
    return path


def read_point_cloud_ply(path: Path | str) -> tuple[np.ndarray, np.ndarray]:
    """(xyz float32 (N, 3), rgb uint8 (N, 3)) of a file written by :func:`write_point_cloud_ply`."""
    raw = Path(path).read_bytes()
    end = raw.find(b"end_header\n")
    if not raw.startswith(b"ply\n") or end < 0:
        raise DataError(f"{path} is not a .ply file")
    header = raw[:end].decode("ascii", errors="replace").splitlines()
    counts = [int(line.split()[2]) for line in header if line.startswith("element vertex")]
    if not counts or "format binary_little_endian 1.0" not in header:
        raise DataError(f"{path} is not a binary little-endian point cloud")
    data = np.frombuffer(raw[end + len(b"end_header\n") :], dtype=_VERTEX, count=counts[0])
    xyz = np.stack([data["x"], data["y"], data["z"]], axis=-1)
    rgb = np.stack([data["r"], data["g"], data["b"]], axis=-1)
    return xyz, rgb
