"""Procedural heads: identity and attribute parameters drawn from a seed, and their cameras.

A head is a :class:`HeadParams` (documented fields: skull and jaw proportions, skin tone,
eyes, nose, ears, lips, hair, glasses, hat, beard), drawn deterministically by
:func:`head_params` from a seed in :data:`HEAD_SEEDS` and changed by
:func:`with_overrides` (the ground truth of a text edit) or :func:`compose_heads` (the
identity of one head with a part of another: the ground truth of blending). Its geometry is
built in :mod:`dreamlift.world.heads_geometry`.

Head frame: the head's pivot (the centre of the skull, between the ears) is the world
origin, z up, the face looking along +x, so the world's orbit conventions apply unchanged.
Heads are seen by EG3D's cameras (FFHQ's: radius 2.7, normalised focal 4.2647, looking at
the pivot); :func:`eg3d_camera_vector` writes EG3D's 25-value camera label of a camera.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

import numpy as np
import torch
from torch import Tensor

from dreamlift.cameras import Cameras, Orbit, orbit_cameras
from dreamlift.errors import ConfigError, DataError
from dreamlift.world.assets import COLOURS

HEAD_SEEDS = range(0, 250)
"""Every head seed ``--head`` accepts."""
HELD_OUT_HEADS = range(200, 250)
"""Seeds held out of every training set (fixed: identities a model must never have seen,
for identity and blending scores). Training sets draw from :func:`training_head_seeds`."""

EG3D_FOCAL = 4.2647
"""EG3D's (FFHQ's) focal length normalised by the image size."""
HEAD_ORBIT = Orbit(radius=2.7, fov_deg=math.degrees(2 * math.atan(0.5 / EG3D_FOCAL)))
"""EG3D's camera: radius 2.7 around the head's pivot, field of view ~13.4 degrees."""

SKIN_TONES: dict[str, tuple[float, float, float]] = {
    "porcelain": (0.96, 0.84, 0.76),
    "light": (0.92, 0.75, 0.63),
    "medium": (0.80, 0.60, 0.46),
    "tan": (0.68, 0.48, 0.34),
    "brown": (0.50, 0.33, 0.22),
    "dark": (0.34, 0.22, 0.15),
}
HAIR_STYLES = ("none", "short", "long", "bun")
EYE_COLOURS = ("brown", "blue", "green", "grey", "black")
NATURAL_HAIR = ("black", "brown", "yellow", "orange", "grey", "white", "red")
"""Hair and beard colours a seed draws from (overrides may use any colour of the palette)."""
YES_NO = {"yes": True, "no": False, "true": True, "false": False}

RANGES: dict[str, tuple[float, float]] = {
    "skull_width": (0.9, 1.1),
    "skull_height": (0.9, 1.1),
    "skull_depth": (0.9, 1.1),
    "jaw_width": (0.85, 1.15),
    "jaw_height": (0.85, 1.15),
    "eye_spacing": (0.11, 0.14),
    "nose_length": (0.025, 0.045),
    "nose_width": (0.016, 0.026),
    "ear_size": (0.85, 1.15),
    "lip_width": (0.035, 0.05),
    "lip_fullness": (0.8, 1.25),
}
"""Range of every numeric parameter (seeds draw uniformly in it; overrides must stay in it)."""
SCALE_RANGE = (0.8, 1.2)
"""Range of ``scale``, the one numeric attribute no seed draws (every seed's head has scale 1):
only an override sizes a head, so that a pair of heads can differ by a known scale (the
ground truth of BlendNeRF's ICP alignment)."""


@dataclass(frozen=True)
class HeadParams:
    """Everything that makes one head. Lengths are world units (the skull is ~0.4 wide);
    proportions are multipliers of the average head; colours are names."""

    skull_width: float = 1.0
    """Skull (cranium) width, left to right, as a multiple of the average."""
    skull_height: float = 1.0
    """Skull height (chin excluded)."""
    skull_depth: float = 1.0
    """Skull depth, back to front."""
    jaw_width: float = 1.0
    """Width of the lower face and jaw."""
    jaw_height: float = 1.0
    """Height of the lower face (how far the chin reaches down)."""
    skin_tone: str = "light"
    """A name of :data:`SKIN_TONES`."""
    eye_spacing: float = 0.125
    """Distance between the centres of the eyes."""
    eye_colour: str = "brown"
    """Iris colour, a name of the world's palette."""
    nose_length: float = 0.035
    """How far the nose stands out of the face."""
    nose_width: float = 0.021
    """Half-width of the nose."""
    ear_size: float = 1.0
    """Ear size as a multiple of the average."""
    lip_width: float = 0.042
    """Half-width of the mouth."""
    lip_fullness: float = 1.0
    """Lip thickness as a multiple of the average."""
    hair: str = "short"
    """One of :data:`HAIR_STYLES`: none, short, long or bun."""
    hair_colour: str = "brown"
    """A name of the world's palette."""
    glasses: bool = False
    glasses_colour: str = "black"
    """Colour of the glasses' frame."""
    hat: bool = False
    hat_colour: str = "blue"
    beard: bool = False
    beard_colour: str = "brown"
    scale: float = 1.0
    """Uniform size of the whole head about its pivot (see :data:`SCALE_RANGE`)."""


def _range(name: str) -> tuple[float, float]:
    return SCALE_RANGE if name == "scale" else RANGES[name]


def _choices(name: str) -> tuple[str, ...]:
    if name == "skin_tone":
        return tuple(SKIN_TONES)
    if name == "hair":
        return HAIR_STYLES
    return tuple(COLOURS)


ATTRIBUTES: tuple[str, ...] = tuple(f.name for f in fields(HeadParams))
"""The names ``--set`` and :func:`with_overrides` accept."""


def attribute_values(name: str) -> str:
    """The valid values of one attribute, as words for help and error messages."""
    if name in RANGES or name == "scale":
        lo, hi = _range(name)
        return f"a number in [{lo:g}, {hi:g}]"
    if isinstance(getattr(HeadParams(), name), bool):
        return "yes or no"
    return ", ".join(_choices(name))


def check_head_seed(seed: int) -> int:
    """``seed`` if it is a head seed; a one-line :class:`DataError` otherwise."""
    if seed not in HEAD_SEEDS:
        raise DataError(
            f"head {seed} does not exist",
            f"heads are {HEAD_SEEDS.start}..{HEAD_SEEDS.stop - 1}; "
            f"{HELD_OUT_HEADS.start}..{HELD_OUT_HEADS.stop - 1} are held out of training",
        )
    return seed


def training_head_seeds() -> tuple[int, ...]:
    """The head seeds a training set may use (every seed but the held-out ones)."""
    return tuple(s for s in HEAD_SEEDS if s not in HELD_OUT_HEADS)


def head_params(seed: int) -> HeadParams:
    """The head of ``seed``: every parameter drawn, in a fixed order, from a NumPy generator
    seeded with ``seed`` alone (no global random state)."""
    rng = np.random.default_rng([check_head_seed(seed), 17])

    def uniform(name: str) -> float:
        lo, hi = RANGES[name]
        return round(float(rng.uniform(lo, hi)), 4)

    def pick(options: tuple[str, ...], p: tuple[float, ...] | None = None) -> str:
        return str(options[int(rng.choice(len(options), p=p))])

    numeric = {name: uniform(name) for name in RANGES}
    hair_colour = pick(NATURAL_HAIR, (0.26, 0.26, 0.14, 0.08, 0.1, 0.06, 0.1))
    return HeadParams(
        **numeric,
        skin_tone=pick(tuple(SKIN_TONES)),
        eye_colour=pick(EYE_COLOURS),
        hair=pick(HAIR_STYLES, (0.1, 0.45, 0.3, 0.15)),
        hair_colour=hair_colour,
        glasses=bool(rng.random() < 0.3),
        glasses_colour=pick(("black", "brown", "grey", "red", "blue")),
        hat=bool(rng.random() < 0.2),
        hat_colour=pick(tuple(COLOURS)),
        beard=bool(rng.random() < 0.25),
        beard_colour=hair_colour if rng.random() < 0.8 else pick(NATURAL_HAIR),
    )


def _value(name: str, raw: object) -> object:
    default = getattr(HeadParams(), name)
    text = str(raw).strip().lower()
    bad = ConfigError(
        f"bad value {raw!r} for head attribute {name}", f"{name} is {attribute_values(name)}"
    )
    if isinstance(default, bool):
        if isinstance(raw, bool):
            return raw
        if text not in YES_NO:
            raise bad
        return YES_NO[text]
    if isinstance(default, float):
        try:
            value = float(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise bad from None
        lo, hi = _range(name)
        if not lo <= value <= hi:
            raise bad
        return value
    if text not in _choices(name):
        raise bad
    return text


def with_overrides(params: HeadParams, overrides: Mapping[str, object]) -> HeadParams:
    """``params`` with some attributes changed, e.g. ``{"hair": "long", "glasses": "yes"}``.

    Values may be strings (as ``--set`` gives them) or typed; an unknown name or a bad value
    raises a one-line :class:`ConfigError` listing the valid ones.
    """
    changes = {}
    for name, raw in overrides.items():
        key = name.strip().lower().replace("color", "colour")
        if key not in ATTRIBUTES:
            raise ConfigError(
                f"unknown head attribute {name!r}", f"attributes: {', '.join(ATTRIBUTES)}"
            )
        changes[key] = _value(key, raw)
    return replace(params, **changes)


def parse_assignments(text: str) -> dict[str, str]:
    """``"hair=long,hair_colour=red"`` → ``{"hair": "long", "hair_colour": "red"}``."""
    out: dict[str, str] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, eq, value = item.partition("=")
        if not eq or not name.strip() or not value.strip():
            raise ConfigError(
                f"cannot read {item!r} as name=value",
                f"e.g. --set hair=long,hair_colour=red,glasses=yes; attributes: "
                f"{', '.join(ATTRIBUTES)}",
            )
        out[name.strip()] = value.strip()
    return out


PART_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "hair": ("hair", "hair_colour"),
    "eyes": ("eye_spacing", "eye_colour"),
    "nose": ("nose_length", "nose_width"),
    "lips": ("lip_width", "lip_fullness"),
    "ears": ("ear_size",),
    "glasses": ("glasses", "glasses_colour"),
    "hat": ("hat", "hat_colour"),
    "beard": ("beard", "beard_colour"),
}
PART_ATTRIBUTES["face"] = (
    "skin_tone",
    "jaw_width",
    "jaw_height",
    *PART_ATTRIBUTES["eyes"],
    *PART_ATTRIBUTES["nose"],
    *PART_ATTRIBUTES["lips"],
    *PART_ATTRIBUTES["ears"],
    *PART_ATTRIBUTES["beard"],
)
"""The attributes each part of a head carries (what :func:`compose_heads` transplants).
``face`` is BlendNeRF's face region: everything but the skull's shape, the hair and the
accessories worn on the head (glasses, hat)."""


def compose_heads(a: HeadParams, b: HeadParams, part: str) -> HeadParams:
    """The identity of ``a`` with ``part`` of ``b`` (built to fit ``a``'s skull): the ground
    truth of blending ``b``'s part into ``a``."""
    if part not in PART_ATTRIBUTES:
        raise ConfigError(f"unknown head part {part!r}", f"parts: {', '.join(PART_ATTRIBUTES)}")
    return replace(a, **{name: getattr(b, name) for name in PART_ATTRIBUTES[part]})


def head_cameras(azimuth_deg: Tensor | float, elevation_deg: Tensor | float, size: int) -> Cameras:
    """EG3D's cameras at the given orbit angles (world conventions: azimuth 0 = the front)."""
    az = torch.as_tensor(azimuth_deg, dtype=torch.float32).reshape(-1)
    el = torch.as_tensor(elevation_deg, dtype=torch.float32).reshape(-1).expand_as(az)
    return orbit_cameras(az, el, HEAD_ORBIT.radius, HEAD_ORBIT.fov_deg, size)


# EG3D's world is y-up with the face looking along +z; ours is z-up facing +x, so EG3D's
# (x, y, z) are our (y, z, x): a cyclic permutation, hence a proper rotation.
_TO_EG3D = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])


