"""The geometry of a head: SDF parts with part labels, rendered by the world's renderer.

:func:`head_asset` turns :class:`~dreamlift.world.heads.HeadParams` into a
:class:`HeadAsset`, a set of parts (skin, nose, lips, ears, eyes, hair, beard, glasses, hat)
that the sphere tracer of :mod:`dreamlift.world.render` draws like any asset's objects, so
its instance masks become per-pixel part labels (:data:`PART_LABELS`). Skull, jaw and neck
are one skin part, joined by a smooth union. Every part carries a bounding sphere; the SDF
evaluates a part exactly only near it (a lower bound is enough elsewhere), which keeps a
128² view at about a second on a CPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from dreamlift.cameras import Cameras
from dreamlift.world.assets import COLOURS
from dreamlift.world.heads import SKIN_TONES, HeadParams
from dreamlift.world.lighting import Lighting, named_light
from dreamlift.world.render import RenderSettings, render

PART_LABELS = (
    "background",
    "skin",
    "hair",
    "nose",
    "eyes",
    "lips",
    "ears",
    "glasses",
    "hat",
    "beard",
)
"""Per-pixel part labels; a label image holds the index into this tuple (0 = background)."""
EYE_WHITE = (0.95, 0.95, 0.92)
Vec = tuple[float, float, float]


@dataclass(frozen=True)
class HeadPart:
    """One SDF part of a head: its label, colour, distance function and a bounding sphere."""

    label: str
    rgb: Vec
    sdf: Callable[[Tensor], Tensor]
    center: Vec
    radius: float


@dataclass(frozen=True)
class HeadAsset:
    """A head as the renderer sees an asset (parts, SDF, colours, bounding sphere)."""

    parts: tuple[HeadPart, ...]
    params: HeadParams
    ground: bool = False

    def bounding_sphere(self) -> tuple[Tensor, float]:
        return torch.zeros(3), max(math.dist(p.center, (0, 0, 0)) + p.radius for p in self.parts)

    def sdf(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """Distance to the nearest part and its index. Far from a part's bounding sphere the
        distance to the sphere stands in for the part's (a lower bound)."""
        flat = points.reshape(-1, 3)
        dists = []
        for part in self.parts:
            bound = (flat - flat.new_tensor(part.center)).norm(dim=-1) - part.radius
            near = torch.nonzero(bound < 0.02).squeeze(-1)
            if near.numel() == flat.shape[0]:
                dists.append(part.sdf(flat))
                continue
            d = bound.clone()
            if near.numel():
                d[near] = part.sdf(flat[near])
            dists.append(d)
        dist, index = torch.stack(dists, dim=-1).min(dim=-1)
        return dist.reshape(points.shape[:-1]), index.reshape(points.shape[:-1])

    def colours(self) -> Tensor:
        return torch.tensor([p.rgb for p in self.parts])

    def label_ids(self) -> Tensor:
        """(n_parts,) the part label index of every part."""
        return torch.tensor([PART_LABELS.index(p.label) for p in self.parts])


def _ellipsoid(center: Vec, radii: Vec) -> Callable[[Tensor], Tensor]:
    """Near-exact ellipsoid distance (k0 (k0 - 1) / k1, exact on the axes)."""

    def sdf(p: Tensor) -> Tensor:
        q = p - p.new_tensor(center)
        r = p.new_tensor(radii)
        k0 = (q / r).norm(dim=-1)
        k1 = (q / (r * r)).norm(dim=-1).clamp(min=1e-9)
        return k0 * (k0 - 1) / k1

    return sdf


def _sphere(center: Vec, radius: float) -> Callable[[Tensor], Tensor]:
    return lambda p: (p - p.new_tensor(center)).norm(dim=-1) - radius


def _capsule(a: Vec, b: Vec, radius: float) -> Callable[[Tensor], Tensor]:
    def sdf(p: Tensor) -> Tensor:
        pa, ba = p - p.new_tensor(a), p.new_tensor(b) - p.new_tensor(a)
        h = ((pa @ ba) / (ba @ ba)).clamp(0, 1)
        return (pa - h[:, None] * ba).norm(dim=-1) - radius

    return sdf


def _ring(center: Vec, major: float, minor: float) -> Callable[[Tensor], Tensor]:
    """A torus facing +x (a glasses rim)."""

    def sdf(p: Tensor) -> Tensor:
        q = p - p.new_tensor(center)
        ring = torch.sqrt(q[:, 1] ** 2 + q[:, 2] ** 2 + 1e-12) - major
        return torch.sqrt(ring**2 + q[:, 0] ** 2) - minor

    return sdf


