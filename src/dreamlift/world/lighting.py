"""Shading models of the world: Lambertian + ambient, or 2nd-order spherical harmonics.

SH lighting follows the convention of 3D face models (and FaceDNeRF): shading is
``sum_k coeffs[k] * Y_k(n)`` over the 9 real SH basis functions of the unit normal, with the
cosine-lobe convolution already folded into the coefficients, one set of 9 per channel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

# Real SH basis constants, bands 0..2.
_C0 = 0.5 / math.sqrt(math.pi)
_C1 = math.sqrt(3.0 / (4.0 * math.pi))
_C2 = 0.5 * math.sqrt(15.0 / math.pi)
_C3 = 0.25 * math.sqrt(5.0 / math.pi)
_C4 = 0.25 * math.sqrt(15.0 / math.pi)


def sh_basis(normals: Tensor) -> Tensor:
    """The 9 real SH basis values (..., 9) of unit vectors (..., 3)."""
    x, y, z = normals.unbind(-1)
    return torch.stack(
        [
            torch.full_like(x, _C0),
            _C1 * y,
            _C1 * z,
            _C1 * x,
            _C2 * x * y,
            _C2 * y * z,
            _C3 * (3 * z * z - 1),
            _C2 * x * z,
            _C4 * (x * x - y * y),
        ],
        dim=-1,
    )


@dataclass(frozen=True)
class Lighting:
    """How the renderer shades surfaces.

    With ``sh`` unset: ``ambient + diffuse * max(0, n·l)`` for a directional light from
    ``direction`` (world space, towards the light). With ``sh`` set (9 values, or 9 per RGB
    channel as 27 values channel-major) the shading is the SH irradiance described above.
    """

    ambient: float = 0.4
    diffuse: float = 0.6
    direction: tuple[float, float, float] = (0.55, 0.35, 0.76)
    sh: tuple[float, ...] | None = None

    def shade(self, normals: Tensor) -> Tensor:
        """Per-pixel shading factors (..., 3) for unit normals (..., 3)."""
        if self.sh is not None:
            coeffs = torch.tensor(self.sh, dtype=normals.dtype, device=normals.device)
            if coeffs.numel() == 9:
                coeffs = coeffs.expand(3, 9)
            elif coeffs.numel() == 27:
                coeffs = coeffs.reshape(3, 9)
            else:
                raise ValueError(f"SH lighting needs 9 or 27 coefficients, got {coeffs.numel()}")
            return (sh_basis(normals) @ coeffs.T).clamp(min=0.0)
        light = torch.nn.functional.normalize(
            torch.tensor(self.direction, dtype=normals.dtype, device=normals.device), dim=0
        )
        lambert = (normals @ light).clamp(min=0.0)
        return (self.ambient + self.diffuse * lambert)[..., None].expand(*normals.shape)


def sh_from_directional(
    ambient: float, diffuse: float, direction: tuple[float, float, float]
) -> tuple[float, ...]:
    """9 SH coefficients approximating ambient + clamped-cosine light from ``direction``.

    Uses the Ramamoorthi–Hanrahan band weights (pi, 2pi/3, pi/4) of the clamped cosine, so a
    normal facing the light gets about ``ambient + diffuse`` (within the ~6 % error of a
    2nd-order expansion).
    """
    d = torch.nn.functional.normalize(torch.tensor(direction, dtype=torch.float64), dim=0)
    band = math.pi * torch.tensor([1.0, 2 / 3, 2 / 3, 2 / 3, 1 / 4, 1 / 4, 1 / 4, 1 / 4, 1 / 4])
    coeffs = diffuse * band.double() * sh_basis(d)
    coeffs[0] += ambient / _C0
    return tuple(float(c) for c in coeffs)


LIGHT_DIRECTIONS: dict[str, tuple[float, float, float]] = {
    "front": (1.0, 0.0, 0.3),
    "left": (0.45, -1.0, 0.3),
    "right": (0.45, 1.0, 0.3),
    "top": (0.3, 0.0, 1.0),
    "bottom": (0.5, 0.0, -1.0),
    "back": (-1.0, 0.0, 0.3),
}
"""Where each named light comes from (world space, towards the light). Left and right are
as seen by the front camera (azimuth 0 looks along -x, so the image's left is world -y)."""


def named_light(name: str, ambient: float = 0.35, diffuse: float = 0.75) -> Lighting:
    """A named 2nd-order SH light (``front``, ``left``, ``right``, ``top``, ``bottom``,
    ``back``): ambient plus one clamped-cosine light, as 9 SH coefficients."""
    from dreamlift.errors import ConfigError

    if name not in LIGHT_DIRECTIONS:
        raise ConfigError(f"unknown light {name!r}", f"lights: {', '.join(LIGHT_DIRECTIONS)}")
    return Lighting(sh=sh_from_directional(ambient, diffuse, LIGHT_DIRECTIONS[name]))


def light_from_text(text: str) -> Lighting:
    """A light named on the command line: a name of :data:`LIGHT_DIRECTIONS`, or 9 (or 27,
    channel-major) comma-separated SH coefficients."""
    from dreamlift.errors import ConfigError

    if text.strip().lower() in LIGHT_DIRECTIONS:
        return named_light(text.strip().lower())
    try:
        coeffs = tuple(float(c) for c in text.split(","))
    except ValueError:
        coeffs = ()
    if len(coeffs) not in (9, 27):
        raise ConfigError(
            f"unknown light {text!r}",
            f"lights: {', '.join(LIGHT_DIRECTIONS)}, or 9 or 27 comma-separated SH coefficients",
        )
    return Lighting(sh=coeffs)