def eg3d_camera_vector(cameras: Cameras, pivot: tuple[float, float, float] = (0, 0, 0)) -> Tensor:
    """EG3D's camera labels (B, 25): the flattened 4×4 OpenCV cam2world in EG3D's world frame
    (origin at the head's pivot, y up, face towards +z), then the 3×3 intrinsics with focal
    lengths and principal point divided by the image width and height."""
    rot = _TO_EG3D.to(cameras.c2w)
    c2w = cameras.c2w.clone()
    c2w[:, :3, :3] = rot @ cameras.c2w[:, :3, :3]
    c2w[:, :3, 3] = (cameras.centers - cameras.c2w.new_tensor(pivot)) @ rot.T
    k = cameras.intrinsics()
    k[:, 0, :] = k[:, 0, :] / cameras.width
    k[:, 1, :] = k[:, 1, :] / cameras.height
    return torch.cat([c2w.reshape(-1, 16), k.reshape(-1, 9)], dim=1)


def cameras_from_eg3d(
    vectors: Tensor,
    width: int,
    height: int | None = None,
    pivot: tuple[float, float, float] = (0, 0, 0),
) -> Cameras:
    """The world's cameras of EG3D camera labels (B, 25): the inverse of
    :func:`eg3d_camera_vector`."""
    height = height if height is not None else width
    c2w_e = vectors[:, :16].reshape(-1, 4, 4)
    k = vectors[:, 16:].reshape(-1, 3, 3)
    rot = _TO_EG3D.to(vectors)
    c2w = c2w_e.clone()
    c2w[:, :3, :3] = rot.T @ c2w_e[:, :3, :3]
    c2w[:, :3, 3] = c2w_e[:, :3, 3] @ rot + vectors.new_tensor(pivot)
    return Cameras(
        c2w,
        k[:, 0, 0] * width,
        k[:, 1, 1] * height,
        k[:, 0, 2] * width,
        k[:, 1, 2] * height,
        width,
        height,
    )