def _disc(
    center: Vec, radius: float, half_height: float, round_: float = 0.0
) -> Callable[[Tensor], Tensor]:
    """A (rounded) cylinder about the z axis."""

    def sdf(p: Tensor) -> Tensor:
        q = p - p.new_tensor(center)
        radial = torch.sqrt(q[:, 0] ** 2 + q[:, 1] ** 2 + 1e-12)
        d = torch.stack([radial - radius + round_, q[:, 2].abs() - half_height + round_], -1)
        return d.max(dim=-1).values.clamp(max=0) + d.clamp(min=0).norm(dim=-1) - round_

    return sdf


def _smooth_union(a: Tensor, b: Tensor, k: float) -> Tensor:
    h = (k - (a - b).abs()).clamp(min=0) / k
    return torch.minimum(a, b) - h * h * k / 4


def _union(*sdfs: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    def sdf(p: Tensor) -> Tensor:
        return torch.stack([f(p) for f in sdfs], -1).min(dim=-1).values

    return sdf


def _intersect(*sdfs: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    def sdf(p: Tensor) -> Tensor:
        return torch.stack([f(p) for f in sdfs], -1).max(dim=-1).values

    return sdf


def _half_space(normal: Vec, offset: float) -> Callable[[Tensor], Tensor]:
    """Keeps the points with ``normal · p >= offset`` (negative distance there)."""
    n = torch.nn.functional.normalize(torch.tensor(normal), dim=0).tolist()
    return lambda p: offset - p @ p.new_tensor(n)


def _front_x(center: Vec, radii: Vec, y: float, z: float) -> float:
    """x of an ellipsoid's front surface at (y, z) (its centre's x where (y, z) misses it)."""
    s = 1 - ((y - center[1]) / radii[1]) ** 2 - ((z - center[2]) / radii[2]) ** 2
    return center[0] + radii[0] * math.sqrt(max(s, 0.0))


def head_asset(params: HeadParams) -> HeadAsset:
    """Build the SDF parts of a head (pivot at the origin, z up, facing +x)."""
    p = params
    skin_rgb = SKIN_TONES[p.skin_tone]
    skull_c, skull_r = (
        (-0.01, 0.0, 0.035),
        (0.2 * p.skull_depth, 0.165 * p.skull_width, 0.205 * p.skull_height),
    )
    jaw_c, jaw_r = (0.035, 0.0, -0.085), (0.145, 0.125 * p.jaw_width, 0.135 * p.jaw_height)
    skull, jaw = _ellipsoid(skull_c, skull_r), _ellipsoid(jaw_c, jaw_r)
    neck = _capsule((-0.03, 0.0, -0.12), (-0.04, 0.0, -0.5), 0.072)

    def skin(q: Tensor) -> Tensor:
        return _smooth_union(_smooth_union(skull(q), jaw(q), 0.06), neck(q), 0.05)

    def face_x(y: float, z: float) -> float:
        return max(_front_x(skull_c, skull_r, y, z), _front_x(jaw_c, jaw_r, y, z))

    parts = [HeadPart("skin", skin_rgb, skin, (0.0, 0.0, -0.1), 0.48)]

    nose_z, nl = -0.03, p.nose_length
    nose_c = (face_x(0.0, nose_z) + 0.1 * nl, 0.0, nose_z)
    parts.append(
        HeadPart("nose", skin_rgb, _ellipsoid(nose_c, (nl, p.nose_width, 0.045)), nose_c, 0.05)
    )

    lip_z = -0.105
    lip_c = (face_x(0.0, lip_z) - 0.004, 0.0, lip_z)
    r, g, b = skin_rgb  # lips: the skin, redder
    lip_rgb = (min(1.0, 0.85 * r + 0.1), 0.85 * g - 0.12, 0.85 * b - 0.1)
    lips = _ellipsoid(lip_c, (0.016, p.lip_width, 0.012 * p.lip_fullness))
    parts.append(HeadPart("lips", lip_rgb, lips, lip_c, p.lip_width + 0.005))

    ear_r = (0.028 * p.ear_size, 0.016 * p.ear_size, 0.045 * p.ear_size)
    for side in (-1, 1):
        ear_c = (-0.015, side * (skull_r[1] + 0.004), -0.005)
        parts.append(HeadPart("ears", skin_rgb, _ellipsoid(ear_c, ear_r), ear_c, max(ear_r)))

    eye_z, eye_r, iris_r = 0.015, 0.026, 0.012
    eyes = []
    for side in (-1, 1):
        y = side * p.eye_spacing / 2
        eye_c = (face_x(y, eye_z) - 0.012, y, eye_z)
        iris_c = (eye_c[0] + eye_r - 0.009, y, eye_z)
        eyes.append(eye_c)
        parts.append(HeadPart("eyes", EYE_WHITE, _sphere(eye_c, eye_r), eye_c, eye_r))
        parts.append(
            HeadPart("eyes", COLOURS[p.eye_colour], _sphere(iris_c, iris_r), iris_c, iris_r)
        )

    if p.hair != "none":
        shell_r = tuple(r + 0.022 for r in skull_r)
        shell_c = (skull_c[0] - 0.005, 0.0, skull_c[2])
        # Above a plane from the forehead's hairline down to the nape.
        hair = _intersect(_ellipsoid(shell_c, shell_r), _half_space((-0.5, 0.0, 1.0), 0.04))
        if p.hair == "long":
            drape = _intersect(
                _ellipsoid((-0.08, 0.0, -0.1), (0.15, 0.19, 0.26)),
                _half_space((-1.0, 0.0, 0.0), -0.01),
            )
            hair = _union(hair, drape)
        elif p.hair == "bun":
            hair = _union(hair, _sphere((shell_c[0] - shell_r[0] + 0.01, 0.0, 0.16), 0.065))
        parts.append(HeadPart("hair", COLOURS[p.hair_colour], hair, (-0.05, 0.0, -0.02), 0.42))

    if p.beard:
        beard_r = tuple(r + 0.018 for r in jaw_r)
        mouth = _disc((lip_c[0], 0.0, lip_z), p.lip_width + 0.008, 0.02)
        beard = _intersect(
            _ellipsoid(jaw_c, beard_r),
            _half_space((0.0, 0.0, -1.0), 0.045),
            _half_space((1.0, 0.0, 0.0), -0.02),
            lambda q: -mouth(q),
        )
        parts.append(HeadPart("beard", COLOURS[p.beard_colour], beard, jaw_c, 0.2))

    if p.glasses:
        rim_major, rim_minor, rim_pieces = 0.034, 0.0055, []
        for (ex, ey, ez), side in zip(eyes, (-1, 1), strict=True):
            rim_x = ex + eye_r + 0.016
            rim_pieces.append(_ring((rim_x, ey, ez), rim_major, rim_minor))
            outer = (rim_x, ey + side * rim_major, ez)
            rim_pieces.append(
                _capsule(outer, (-0.02, side * (skull_r[1] + 0.012), ez + 0.005), 0.005)
            )
        inner = [(ex + eye_r + 0.016, ey - math.copysign(rim_major, ey), ez) for ex, ey, ez in eyes]
        rim_pieces.append(_capsule(inner[0], inner[1], 0.005))
        parts.append(
            HeadPart(
                "glasses", COLOURS[p.glasses_colour], _union(*rim_pieces), (0.08, 0.0, eye_z), 0.22
            )
        )

    if p.hat:
        crown = _disc((-0.01, 0.0, 0.205), 0.2, 0.075, 0.02)
        brim = _disc((0.0, 0.0, 0.14), 0.24, 0.006)
        parts.append(
            HeadPart("hat", COLOURS[p.hat_colour], _union(crown, brim), (0.0, 0.0, 0.17), 0.3)
        )
    if p.scale != 1.0:
        parts = [_scaled(part, p.scale) for part in parts]
    return HeadAsset(tuple(parts), params)


def _scaled(part: HeadPart, s: float) -> HeadPart:
    """The part made ``s`` times larger about the pivot: distances scale with it."""
    sdf = part.sdf
    return HeadPart(
        part.label,
        part.rgb,
        lambda q: s * sdf(q / s),
        (part.center[0] * s, part.center[1] * s, part.center[2] * s),
        part.radius * s,
    )


def part_labels(asset: HeadAsset, instance: Tensor) -> Tensor:
    """Part label images (index into :data:`PART_LABELS`) from the renderer's instances."""
    lookup = torch.cat([torch.zeros(1, dtype=torch.long), asset.label_ids()]).to(instance.device)
    return lookup[instance + 1]


def render_head(
    params: HeadParams,
    cameras: Cameras,
    lighting: Lighting | None = None,
    supersample: int = 1,
    background: Vec = (1.0, 1.0, 1.0),
) -> dict[str, Tensor]:
    """Render a head with the world's renderer (the ``front`` SH light unless told).

    Returns the renderer's outputs plus ``labels`` (B, H, W) long, the part label of every
    pixel (0 = background).
    """
    asset = head_asset(params)
    settings = RenderSettings(
        background=background, lighting=lighting or named_light("front"), supersample=supersample
    )
    out = render(asset, cameras, settings)  # type: ignore[arg-type]
    out["labels"] = part_labels(asset, out["instance"])
    return out
