"""What ``dreamlift face`` is given, checked before any model loads: a photo, a world head at
a pose, or nothing (text only); a head caption; a light (a name, 9 SH values, or a file)."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from dreamlift.errors import CaptionError, ConfigError, DataError
from dreamlift.methods.face.config import FaceConfig
from dreamlift.methods.invert.inputs import Pose
from dreamlift.world.captions import HeadDescription, head_overrides, parse_head
from dreamlift.world.heads import HeadParams, check_head_seed, head_params, with_overrides
from dreamlift.world.lighting import LIGHT_DIRECTIONS, light_from_text

FACE_PARTS = ("skin", "eyes", "nose", "lips")
MIN_FOREGROUND = 0.05
"""An input is refused as "no face" when less than this share of it is not background, …"""
MIN_FACE_ON_CONTENT = 0.4
"""… when less than this share of the parser's face pixels lie on the image's content, …"""
MAX_SKIN_DISTANCE = 0.06
"""… or when its skin pixels' median colour distance (unit RGB directions) from the nearest
skin tone is larger than this. Held-out world heads at random poses and lights: face on
content ≥ 0.6, skin distance ≤ 0.03 (``tests/test_face.py``)."""


@dataclass(frozen=True)
class FaceRequest:
    """One ``dreamlift face`` run, saved as the run's ``config.yaml``: at most one of
    ``image`` and ``head``; with neither, a prompt (text-only generation)."""

    image: str | None = None
    """A square head crop on white, as for ``invert``."""
    head: int | None = None
    """World head to start from instead (rendered at yaw/pitch); the run is then scored."""
    yaw: float | None = None
    """The input's camera (degrees); a photo's is estimated by toy-pose when yaw and pitch
    are None, a world head's defaults to (0, 10)."""
    pitch: float | None = None
    prompt: str | None = None
    """A head caption: "a person with glasses"."""
    light: tuple[float, ...] | None = None
    """9 SH coefficients of the target light, in the head's frame."""
    light_name: str | None = None
    config: FaceConfig = field(default_factory=FaceConfig)

    def __post_init__(self) -> None:
        if self.image is not None and self.head is not None:
            raise ConfigError("give an image or --head N, not both")
        if self.head is not None:
            check_head_seed(self.head)
        if self.prompt is not None:
            check_face_prompt(self.prompt)
        if self.text_only and self.prompt is None:
            raise ConfigError(
                "nothing to do: give an image, --head N, or a --prompt for text-only generation"
            )
        if self.light is not None:
            check_light(tuple(self.light))
        if self.text_only and (self.yaw is not None or self.pitch is not None):
            raise ConfigError("--yaw and --pitch are the input's camera: give an input")

    @property
    def text_only(self) -> bool:
        return self.image is None and self.head is None

    @property
    def is_world(self) -> bool:
        return self.head is not None

    @property
    def pose(self) -> Pose | None:
        """The given camera (a world head's default (0, 10)); None: estimate a photo's."""
        if self.yaw is None and self.pitch is None:
            return Pose(0.0, 10.0) if self.head is not None else None
        return Pose(self.yaw or 0.0, 10.0 if self.pitch is None else self.pitch)


def check_face_prompt(prompt: str) -> HeadDescription:
    """A head caption ("a person with …"), or a one-line CaptionError listing the words."""
    if not prompt.strip():
        raise CaptionError("the prompt is empty", "e.g. 'a person with glasses'")
    return parse_head(prompt)


def check_light(sh: tuple[float, ...]) -> tuple[float, ...]:
    if len(sh) != 9:
        raise ConfigError(
            f"a light needs 9 SH coefficients (2nd order, grey), got {len(sh)}",
            f"or name one: {', '.join(LIGHT_DIRECTIONS)}",
        )
    if not all(math.isfinite(v) for v in sh):
        raise ConfigError("the light's SH coefficients must be finite numbers")
    return tuple(float(v) for v in sh)


def parse_light(name: str | None, sh: str | None, sh_file: Path | None) -> tuple[float, ...] | None:
    """The target light from ``--light NAME``, ``--sh "c0,…,c8"`` or ``--sh-file F`` (9
    numbers separated by commas or spaces, or a JSON list); at most one of them."""
    given = [x for x in (name, sh, sh_file) if x is not None]
    if len(given) > 1:
        raise ConfigError("give one of --light, --sh and --sh-file")
    if name is not None:
        if name.strip().lower() not in LIGHT_DIRECTIONS:
            raise ConfigError(f"unknown light {name!r}", f"lights: {', '.join(LIGHT_DIRECTIONS)}")
        lighting = light_from_text(name)
        assert lighting.sh is not None
        return lighting.sh
    if sh is not None:
        return check_light(_numbers(sh, "--sh"))
    if sh_file is not None:
        path = Path(sh_file)
        if not path.is_file():
            raise DataError(f"SH file {path} does not exist")
        text = path.read_text().strip()
        try:
            values = json.loads(text) if text.startswith("[") else None
        except ValueError:
            values = None
        if values is not None:
            return check_light(_numbers(",".join(str(v) for v in values), str(path)))
        return check_light(_numbers(text, str(path)))
    return None


