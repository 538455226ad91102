"""3D Gaussian splatting .ply files in the INRIA layout (what 3DGS viewers and tools read).

One ``vertex`` element, binary little-endian float32 properties in this order::

    x y z  nx ny nz  f_dc_0..2  f_rest_0..(3K-1)  opacity  scale_0..2  rot_0..3

``f_rest`` is channel-major (all K red coefficients, then green, then blue), i.e. the
(N, K, 3) SH coefficients transposed to (N, 3, K) and flattened; ``opacity`` is a logit,
``scale_*`` are log-scales and ``rot_*`` an unnormalised wxyz quaternion; the normals are
written as zeros. Reading accepts any property order and the other numeric types of the
format, derives the SH degree from the number of ``f_rest_*`` properties and raises
:class:`~dreamlift.errors.DataError` on anything malformed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from dreamlift.errors import DataError

_PLY_TYPES = {
    "char": "i1",
    "int8": "i1",
    "uchar": "u1",
    "uint8": "u1",
    "short": "i2",
    "int16": "i2",
    "ushort": "u2",
    "uint16": "u2",
    "int": "i4",
    "int32": "i4",
    "uint": "u4",
    "uint32": "u4",
    "float": "f4",
    "float32": "f4",
    "double": "f8",
    "float64": "f8",
}
_MAX_HEADER_BYTES = 1 << 16


@dataclass
class GaussianPly:
    """The arrays of a Gaussian splat file (float32 CPU tensors, 3DGS parameterisation)."""

    means: Tensor  # (N, 3)
    features_dc: Tensor  # (N, 1, 3) degree-0 SH coefficients
    features_rest: Tensor  # (N, K, 3) higher-degree SH coefficients, K = (deg + 1)^2 - 1
    opacity_logits: Tensor  # (N,)
    log_scales: Tensor  # (N, 3)
    quats: Tensor  # (N, 4) wxyz, unnormalised

    @property
    def sh_degree(self) -> int:
        return round((self.features_rest.shape[1] + 1) ** 0.5) - 1


def _property_names(n_rest: int) -> list[str]:
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(n_rest)]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    return names


def write_gaussians_ply(path: Path | str, g: GaussianPly) -> Path:
    """Write ``g`` as a binary little-endian INRIA-layout .ply; returns the path."""
    path = Path(path)
    n, k = g.means.shape[0], g.features_rest.shape[1]

    def arr(t: Tensor) -> np.ndarray:
        return t.detach().to("cpu", torch.float32).reshape(n, -1).numpy()

    columns = [
        arr(g.means),
        np.zeros((n, 3), dtype=np.float32),
        arr(g.features_dc),
        arr(g.features_rest.transpose(1, 2)),  # channel-major
        arr(g.opacity_logits),
        arr(g.log_scales),
        arr(g.quats),
    ]
    data = np.ascontiguousarray(np.concatenate(columns, axis=1), dtype="<f4")
    names = _property_names(3 * k)
    assert data.shape[1] == len(names)
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {n}"]
    header += [f"property float {name}" for name in names]
    header.append("end_header")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        f.write(data.tobytes())
    return path


def _parse_header(raw: bytes, path: Path) -> tuple[int, int, list[tuple[str, str]]]:
    """Returns (header length in bytes, vertex count, [(name, numpy dtype)])."""
    end = raw.find(b"end_header")
    if not raw.startswith(b"ply") or end < 0:
        raise DataError(f"{path} is not a .ply file (no 'ply' magic or 'end_header')")
    newline = raw.find(b"\n", end)
    if newline < 0:
        raise DataError(f"{path}: truncated .ply header")
    lines = raw[:end].decode("ascii", errors="replace").splitlines()
    fmt, count, props, element = None, None, [], None
    for line in lines[1:]:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format":
            fmt = words[1] if len(words) > 1 else None
        elif words[0] == "element":
            if element is not None:
                raise DataError(f"{path}: only a single 'vertex' element is supported")
            element = words[1] if len(words) > 1 else None
            if element != "vertex" or len(words) != 3 or not words[2].isdigit():
                raise DataError(f"{path}: expected 'element vertex N', got {line.strip()!r}")
            count = int(words[2])
        elif words[0] == "property":
            if len(words) != 3 or words[1] not in _PLY_TYPES:
                raise DataError(f"{path}: unsupported property {line.strip()!r}")
            props.append((words[2], "<" + _PLY_TYPES[words[1]]))
        else:
            raise DataError(f"{path}: unexpected header line {line.strip()!r}")
    if fmt != "binary_little_endian":
        raise DataError(f"{path}: only binary_little_endian .ply is supported, got {fmt!r}")
    if count is None or not props:
        raise DataError(f"{path}: no vertex element with properties")
    return newline + 1, count, props


def read_gaussians_ply(path: Path | str) -> GaussianPly:
    """Read a 3DGS .ply (ours or the INRIA code's, any SH degree)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from e
    start, n, props = _parse_header(raw[:_MAX_HEADER_BYTES], path)
    names = [name for name, _ in props]
    if len(set(names)) != len(names):
        raise DataError(f"{path}: duplicate property names")
    dtype = np.dtype(props)
    if len(raw) - start < n * dtype.itemsize:
        raise DataError(
            f"{path} is truncated: {len(raw) - start} bytes of vertex data, "
            f"expected {n * dtype.itemsize} for {n} Gaussians"
        )
    data = np.frombuffer(raw, dtype=dtype, count=n, offset=start)

    required = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity"]
    required += [f"scale_{i}" for i in range(3)] + [f"rot_{i}" for i in range(4)]
    missing = [name for name in required if name not in names]
    if missing:
        raise DataError(f"{path} is not a Gaussian splat .ply (missing {', '.join(missing)})")
    rest = sorted((name for name in names if name.startswith("f_rest_")), key=lambda s: int(s[7:]))
    if rest != [f"f_rest_{i}" for i in range(len(rest))]:
        raise DataError(f"{path}: f_rest_* properties are not numbered 0..{len(rest) - 1}")
    k = len(rest) // 3
    if len(rest) % 3 or round((k + 1) ** 0.5) ** 2 != k + 1 or k > 15:
        raise DataError(f"{path}: {len(rest)} f_rest_* properties match no SH degree 0..3")

    def cols(keys: list[str]) -> Tensor:
        if not keys:
            return torch.zeros(n, 0)
        stacked = np.stack([np.asarray(data[key], dtype=np.float32) for key in keys], axis=1)
        return torch.from_numpy(stacked)

    out = GaussianPly(
        means=cols(["x", "y", "z"]),
        features_dc=cols(["f_dc_0", "f_dc_1", "f_dc_2"]).reshape(n, 1, 3),
        features_rest=cols(rest).reshape(n, 3, k).transpose(1, 2).contiguous(),
        opacity_logits=cols(["opacity"]).reshape(n),
        log_scales=cols([f"scale_{i}" for i in range(3)]),
        quats=cols([f"rot_{i}" for i in range(4)]),
    )
    if not all(torch.isfinite(t).all() for t in (out.means, out.log_scales, out.quats)):
        raise DataError(f"{path}: non-finite Gaussian positions, scales or rotations")
    return out
