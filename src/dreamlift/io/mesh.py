"""Mesh export: marching cubes on a sampled density field, written as .glb or .obj.

Colours travel as per-vertex RGBA (glTF ``COLOR_0``; the common ``v x y z r g b`` OBJ
extension), which every viewer we target reads without textures or UV unwrapping.

``mcubes`` and ``trimesh`` (with scipy and networkx behind it) are imported where a mesh is
made: they cost about half a second of every process that imports this module, and most
runs (Gaussians written as .ply) make no mesh.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from dreamlift.errors import DataError

PointFn = Callable[[Tensor], Tensor]
"""Maps world points (P, 3) to per-point values: density (P,) or colour (P, 3) in [0, 1]."""

# z-up world (see cameras.py) to glTF's +y up: a -90 degree rotation about x.
_Z_UP_TO_Y_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


@torch.no_grad()
def _evaluate(fn: PointFn, points: Tensor, chunk: int) -> Tensor:
    parts = [fn(points[i : i + chunk]).float().cpu() for i in range(0, len(points), chunk)]
    return torch.cat(parts)


def extract_mesh(
    density_fn: PointFn,
    color_fn: PointFn,
    bound: float,
    resolution: int,
    threshold: float,
    chunk: int = 1 << 18,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``threshold`` iso-surface of ``density_fn`` (positive densities) in [-bound, bound]^3.

    Density is sampled at ``resolution``^3 grid points, passed to the functions in chunks as
    float32 CPU tensors (functions on another device move them themselves). The volume is
    padded with empty space so meshes touching the box stay closed. Returns vertices (V, 3)
    float32 in world units, faces (F, 3) int64 wound counter-clockwise seen from outside, and
    colours (V, 3) float32 in [0, 1].

    Raises :class:`DataError` when no density reaches ``threshold`` (an empty field).
    """
    axis = torch.linspace(-bound, bound, resolution)
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)
    density = _evaluate(density_fn, grid, chunk).reshape(resolution, resolution, resolution)
    peak = float(density.max()) if density.numel() else float("-inf")
    if not peak > threshold:
        raise DataError(
            f"nothing to mesh: the field's density never exceeds the threshold {threshold:g} "
            f"(maximum {peak:.3g})",
            hint="the field is empty; train it longer or lower the mesh threshold",
        )
    # Cubes interpolate the crossing linearly; log-density is close to linear across the steep
    # walls of a volume density, where density itself would put the surface at a grid point.
    floor = 1e-30
    if threshold <= floor:
        raise DataError(f"mesh threshold must be a positive density, got {threshold:g}")
    log_density = np.log(np.maximum(density.numpy().astype(np.float64), floor))
    volume = np.pad(log_density, 1, constant_values=math.log(floor))
    import mcubes

    verts, faces = mcubes.marching_cubes(volume, math.log(threshold))
    verts = (verts - 1.0) * (2.0 * bound / (resolution - 1)) - bound
    faces = faces.astype(np.int64)
    if _signed_volume(verts, faces) < 0:  # make normals point out of the dense region
        faces = faces[:, ::-1].copy()
    colors = _evaluate(color_fn, torch.from_numpy(verts).float(), chunk)
    return verts.astype(np.float32), faces, colors.clamp(0, 1).numpy().astype(np.float32)


def _signed_volume(verts: np.ndarray, faces: np.ndarray) -> float:
    a, b, c = (verts[faces[:, i]] for i in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def write_mesh(
    path: Path | str,
    vertices: np.ndarray,
    faces: np.ndarray,
    vertex_colors: np.ndarray | None = None,
    y_up: bool = False,
) -> Path:
    """Write a triangle mesh with optional per-vertex colours (V, 3|4, floats in [0, 1] or
    uint8) to ``.glb`` or ``.obj`` (chosen by the suffix).

    ``y_up`` rotates the z-up world into glTF's +y-up convention so viewers show the object
    standing; leave it off for files that other dreamlift code reads back in world space.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".glb", ".obj"):
        raise DataError(
            f"cannot write mesh {path}: unsupported format {suffix!r}", hint="use .glb or .obj"
        )
    if len(faces) == 0:
        raise DataError(f"cannot write mesh {path}: it has no faces")
    verts = np.asarray(vertices, dtype=np.float64)
    if y_up:
        verts = verts @ _Z_UP_TO_Y_UP.T
    colors = None
    if vertex_colors is not None:
        colors = np.asarray(vertex_colors)
        if colors.dtype != np.uint8:
            colors = np.round(np.clip(colors, 0.0, 1.0) * 255).astype(np.uint8)
        if colors.shape[1] == 3:
            colors = np.concatenate([colors, np.full((len(colors), 1), 255, np.uint8)], axis=1)
    import trimesh

    mesh = trimesh.Trimesh(verts, np.asarray(faces), vertex_colors=colors, process=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    mesh.export(path)
    return path