def _numbers(text: str, where: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in re.split(r"[,\s]+", text.strip()) if v)
    except ValueError:
        raise ConfigError(f"{where} must hold 9 numbers, got {text[:60]!r}") from None


def edited_head(head: int, prompt: str | None) -> HeadParams:
    """The true result of editing world head ``head`` by ``prompt`` (the edit's ground truth)."""
    params = head_params(head)
    if prompt is None:
        return params
    return with_overrides(params, head_overrides(parse_head(prompt), params.hair))


def wanted_attributes(prompt: str, params: HeadParams) -> dict[str, object]:
    """What a judge can check of a prompt's edit: presence of glasses, hat, beard and hair,
    and the hair's, hat's and beard's colours (a frame's colour is too thin to read)."""
    overrides = head_overrides(parse_head(prompt), params.hair)
    edited = with_overrides(params, overrides)
    wanted: dict[str, object] = {}
    for name in overrides:
        if name in ("glasses", "hat", "beard"):
            wanted[name] = getattr(edited, name)
        elif name == "hair":
            wanted["hair"] = edited.hair
        elif name in ("hair_colour", "hat_colour", "beard_colour"):
            wanted[name] = getattr(edited, name)
    return wanted


@torch.no_grad()
def face_evidence(parts_net: torch.nn.Module, image: Tensor) -> dict[str, float]:
    """How face-like an image (1, 3, H, W) in [0, 1] is.

    The parser alone cannot say: trained only on heads, it paints a face onto a blank page.
    So its face pixels (skin, eyes, nose, lips) are checked against the image itself:
    ``foreground`` is the share of the image that is not the white background,
    ``face_on_content`` the share of the parser's face pixels that lie on it, and
    ``skin_colour`` the median chromatic distance of those skin pixels from the nearest
    skin tone (0 = a skin tone exactly, whatever the shading).
    """
    from dreamlift.world.heads import SKIN_TONES
    from dreamlift.world.heads_geometry import PART_LABELS

    size = parts_net.cfg.resolution
    x = image.float()
    if x.shape[-1] != size:
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear")
    labels = parts_net(x).argmax(1)[0]
    content = (1 - x[0]).abs().amax(0) > 0.1
    face = torch.isin(labels, torch.tensor([PART_LABELS.index(p) for p in FACE_PARTS]))
    skin = (labels == PART_LABELS.index("skin")) & content
    evidence = {
        "foreground": float(content.float().mean()),
        "face_on_content": float((face & content).sum() / face.sum().clamp(min=1)),
        "skin_colour": 1.0,
    }
    if skin.sum() >= 8:
        pixels = torch.nn.functional.normalize(x[0][:, skin].T, dim=1)
        tones = torch.nn.functional.normalize(torch.tensor(list(SKIN_TONES.values())), dim=1)
        nearest = torch.cdist(pixels, tones).amin(1)
        evidence["skin_colour"] = float(nearest.median())
    return evidence


def check_face(parts_net: torch.nn.Module, image: Tensor, source: str) -> dict[str, float]:
    """A DataError when ``image`` shows no face (see :func:`face_evidence`); else the evidence."""
    evidence = face_evidence(parts_net, image)
    reasons = []
    if evidence["foreground"] < MIN_FOREGROUND:
        reasons.append(f"only {evidence['foreground']:.1%} of it is not background")
    elif evidence["face_on_content"] < MIN_FACE_ON_CONTENT:
        reasons.append(f"the face parser finds a face on {evidence['face_on_content']:.0%} of it")
    elif evidence["skin_colour"] > MAX_SKIN_DISTANCE:
        reasons.append("nothing in it has the colour of skin")
    if reasons:
        raise DataError(
            f"no face found in {source}: {reasons[0]}",
            "give a head-centred crop of a face on a white background",
        )
    return evidence


__all__ = [
    "FaceRequest",
    "check_face",
    "check_face_prompt",
    "check_light",
    "edited_head",
    "face_evidence",
    "parse_light",
    "wanted_attributes",
]
