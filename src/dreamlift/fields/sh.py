"""Real spherical harmonics with the 3DGS constants and sign conventions (view-dependent colour)."""

from __future__ import annotations

from torch import Tensor

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (
    1.0925484305920792,
    -1.0925484305920792,
    0.31539156525252005,
    -1.0925484305920792,
    0.5462742152960396,
)
SH_C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)


def num_sh_rest(degree: int) -> int:
    """Number of SH coefficients above degree 0 for a degree."""
    return (degree + 1) ** 2 - 1


def eval_sh(degree: int, coeffs: Tensor, dirs: Tensor) -> Tensor:
    """Real SH (3DGS constants and sign conventions) of ``degree``.

    ``coeffs`` (N, (degree+1)², 3), ``dirs`` (..., N, 3) unit vectors; returns (..., N, 3).
    """
    out = SH_C0 * coeffs[:, 0]
    if degree == 0:
        return out.expand(*dirs.shape[:-1], 3)
    x, y, z = (dirs[..., i : i + 1] for i in range(3))
    out = out - SH_C1 * y * coeffs[:, 1] + SH_C1 * z * coeffs[:, 2] - SH_C1 * x * coeffs[:, 3]
    if degree == 1:
        return out
    xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
    out = (
        out
        + SH_C2[0] * xy * coeffs[:, 4]
        + SH_C2[1] * yz * coeffs[:, 5]
        + SH_C2[2] * (2.0 * zz - xx - yy) * coeffs[:, 6]
        + SH_C2[3] * xz * coeffs[:, 7]
        + SH_C2[4] * (xx - yy) * coeffs[:, 8]
    )
    if degree == 2:
        return out
    return (
        out
        + SH_C3[0] * y * (3.0 * xx - yy) * coeffs[:, 9]
        + SH_C3[1] * xy * z * coeffs[:, 10]
        + SH_C3[2] * y * (4.0 * zz - xx - yy) * coeffs[:, 11]
        + SH_C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy) * coeffs[:, 12]
        + SH_C3[4] * x * (4.0 * zz - xx - yy) * coeffs[:, 13]
        + SH_C3[5] * z * (xx - yy) * coeffs[:, 14]
        + SH_C3[6] * x * (xx - 3.0 * yy) * coeffs[:, 15]
    )
